package account

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The key file protocol: rotating the master key kept in a key file, so
// that a crash at any point leaves a key that opens the database.

// RotateKeyFile replaces the key in keyPath, which holds oldBox's key, with a
// new one and re-encrypts every secret. The order makes every crash
// recoverable: the new key is written durably to "<keyPath>.new" first, the
// database switches to it in one transaction, and only then is it renamed
// over keyPath; RecoverRotation (at start-up) finishes a rotation interrupted between the last two
// steps. It returns how many secrets were re-encrypted and the new key ID.
func RotateKeyFile(ctx context.Context, store storage.Store, oldBox *SecretBox, keyPath string) (int, string, error) {
	newPath := keyPath + ".new"
	if err := removeStaleKey(ctx, store, newPath); err != nil {
		return 0, "", err
	}
	key := NewKey()
	defer clear(key)
	newBox, err := NewSecretBox(key)
	if err != nil {
		return 0, "", err
	}
	if err := WriteKeyFile(newPath, key); err != nil {
		return 0, "", fmt.Errorf("write new key file: %w", err)
	}
	dir := filepath.Dir(keyPath)
	if err := syncDir(dir); err != nil {
		os.Remove(newPath)
		return 0, "", fmt.Errorf("write new key file: %w", err)
	}
	n, err := RotateKey(ctx, store, oldBox, newBox)
	if err != nil {
		// Remove the new key only when the database surely does not use it
		// (an error from the commit itself leaves that open).
		if CheckKey(context.WithoutCancel(ctx), store, newBox) == nil {
			return 0, "", fmt.Errorf("re-encrypting reported %w, but the database uses the new key in %s; "+
				"the next start moves it over the key file", err, newPath)
		}
		os.Remove(newPath)
		return 0, "", fmt.Errorf("re-encrypt secrets (nothing changed): %w", err)
	}
	if err := os.Rename(newPath, keyPath); err != nil {
		return n, "", fmt.Errorf("the database now uses the key in %s but moving it to %s failed: %w; "+
			"the next start finishes the move", newPath, keyPath, err)
	}
	if err := syncDir(dir); err != nil {
		return n, "", fmt.Errorf("the key file was replaced but syncing %s failed: %w", dir, err)
	}
	return n, newBox.KeyID(), nil
}

// removeStaleKey removes a "<key file>.new" left by a rotation that failed
// before its commit. One whose key opens the database is never removed: it is
// then the only copy of the key in use.
func removeStaleKey(ctx context.Context, store storage.Store, path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if box, err := BoxFromKey(string(data)); err == nil {
		if err := CheckKey(ctx, store, box); err == nil {
			return fmt.Errorf("%s holds the key the database uses; move it over the key file by hand before rotating", path)
		} else if !errors.Is(err, ErrWrongKey) {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// RecoverRotation finishes a rotation that committed in the database but did
// not rename "<path>.new" to path. It returns nil, nil when there is no such
// file or its key does not match the database either.
func RecoverRotation(ctx context.Context, store storage.Store, path string, log logrus.FieldLogger) (*SecretBox, error) {
	newPath := path + ".new"
	data, err := os.ReadFile(newPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	box, err := BoxFromKey(string(data))
	if err != nil {
		return nil, nil // a damaged leftover, not the rotated key
	}
	if err := CheckKey(ctx, store, box); err != nil {
		return nil, nil
	}
	if err := os.Rename(newPath, path); err != nil {
		return nil, fmt.Errorf("finish interrupted key rotation: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("finish interrupted key rotation: %w", err)
	}
	log.WithField("key_file", path).WithField("key_id", box.KeyID()).
		Warn("finished an interrupted key rotation: the database uses the key from " + filepath.Base(newPath) + ", moved it over the key file")
	return box, nil
}

// BoxFromKey parses a base64 master key and derives its secret box.
func BoxFromKey(s string) (*SecretBox, error) {
	key, err := ParseKey(s)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return NewSecretBox(key)
}

// syncDir makes a rename or file creation in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
