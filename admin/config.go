package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/canonical"
)

// Config is the admin API's and page's part of the configuration.
type Config struct {
	// Enabled serves the admin API and page; off they answer 404.
	Enabled bool `yaml:"enabled"`
	// HomeserverAdmins lets the homeserver's own admins in (asked of the
	// homeserver with the caller's access token: Synapse, then Dendrite).
	HomeserverAdmins bool `yaml:"homeserver_admins"`
	// Admins are user IDs that are admins of every user.
	Admins []string `yaml:"admins"`
	// Scoped are admins of the users matching their patterns only. A user
	// listed here is scoped even when the homeserver says it is an admin.
	Scoped []ScopedAdmin `yaml:"scoped_admins"`
	// TokenSHA256 is the hex SHA-256 of a static admin token ("" for none);
	// the token itself is never configured.
	TokenSHA256 string `yaml:"token_sha256"`
}

// ScopedAdmin is an admin of the users whose IDs match one of Users (globs
// where * matches any run of characters, e.g. "@team-*:example.org").
type ScopedAdmin struct {
	User  string   `yaml:"user" json:"user"`
	Users []string `yaml:"users" json:"users"`
}

// Validate returns every problem with c at once.
func (c Config) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, u := range c.Admins {
		if !looksLikeUserID(u) {
			add("admin.admins: %q is not a user ID like @alice:example.org", u)
		}
	}
	for i, s := range c.Scoped {
		if !looksLikeUserID(s.User) {
			add("admin.scoped_admins[%d].user: %q is not a user ID like @alice:example.org", i, s.User)
		}
		if len(s.Users) == 0 {
			add("admin.scoped_admins[%d].users: at least one pattern (e.g. \"@*:example.org\")", i)
		}
		for _, p := range s.Users {
			if !strings.HasPrefix(p, "@") || !strings.Contains(p, ":") {
				add("admin.scoped_admins[%d].users: %q must look like a user ID (\"@team-*:example.org\")", i, p)
			}
		}
	}
	if c.TokenSHA256 != "" {
		if b, err := hex.DecodeString(c.TokenSHA256); err != nil || len(b) != sha256.Size {
			add("admin.token_sha256: must be 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)")
		}
	}
	if c.Enabled && !c.HomeserverAdmins && len(c.Admins) == 0 && len(c.Scoped) == 0 && c.TokenSHA256 == "" {
		add("admin: enabled, but nobody may use it (set homeserver_admins, admins, scoped_admins or token_sha256)")
	}
	return errs
}

func looksLikeUserID(s string) bool {
	local, server, ok := strings.Cut(s, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != ""
}

// Scope is the users an admin may see and act on; the zero Scope is every user.
type Scope struct{ patterns []string }

// All reports whether the scope is every user.
func (s Scope) All() bool { return s.patterns == nil }

// Allows reports whether userID is in the scope.
func (s Scope) Allows(userID string) bool {
	if s.patterns == nil {
		return true
	}
	for _, p := range s.patterns {
		if canonical.Glob(p, userID) {
			return true
		}
	}
	return false
}

// tokenMatches reports whether token's SHA-256 is the configured one, in
// constant time.
func (c Config) tokenMatches(token string) bool {
	want, err := hex.DecodeString(c.TokenSHA256)
	if err != nil || len(want) != sha256.Size || token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
