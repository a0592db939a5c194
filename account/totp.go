package account

import (
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// Params are the parameters of one TOTP authenticator; they are stored with
// each user so a later change of configuration does not break enrolled apps.
type Params struct {
	Algorithm string `json:"algorithm"`
	Digits    int    `json:"digits"`
	Period    int    `json:"period"`
}

// Validate reports an unsupported algorithm, digit count or period.
func (p Params) Validate() error {
	if _, err := otpAlgorithm(p.Algorithm); err != nil {
		return err
	}
	if p.Digits != 6 && p.Digits != 8 {
		return fmt.Errorf("digits must be 6 or 8, not %d", p.Digits)
	}
	if p.Period < 15 || p.Period > 120 {
		return fmt.Errorf("period must be between 15 and 120 seconds, not %d", p.Period)
	}
	return nil
}

func otpAlgorithm(name string) (otp.Algorithm, error) {
	switch strings.ToUpper(name) {
	case "SHA1":
		return otp.AlgorithmSHA1, nil
	case "SHA256":
		return otp.AlgorithmSHA256, nil
	case "SHA512":
		return otp.AlgorithmSHA512, nil
	}
	return 0, fmt.Errorf("algorithm must be SHA1, SHA256 or SHA512, not %q", name)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret renders a raw secret in the unpadded base32 authenticator apps take.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// Step returns the RFC 6238 time step of t for period.
func Step(t time.Time, period int) int64 { return t.Unix() / int64(period) }

// CodeAt returns the code of secret at time step step.
func CodeAt(secret []byte, step int64, p Params) (string, error) {
	alg, err := otpAlgorithm(p.Algorithm)
	if err != nil {
		return "", err
	}
	return hotp.GenerateCodeCustom(EncodeSecret(secret), uint64(step), hotp.ValidateOpts{
		Digits:    otp.Digits(p.Digits),
		Algorithm: alg,
	})
}

// matchStep looks for the step within ±skew of now whose code equals code. It
// computes and compares every step of the window in constant time, so timing
// says nothing about which step (if any) matched.
func matchStep(secret []byte, code string, now time.Time, p Params, skew int) (int64, bool, error) {
	current := Step(now, p.Period)
	var matched int64
	found := 0
	for i := -skew; i <= skew; i++ {
		step := current + int64(i)
		want, err := CodeAt(secret, step, p)
		if err != nil {
			return 0, false, err
		}
		eq := subtle.ConstantTimeCompare([]byte(want), []byte(code))
		if eq == 1 && found == 0 {
			matched = step
		}
		found |= eq
	}
	return matched, found == 1, nil
}
