package main

import (
	"context"
	"fmt"
	"os"

	"github.com/matrix-2fa/matrix-2fa/account"
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

	n, newID, err := account.RotateKeyFile(ctx, core.store, core.box, keyPath)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin rotate-key: %v\n", err)
		return exitError
	}
	fmt.Fprintf(c.stdout, "re-encrypted %d secret%s; new key ID %s (was %s), written to %s\n", n, plural(n), newID, core.box.KeyID(), keyPath)
	fmt.Fprintln(c.stdout, "restart a running matrix-2fa serve so it uses the new key, and replace your backup of the key file")
	return exitOK
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
