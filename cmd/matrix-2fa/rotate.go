package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

func (c *cli) adminRotateKey(ctx context.Context, args []string) int {
	fset := c.newFlagSet("admin rotate-key", "admin rotate-key [--config FILE] [--data-dir DIR]")
	var cf configFlags
	cf.register(fset, false)
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return code
	}
	if !c.wantArgs(fset, rest) {
		return exitUsage
	}
	cfg, ok := c.loadValid("admin rotate-key", &cf, false)
	if !ok {
		return exitUsage
	}
	if cfg.Key != "" {
		fmt.Fprintln(c.stderr, "matrix-2fa admin rotate-key: the key is inline in the configuration (key:); "+
			"rotate-key works only with a key file. Move the key into a file (mode 0600), set key_file to it, "+
			"remove key: from the configuration, and run rotate-key again")
		return exitUsage
	}
	keyPath := cfg.KeyFilePath()
	if _, err := os.Stat(keyPath); err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin rotate-key: key file: %v\n", err)
		return exitError
	}
	core, code, ok := c.openAdminCore(ctx, "admin rotate-key", &cf)
	if !ok {
		return code
	}
	defer core.Close()

	n, newID, err := rotateKeyFile(ctx, core.store, core.box, keyPath)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin rotate-key: %v\n", err)
		return exitError
	}
	fmt.Fprintf(c.stdout, "re-encrypted %d secret%s; new key ID %s (was %s), written to %s\n", n, plural(n), newID, core.box.KeyID(), keyPath)
	fmt.Fprintln(c.stdout, "restart a running matrix-2fa serve so it uses the new key, and replace your backup of the key file")
	return exitOK
}

// rotateKeyFile replaces the key in keyPath, which holds oldBox's key, with a
// new one and re-encrypts every secret. The order makes every crash
// recoverable: the new key is written durably to "<keyPath>.new" first, the
// database switches to it in one transaction, and only then is it renamed
// over keyPath; openCore finishes a rotation interrupted between the last two
// steps. It returns how many secrets were re-encrypted and the new key ID.
func rotateKeyFile(ctx context.Context, store storage.Store, oldBox *account.SecretBox, keyPath string) (int, string, error) {
	newPath := keyPath + ".new"
	if err := removeStaleKey(ctx, store, newPath); err != nil {
		return 0, "", err
	}
	key := account.NewKey()
	defer clear(key)
	newBox, err := account.NewSecretBox(key)
	if err != nil {
		return 0, "", err
	}
	if err := account.WriteKeyFile(newPath, key); err != nil {
		return 0, "", fmt.Errorf("write new key file: %w", err)
	}
	dir := filepath.Dir(keyPath)
	if err := syncDir(dir); err != nil {
		os.Remove(newPath)
		return 0, "", fmt.Errorf("write new key file: %w", err)
	}
	n, err := account.RotateKey(ctx, store, oldBox, newBox)
	if err != nil {
		// Remove the new key only when the database surely does not use it
		// (an error from the commit itself leaves that open).
		if account.CheckKey(context.WithoutCancel(ctx), store, newBox) == nil {
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
	if box, err := boxFromKey(string(data)); err == nil {
		if err := account.CheckKey(ctx, store, box); err == nil {
			return fmt.Errorf("%s holds the key the database uses; move it over the key file by hand before rotating", path)
		} else if !errors.Is(err, account.ErrWrongKey) {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
