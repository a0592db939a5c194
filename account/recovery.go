package account

import (
	"crypto/subtle"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Recovery codes are 10 characters of Crockford's base32 (no I, L, O or U;
// 50 bits), shown as XXXX-XXXX-XX. Input is upper-cased, spaces and hyphens are
// dropped, and the look-alikes O, I and L are read as 0, 1 and 1.
const (
	recoveryAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	recoveryLen      = 10
)

// Argon2Params are the argon2id cost parameters for recovery-code hashes.
type Argon2Params struct {
	Time      uint32 `yaml:"time"`
	MemoryKiB uint32 `yaml:"memory_kib"`
	Threads   uint8  `yaml:"threads"`
}

// DefaultArgon2 is OWASP's argon2id minimum (m=19 MiB, t=2, p=1).
var DefaultArgon2 = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

func newRecoveryCode(r io.Reader) (string, error) {
	raw := make([]byte, recoveryLen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, c := range raw {
		if i == 4 || i == 8 {
			b.WriteByte('-')
		}
		b.WriteByte(recoveryAlphabet[c&31]) // 256 is a multiple of 32: no bias
	}
	return b.String(), nil
}

// normalizeRecovery returns the canonical form of a typed recovery code, or
// false when it cannot be one.
func normalizeRecovery(in string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(recoveryAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != recoveryLen {
		return "", false
	}
	return b.String(), true
}

func hashRecovery(code string, salt []byte, p Argon2Params) []byte {
	return argon2.IDKey([]byte(code), salt, p.Time, p.MemoryKiB, p.Threads, 32)
}

// findHash compares h against every hash in constant time and returns the
// index of the match, or -1.
func findHash(h []byte, hashes [][]byte) int {
	idx := -1
	for i, cand := range hashes {
		if subtle.ConstantTimeCompare(h, cand) == 1 && idx < 0 {
			idx = i
		}
	}
	return idx
}
