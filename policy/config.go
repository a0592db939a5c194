package policy

import (
	"fmt"
	"strings"
	"time"
)

// Enforcement modes.
const (
	ModeNone     = "none"     // nobody is required to use 2FA (the default)
	ModeAll      = "all"      // every user but the exempt ones
	ModeSelected = "selected" // users, patterns and (optionally) homeserver admins
)

// DefaultGrace is the grace period's default: a week.
const DefaultGrace = 168 * time.Hour

// Config is the enforcement policy's part of the configuration.
type Config struct {
	// Enforce is ModeNone, ModeAll or ModeSelected.
	Enforce string `yaml:"enforce"`
	// Users are user IDs under the policy (ModeSelected).
	Users []string `yaml:"users"`
	// Patterns select users by ID, * matching any run of characters, e.g.
	// "@ops-*:example.org" (ModeSelected).
	Patterns []string `yaml:"patterns"`
	// HomeserverAdmins puts the homeserver's admins under the policy
	// (ModeSelected), asked of the homeserver with the user's own token.
	HomeserverAdmins bool `yaml:"homeserver_admins"`
	// Exempt are user IDs or patterns never under the policy (bots,
	// service accounts); they win over every selection.
	Exempt []string `yaml:"exempt"`
	// Grace is how long a user may go on without 2FA, counted from the first
	// time the gateway sees them under the policy.
	Grace time.Duration `yaml:"grace"`
}

// On reports whether the policy requires 2FA of anyone.
func (c Config) On() bool { return c.Enforce == ModeAll || c.Enforce == ModeSelected }

// Validate returns every problem with c at once.
func (c Config) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Enforce {
	case "", ModeNone, ModeAll, ModeSelected:
	default:
		add("policy.enforce: %q is not none, all or selected", c.Enforce)
	}
	for _, u := range c.Users {
		if !userPattern(u) || strings.Contains(u, "*") {
			add("policy.users: %q is not a user ID like @alice:example.org", u)
		}
	}
	for field, list := range map[string][]string{"patterns": c.Patterns, "exempt": c.Exempt} {
		for _, p := range list {
			if !userPattern(p) {
				add("policy.%s: %q must look like a user ID (\"@bot-*:example.org\")", field, p)
			}
		}
	}
	if c.Grace < 0 {
		add("policy.grace: must not be negative (0: no grace period)")
	}
	if c.Enforce == ModeSelected && len(c.Users) == 0 && len(c.Patterns) == 0 && !c.HomeserverAdmins {
		add("policy: enforce is selected, but nobody is (set users, patterns or homeserver_admins)")
	}
	return errs
}

// userPattern reports whether s looks like a user ID, or a pattern of them.
func userPattern(s string) bool {
	local, server, ok := strings.Cut(s, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != ""
}
