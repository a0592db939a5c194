package account

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// KeySize is the length of the master encryption key in bytes.
const KeySize = 32

const (
	hkdfInfoAEAD  = "matrix-2fa secret encryption v1"
	hkdfInfoKeyID = "matrix-2fa key id v1"
	hkdfInfoMAC   = "matrix-2fa mac keys v1"
	aadPrefix     = "matrix-2fa:totp:secret:"
	keyCheckMeta  = "key_check"
	keyCheckOwner = "matrix-2fa:key-check"
)

// SecretBox encrypts TOTP secrets at rest with AES-256-GCM under a key derived
// by HKDF-SHA256 from the master key. The owner's user ID is the additional
// data, so a ciphertext cannot be moved to another user.
type SecretBox struct {
	aead  cipher.AEAD
	keyID string
	mac   []byte // the key of MACKey's derivations
}

// NewSecretBox derives the encryption key and key ID from a 32-byte master
// key. It returns an error for a key of any other length.
func NewSecretBox(master []byte) (*SecretBox, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("account: encryption key must be %d bytes, got %d", KeySize, len(master))
	}
	key, err := hkdf.Key(sha256.New, master, nil, hkdfInfoAEAD, 32)
	if err != nil {
		return nil, err
	}
	id, err := hkdf.Key(sha256.New, master, nil, hkdfInfoKeyID, 8)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	mac, err := hkdf.Key(sha256.New, master, nil, hkdfInfoMAC, 32)
	if err != nil {
		return nil, err
	}
	return &SecretBox{aead: aead, keyID: hex.EncodeToString(id), mac: mac}, nil
}

// MACKey returns a 32-byte key for purpose (such as signing CSRF tokens),
// derived from the master key: every replica with the same key derives the
// same one, and it changes with the key.
func (b *SecretBox) MACKey(purpose string) []byte {
	m := hmac.New(sha256.New, b.mac)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// KeyID identifies the master key without revealing it.
func (b *SecretBox) KeyID() string { return b.keyID }

// Seal encrypts plain for owner: a random nonce followed by the ciphertext.
func (b *SecretBox) Seal(owner string, plain []byte) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return b.aead.Seal(nonce, nonce, plain, []byte(aadPrefix+owner)), nil
}

// Open decrypts sealed for owner. It returns ErrWrongKey when keyID is not
// this box's key, and an error when the ciphertext does not authenticate (it
// was made for another owner, or tampered with).
func (b *SecretBox) Open(owner, keyID string, sealed []byte) ([]byte, error) {
	if keyID != b.keyID {
		return nil, fmt.Errorf("%w: secret has key ID %s, configured key is %s", ErrWrongKey, keyID, b.keyID)
	}
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("account: sealed secret too short")
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(aadPrefix+owner))
	if err != nil {
		return nil, fmt.Errorf("account: secret does not decrypt for %s: %w", owner, err)
	}
	return plain, nil
}

// ParseKey decodes a base64 master key (standard or URL alphabet, padded or not).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("account: encryption key must be %d bytes, got %d", KeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("account: encryption key is not valid base64")
}

// NewKey returns a fresh random master key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k
}

// EncodeKey renders a master key as it is written in a key file.
func EncodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// WriteKeyFile writes key to path with mode 0600, refusing to overwrite.
func WriteKeyFile(path string, key []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(EncodeKey(key) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadOrCreateKeyFile reads the master key from path, creating the file with a
// new random key (mode 0600) when it does not exist. created says which.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = NewKey()
		if err := WriteKeyFile(path, key); err != nil {
			if errors.Is(err, fs.ErrExist) { // lost a race with another process
				return LoadOrCreateKeyFile(path)
			}
			return nil, false, fmt.Errorf("account: create key file: %w", err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("account: read key file: %w", err)
	}
	key, err = ParseKey(string(data))
	if err != nil {
		return nil, false, fmt.Errorf("account: key file %s: %w", path, err)
	}
	return key, false, nil
}

// CheckKey makes sure box holds the key the store's secrets were encrypted
// with, so a wrong key fails at start-up instead of producing wrong codes. On a
// fresh store it records a check value sealed with the key. It returns an error
// wrapping ErrWrongKey on a mismatch.
func CheckKey(ctx context.Context, store storage.Store, box *SecretBox) error {
	check, err := store.Meta(ctx, keyCheckMeta)
	if errors.Is(err, storage.ErrNotFound) {
		ids, err := store.KeyIDs(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id != box.KeyID() {
				return fmt.Errorf("%w: stored secrets use key ID %s, configured key is %s", ErrWrongKey, id, box.KeyID())
			}
		}
		sealed, err := sealKeyCheck(box)
		if err != nil {
			return err
		}
		return store.PutMeta(ctx, keyCheckMeta, sealed)
	}
	if err != nil {
		return err
	}
	keyID, sealed, ok := strings.Cut(string(check), ":")
	if !ok {
		return errors.New("account: malformed key check value in the database")
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return errors.New("account: malformed key check value in the database")
	}
	if _, err := box.Open(keyCheckOwner, keyID, raw); err != nil {
		if errors.Is(err, ErrWrongKey) {
			return fmt.Errorf("%w: the database was encrypted with key ID %s, the configured key has ID %s", ErrWrongKey, keyID, box.KeyID())
		}
		return fmt.Errorf("%w: %v", ErrWrongKey, err)
	}
	return nil
}

func sealKeyCheck(box *SecretBox) ([]byte, error) {
	sealed, err := box.Seal(keyCheckOwner, []byte("ok"))
	if err != nil {
		return nil, err
	}
	return []byte(box.KeyID() + ":" + base64.StdEncoding.EncodeToString(sealed)), nil
}

// RotateKey re-encrypts every stored secret from oldBox to newBox, and the key
// check value with them, in one transaction. It returns how many secrets it
// rewrote; on any error nothing changes.
func RotateKey(ctx context.Context, store storage.Store, oldBox, newBox *SecretBox) (int, error) {
	if err := CheckKey(ctx, store, oldBox); err != nil {
		return 0, err
	}
	check, err := sealKeyCheck(newBox)
	if err != nil {
		return 0, err
	}
	return store.Rewrap(ctx, func(user string, sealed []byte, keyID string) ([]byte, string, error) {
		plain, err := oldBox.Open(user, keyID, sealed)
		if err != nil {
			return nil, "", err
		}
		out, err := newBox.Seal(user, plain)
		clear(plain)
		return out, newBox.KeyID(), err
	}, keyCheckMeta, check)
}
