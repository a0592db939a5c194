package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/policy"
)

// auditShown is how many audit events admin status prints.
const auditShown = 10

// userCommand parses the arguments of an admin subcommand that takes
// --config, --data-dir, the options extra registers and one USER; it prints
// what is wrong and returns ok=false with the exit code when they do not parse.
func (c *cli) userCommand(name, extraSynopsis string, args []string, extra func(*flag.FlagSet)) (user string, cf configFlags, code int, ok bool) {
	fset := c.newFlagSet("admin "+name, "admin "+name+" [--config FILE] [--data-dir DIR]"+extraSynopsis+" USER")
	cf.register(fset, false)
	if extra != nil {
		extra(fset)
	}
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return "", cf, code, false
	}
	if !c.wantArgs(fset, rest, "USER") {
		return "", cf, exitUsage, false
	}
	user, err := parseUserID(rest[0])
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin %s: %v\n", name, err)
		return "", cf, exitUsage, false
	}
	return user, cf, exitOK, true
}

func (c *cli) adminStatus(ctx context.Context, args []string) int {
	user, cf, code, ok := c.userCommand("status", "", args, nil)
	if !ok {
		return code
	}
	core, code, ok := c.openAdminCore(ctx, "admin status", &cf)
	if !ok {
		return code
	}
	defer core.Close()

	st, err := core.svc.Status(ctx, user)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin status: %v\n", err)
		return exitError
	}
	events, err := core.svc.AuditEvents(ctx, user, auditShown)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin status: %v\n", err)
		return exitError
	}

	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "user:\t%s\n", user)
	if st.Enabled {
		fmt.Fprintf(w, "enabled:\tyes\n")
		fmt.Fprintf(w, "enabled_at:\t%s\n", formatTime(st.EnabledAt))
		fmt.Fprintf(w, "totp:\t%s, %d digits, %d s\n", st.Params.Algorithm, st.Params.Digits, st.Params.Period)
	} else {
		fmt.Fprintf(w, "enabled:\tno (two-factor authentication is not enabled)\n")
	}
	fmt.Fprintf(w, "pending enrolment:\t%s\n", yesNo(st.Pending))
	if st.Enabled || !st.GeneratedAt.IsZero() {
		fmt.Fprintf(w, "recovery codes remaining:\t%d\n", st.Remaining)
		fmt.Fprintf(w, "recovery codes generated_at:\t%s\n", formatTime(st.GeneratedAt))
	}
	if err := c.printPolicy(ctx, w, core, user, st.Enabled); err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin status: %v\n", err)
		return exitError
	}
	w.Flush()

	if len(events) == 0 {
		fmt.Fprintln(c.stdout, "audit events: none")
		return exitOK
	}
	fmt.Fprintf(c.stdout, "audit events (newest first, at most %d):\n", auditShown)
	w = tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, ev := range events {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", formatTime(ev.At), ev.Kind, ev.Detail)
	}
	w.Flush()
	return exitOK
}

// printPolicy prints what the enforcement policy says of user, without
// starting its grace period.
func (c *cli) printPolicy(ctx context.Context, w io.Writer, core *core, user string, enabled bool) error {
	if !core.cfg.Policy.On() {
		fmt.Fprintf(w, "policy:\tnot enforced (policy.enforce: none)\n")
		return nil
	}
	st, err := policy.New(core.cfg.Policy, core.store, core.svc, nil, time.Now).Peek(ctx, user)
	switch {
	case err != nil:
		return err
	case st.AdminUnknown:
		fmt.Fprintf(w, "policy:\tapplies if the homeserver says the user is an admin (asked at sign-in with their token)\n")
	case !st.Applies:
		fmt.Fprintf(w, "policy:\tdoes not apply (not selected, or exempt)\n")
		return nil
	default:
		fmt.Fprintf(w, "policy:\tapplies (enforce: %s)\n", core.cfg.Policy.Enforce)
	}
	if st.GraceUntil.IsZero() {
		fmt.Fprintf(w, "grace until:\tnot started (the user has not been seen under the policy; %s from then)\n", core.cfg.Policy.Grace)
	} else {
		fmt.Fprintf(w, "grace until:\t%s\n", formatTime(st.GraceUntil))
	}
	blocked := "no"
	switch {
	case st.Enforced:
		blocked = "yes (no 2FA after the grace period: refused until enrolled)"
	case !enabled && !st.GraceUntil.IsZero():
		blocked = "no (within the grace period)"
	case enabled:
		blocked = "no (2FA is on)"
	}
	fmt.Fprintf(w, "blocked:\t%s\n", blocked)
	return nil
}

func (c *cli) adminReset(ctx context.Context, args []string) int {
	var yes *bool
	user, cf, code, ok := c.userCommand("reset", " [--yes]", args, func(fset *flag.FlagSet) {
		yes = fset.Bool("yes", false, "do not ask for confirmation (required when stdin is not a terminal)")
	})
	if !ok {
		return code
	}
	if !*yes && !c.stdinTTY {
		fmt.Fprintln(c.stderr, "matrix-2fa admin reset: refusing to reset without confirmation: "+
			"stdin is not a terminal, pass --yes to reset non-interactively")
		return exitUsage
	}
	core, code, ok := c.openAdminCore(ctx, "admin reset", &cf)
	if !ok {
		return code
	}
	defer core.Close()

	if !*yes {
		fmt.Fprintf(c.stderr, "This deletes the two-factor authentication of %s: its authenticator secret, "+
			"any pending enrolment, its recovery codes and its failure counter.\nType the user ID to confirm: ", user)
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if strings.TrimSpace(line) != user {
			if err != nil && line == "" {
				fmt.Fprintln(c.stderr)
			}
			fmt.Fprintln(c.stderr, "matrix-2fa admin reset: not confirmed; nothing changed")
			return exitError
		}
	}

	existed, err := core.svc.AdminReset(ctx, user, c.operator())
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin reset: %v\n", err)
		return exitError
	}
	if existed {
		fmt.Fprintf(c.stdout, "reset two-factor authentication of %s; they can sign in with their password alone and enrol again\n", user)
	} else {
		fmt.Fprintf(c.stdout, "%s had no two-factor authentication; nothing to delete (the reset is recorded in the audit log)\n", user)
	}
	return exitOK
}

func (c *cli) adminUnlock(ctx context.Context, args []string) int {
	user, cf, code, ok := c.userCommand("unlock", "", args, nil)
	if !ok {
		return code
	}
	core, code, ok := c.openAdminCore(ctx, "admin unlock", &cf)
	if !ok {
		return code
	}
	defer core.Close()
	if err := core.svc.Unlock(ctx, user, c.operator()); err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa admin unlock: %v\n", err)
		return exitError
	}
	fmt.Fprintf(c.stdout, "cleared the failed attempts and back-off of %s; their codes are checked again\n", user)
	return exitOK
}

// operator names who runs an admin command, for the audit log.
func (c *cli) operator() string {
	for _, v := range []string{"SUDO_USER", "USER"} {
		if s := strings.TrimSpace(c.getenv(v)); s != "" {
			return s
		}
	}
	return "admin-cli"
}

// openAdminCore loads and validates the configuration and opens the core for
// an admin command. Unlike serve it never creates a database: a mistyped
// --data-dir must not look like a server without users.
func (c *cli) openAdminCore(ctx context.Context, cmd string, cf *configFlags) (*core, int, bool) {
	cfg, ok := c.loadValid(cmd, cf, false)
	if !ok {
		return nil, exitUsage, false
	}
	if _, err := os.Stat(cfg.DatabasePath()); err != nil && !cfg.Postgres() {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(c.stderr, "matrix-2fa %s: no database at %s (check --config and --data-dir)\n", cmd, cfg.DatabasePath())
		} else {
			fmt.Fprintf(c.stderr, "matrix-2fa %s: %v\n", cmd, err)
		}
		return nil, exitError, false
	}
	core, err := openCore(ctx, cfg, c.adminLogger(cfg))
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa %s: %v\n", cmd, err)
		return nil, exitError, false
	}
	return core, exitOK, true
}

// adminLogger logs to stderr like serve, but at the default info level only
// warnings and errors, so command output stays readable.
func (c *cli) adminLogger(cfg config.Config) *logrus.Logger {
	log := newLogger(cfg.Log, c.stderr)
	if log.GetLevel() == logrus.InfoLevel {
		log.SetLevel(logrus.WarnLevel)
	}
	return log
}

// parseUserID checks that s is a full Matrix user ID (@local:server).
func parseUserID(s string) (string, error) {
	local, _, err := id.UserID(s).ParseAndValidateRelaxed()
	if err == nil && local == "" {
		err = errors.New("empty localpart")
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a Matrix user ID like @alice:example.org: %v", s, err)
	}
	return s, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
