package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
)

func (c *cli) generateConfig(args []string) int {
	fset := c.newFlagSet("generate-config", "generate-config [--homeserver URL] [--data-dir DIR] [-o FILE [--force]]")
	homeserver := fset.String("homeserver", "", "homeserver client API base `URL`")
	dataDir := fset.String("data-dir", "", "`DIR` for the database and key file")
	out := fset.String("o", "", "write to `FILE` instead of stdout")
	force := fset.Bool("force", false, "overwrite FILE if it exists")
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return code
	}
	if !c.wantArgs(fset, rest) {
		return exitUsage
	}
	cfg := config.Default()
	cfg.Homeserver = *homeserver
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *homeserver != "" {
		if errs := cfg.Validate(); len(errs) > 0 {
			fmt.Fprintln(c.stderr, "matrix-2fa generate-config: invalid options:")
			for _, e := range errs {
				fmt.Fprintf(c.stderr, "  - %v\n", e)
			}
			return exitUsage
		}
	}
	data := config.Template(cfg)

	if *out == "" {
		if _, err := c.stdout.Write(data); err != nil {
			fmt.Fprintf(c.stderr, "matrix-2fa generate-config: %v\n", err)
			return exitError
		}
	} else if err := writeConfigFile(*out, data, *force); err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa generate-config: %v\n", err)
		return exitError
	} else {
		fmt.Fprintf(c.stderr, "wrote %s\n", *out)
	}
	if *homeserver == "" {
		fmt.Fprintln(c.stderr, "note: set homeserver in the file (or pass --homeserver to serve) before running serve")
	}
	return exitOK
}

// writeConfigFile writes data to path with mode 0600 (the file may later hold
// the key), refusing to replace an existing file unless force is set.
func writeConfigFile(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; pass --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
