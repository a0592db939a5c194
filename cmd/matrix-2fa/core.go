package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/postgres"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// core is what every command that touches the data needs: the database, the
// secret box holding the checked encryption key, and the 2FA service.
type core struct {
	store storage.Store
	box   *account.SecretBox
	svc   *account.Service
	cfg   config.Config
}

// Close closes the database.
func (c *core) Close() error { return c.store.Close() }

// openCore creates the data directory, opens (or creates) the database, loads
// the encryption key (inline, or from the key file, created on first run) and
// checks it against the database. When the key does not match but the key
// file's ".new" sibling does, a key rotation was interrupted after its commit:
// the new key file is moved into place and used. Any other mismatch is an error
// wrapping account.ErrWrongKey; openCore never returns a core with a wrong key.
func openCore(ctx context.Context, cfg config.Config, log *logrus.Logger) (*core, error) {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	box, err := loadKey(ctx, store, cfg, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	svc, err := account.NewService(store, box, cfg.TwoFactor, account.WithLogger(log))
	if err != nil {
		store.Close()
		return nil, err
	}
	return &core{store: store, box: box, svc: svc, cfg: cfg}, nil
}

// openStore opens the configured database: PostgreSQL for a postgres:// URL,
// else the SQLite file (created, private, with its directory).
func openStore(ctx context.Context, cfg config.Config) (storage.Store, error) {
	dirs := []string{cfg.DataDir}
	if !cfg.Postgres() {
		dirs = append(dirs, filepath.Dir(cfg.DatabasePath()))
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	if cfg.Postgres() {
		return postgres.Open(ctx, cfg.Database)
	}
	// Create the database file ourselves so it (and the -wal and -shm files
	// SQLite gives the same mode) is private whatever the umask.
	if f, err := os.OpenFile(cfg.DatabasePath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create database: %w", err)
	}
	return sqlite.Open(ctx, cfg.DatabasePath(), sqlite.Options{Synchronous: cfg.SQLiteSynchronous})
}

// loadKey returns the secret box for the configured key after checking it
// against the database, recovering an interrupted rotation (see openCore).
func loadKey(ctx context.Context, store storage.Store, cfg config.Config, log *logrus.Logger) (*account.SecretBox, error) {
	if cfg.Key != "" {
		box, err := account.BoxFromKey(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("config key: %w", err)
		}
		if err := account.CheckKey(ctx, store, box); errors.Is(err, account.ErrWrongKey) {
			return nil, wrongKeyError("the inline key in the configuration", box, err)
		} else if err != nil {
			return nil, err
		}
		return box, nil
	}

	path := cfg.KeyFilePath()
	key, created, err := account.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	box, err := account.NewSecretBox(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	checkErr := account.CheckKey(ctx, store, box)
	if checkErr == nil {
		if created {
			log.WithField("key_file", path).Info("created new encryption key file; back it up, without it no secret can be read")
		}
		return box, nil
	}
	if created {
		// The key we just made protects nothing; do not leave it where the
		// operator's real key file belongs.
		if err := os.Remove(path); err != nil {
			log.WithError(err).WithField("key_file", path).Warn("removing the key file created by this failed start")
		}
	}
	if !errors.Is(checkErr, account.ErrWrongKey) {
		return nil, checkErr
	}
	newBox, err := account.RecoverRotation(ctx, store, path, log)
	if err != nil {
		return nil, err
	}
	if newBox == nil {
		source := "key file " + path
		if created {
			source = "a new key (there was no key file at " + path + "; restore the database's key file from your backup)"
		}
		return nil, wrongKeyError(source, box, checkErr)
	}
	return newBox, nil
}

// wrongKeyError explains a key that does not match the database; it wraps
// err (and so account.ErrWrongKey).
func wrongKeyError(source string, box *account.SecretBox, err error) error {
	return fmt.Errorf("the encryption key does not match the database: %s has key ID %s (%w); "+
		"refusing to start with a wrong key, configure the key the database was encrypted with", source, box.KeyID(), err)
}
