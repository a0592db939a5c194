package main

import (
	"flag"
	"fmt"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
)

// configFlags are the options every command that reads the configuration
// takes; a flag that is set wins over the file.
type configFlags struct {
	file, homeserver, listen, dataDir, database string
}

// register adds --config and --data-dir, plus --homeserver and --listen when
// server is true.
func (f *configFlags) register(fs *flag.FlagSet, server bool) {
	fs.StringVar(&f.file, "config", "", "configuration `FILE` (YAML; default: built-in defaults)")
	fs.StringVar(&f.dataDir, "data-dir", "", "`DIR` for the database and key file (overrides data_dir)")
	fs.StringVar(&f.database, "database", "", "SQLite file or postgres:// `URL` (overrides database)")
	if server {
		fs.StringVar(&f.homeserver, "homeserver", "", "homeserver client API base `URL` (overrides homeserver)")
		fs.StringVar(&f.listen, "listen", "", "`ADDR` to listen on, host:port (overrides listen)")
	}
}

// load reads the configuration file (defaults without one) and applies the flags.
func (f *configFlags) load() (config.Config, error) {
	cfg, err := config.Load(f.file)
	if err != nil {
		return cfg, err
	}
	if f.homeserver != "" {
		cfg.Homeserver = f.homeserver
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	if f.database != "" {
		cfg.Database = f.database
	}
	return cfg, nil
}

// loadValid loads the configuration and validates it, printing every problem;
// ok is false when the command must exit with exitUsage. Admin commands never
// talk to the homeserver, so for them (server false) a missing homeserver is
// not a problem.
func (c *cli) loadValid(cmd string, f *configFlags, server bool) (cfg config.Config, ok bool) {
	cfg, err := f.load()
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa %s: %v\n", cmd, err)
		return cfg, false
	}
	check := cfg
	if !server && check.Homeserver == "" {
		check.Homeserver = "http://homeserver.invalid" // not used by admin commands
	}
	if errs := check.Validate(); len(errs) > 0 {
		fmt.Fprintf(c.stderr, "matrix-2fa %s: invalid configuration:\n", cmd)
		for _, e := range errs {
			fmt.Fprintf(c.stderr, "  - %v\n", e)
		}
		return cfg, false
	}
	return cfg, true
}
