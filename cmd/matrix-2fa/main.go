package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // bad arguments or configuration
)

const usageText = `matrix-2fa is a two-factor authentication gateway in front of a Matrix homeserver.

Usage:
  matrix-2fa serve [--config FILE] [--homeserver URL] [--listen ADDR] [--data-dir DIR]
  matrix-2fa generate-config [--homeserver URL] [--data-dir DIR] [-o FILE [--force]]
  matrix-2fa admin status [--config FILE] [--data-dir DIR] USER
  matrix-2fa admin reset [--config FILE] [--data-dir DIR] [--yes] USER
  matrix-2fa admin unlock [--config FILE] [--data-dir DIR] USER
  matrix-2fa admin rotate-key [--config FILE] [--data-dir DIR]
  matrix-2fa demo [--listen ADDR]
  matrix-2fa proxy-config nginx|caddy [--gateway URL] [--homeserver URL] [--listen ADDR] [--server-name NAME]
                          [--http | --tls-cert FILE --tls-key FILE] [--max-body-size SIZE] [--fragment] [-o FILE [--force]]

Commands:
  serve            run the gateway until SIGINT or SIGTERM
  generate-config  write a commented configuration file (stdout, or -o FILE)
  admin status     show a user's 2FA state and recent audit events
  admin reset      delete a user's 2FA (secret, enrolment, recovery codes)
  admin unlock     lift a user's lockout (failed attempts and back-off)
  admin rotate-key re-encrypt every stored secret with a new key file
  demo             a throwaway Dendrite on loopback with the gateway in front (source tree only)
  proxy-config     print an nginx or Caddy configuration for split routing (only the gateway's paths to it)

USER is a full Matrix user ID, e.g. @alice:example.org.
Run 'matrix-2fa COMMAND --help' for a command's options.
`

func main() {
	ctx := context.Background()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program behind main: it runs the subcommand named by args
// and returns the process exit code. Cancelling ctx stops serve as a signal
// would.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{
		stdout:   stdout,
		stderr:   stderr,
		stdin:    os.Stdin,
		stdinTTY: isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd()),
		getenv:   os.Getenv,
	}
	return c.run(ctx, args)
}

// cli is what the commands see of the process: its streams and environment.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	stdinTTY       bool // stdin is an interactive terminal
	getenv         func(string) string
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return c.serve(ctx, rest)
	case "generate-config":
		return c.generateConfig(rest)
	case "admin":
		return c.admin(ctx, rest)
	case "demo":
		return c.demo(ctx, rest)
	case "proxy-config":
		return c.proxyConfig(rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "matrix-2fa: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}

func (c *cli) admin(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(c.stderr, "matrix-2fa admin: missing subcommand\n\n%s", usageText)
		return exitUsage
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "status":
		return c.adminStatus(ctx, rest)
	case "reset":
		return c.adminReset(ctx, rest)
	case "unlock":
		return c.adminUnlock(ctx, rest)
	case "rotate-key":
		return c.adminRotateKey(ctx, rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "matrix-2fa admin: unknown subcommand %q\n\n%s", sub, usageText)
		return exitUsage
	}
}

// newFlagSet returns a flag set for the command name whose usage line is synopsis.
func (c *cli) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: matrix-2fa %s\n\nOptions:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags anywhere among args (flag alone stops at the first
// positional argument) and returns the positional ones. The code is what the
// command returns when ok is false: 0 after --help, 2 on a bad flag.
func parseArgs(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			return positional, 0, true
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// wantArgs checks the number of positional arguments, printing usage if wrong.
func (c *cli) wantArgs(fs *flag.FlagSet, got []string, names ...string) bool {
	if len(got) == len(names) {
		return true
	}
	if len(names) == 0 {
		fmt.Fprintf(c.stderr, "matrix-2fa %s: unexpected argument %q\n", fs.Name(), got[0])
	} else {
		fmt.Fprintf(c.stderr, "matrix-2fa %s: want %s, got %d arguments\n", fs.Name(), strings.Join(names, " "), len(got))
	}
	fs.Usage()
	return false
}
