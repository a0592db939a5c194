package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// E-mail codes: a second factor for enrolled users with a verified e-mail
// address at the homeserver. A code has EmailCodeDigits digits, is valid for
// EmailCodeTTL, works once, is kept only as a MAC under a key derived from the
// master key, counts toward the same lockout as TOTP and recovery codes, and a
// new one is made at most once every EmailCodeGap.
const (
	EmailCodeDigits = 6
	EmailCodeTTL    = 10 * time.Minute
	EmailCodeGap    = time.Minute
)

// ErrTooSoon: a code was sent less than EmailCodeGap ago.
var ErrTooSoon = errors.New("account: an e-mail code was sent less than a minute ago")

// NewEmailCode makes a new e-mail code for userID, who must have 2FA on, and
// returns it to be mailed; only its MAC is stored, and it replaces the last.
// Errors: ErrNotEnabled, ErrTooSoon.
func (s *Service) NewEmailCode(ctx context.Context, userID string) (string, error) {
	if on, err := s.Enabled(ctx, userID); err != nil || !on {
		if err == nil {
			err = ErrNotEnabled
		}
		return "", err
	}
	n, err := rand.Int(s.rand, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	code := fmt.Sprintf("%0*d", EmailCodeDigits, n.Int64())
	now := s.now()
	ok, err := s.store.PutEmailCode(ctx, storage.EmailCode{UserID: userID, Hash: s.emailMAC(userID, code),
		SentAt: now, ExpiresAt: now.Add(EmailCodeTTL)}, EmailCodeGap)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrTooSoon
	}
	s.audit(ctx, userID, storage.AuditEmailCodeSent, "")
	return code, nil
}

// VerifyEmail checks and consumes userID's e-mail code (once, even under
// concurrent requests), under the same lockout as the other codes. Errors:
// ErrMissingCode, ErrNotEnabled, ErrInvalidCode (wrong, expired or used),
// *LockedError.
func (s *Service) VerifyEmail(ctx context.Context, userID, code string) (err error) {
	defer func() { s.observe("email", err) }()
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if code == "" {
		return ErrMissingCode
	}
	if on, err := s.Enabled(ctx, userID); err != nil || !on {
		if err == nil {
			err = ErrNotEnabled
		}
		return err
	}
	now := s.now()
	return s.attempt(ctx, userID, now, func() error {
		ok, err := s.store.ConsumeEmailCode(ctx, userID, s.emailMAC(userID, code), now)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: wrong, expired or used e-mail code", ErrInvalidCode)
		}
		return nil
	})
}

// emailMAC is the stored form of an e-mail code: an HMAC under a key derived
// from the master key, bound to the user.
func (s *Service) emailMAC(userID, code string) []byte {
	m := hmac.New(sha256.New, s.box.MACKey("email-code"))
	m.Write([]byte(userID + "\x00" + code))
	return m.Sum(nil)
}

// RememberEmails records userID's verified e-mail addresses as the
// homeserver lists them (where codes and notices go).
func (s *Service) RememberEmails(ctx context.Context, userID string, addresses []string) error {
	return s.store.PutUserEmails(ctx, userID, addresses, s.now())
}

// Emails returns userID's recorded e-mail addresses.
func (s *Service) Emails(ctx context.Context, userID string) ([]string, error) {
	return s.store.UserEmails(ctx, userID)
}
