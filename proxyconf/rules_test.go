package proxyconf

import (
	"regexp"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

func specRules(t *testing.T) ([]spec.Route, func(string) bool) {
	t.Helper()
	routes, err := spec.Routes()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Rules(routes)
	if err != nil {
		t.Fatal(err)
	}
	return routes, Matcher(rules)
}

// clientRest splits a client API path into its version prefix and the rest.
func clientRest(p string) (rest string, ok bool) {
	r, ok := strings.CutPrefix(p, "/_matrix/client/")
	if !ok {
		return "", false
	}
	n := 1
	if strings.HasPrefix(r, "api/v1/") || strings.HasPrefix(r, "unstable/org.") {
		n = 2
	}
	parts := strings.SplitN(r, "/", n+1)
	return parts[n], true
}

// anyPrefixes are version prefixes, served by some homeserver or none.
var anyPrefixes = []string{"r0", "v1", "v3", "v4", "unstable", "api/v1", "unstable/org.matrix.msc3882", "unstable/org.example.other", "V3"}

// TestRulesCoverSpecRoutes: every route the gateway serves goes to it, in any
// case and with a trailing slash; a client route also under any version
// prefix (where the gateway refuses a guarded one).
func TestRulesCoverSpecRoutes(t *testing.T) {
	routes, match := specRules(t)
	client := regexp.MustCompile("(?i)" + clientPattern)
	for _, r := range routes {
		p := routeSample(r.Path)
		for _, v := range []string{p, strings.ToUpper(p), strings.TrimSuffix(p, "/") + "/"} {
			if !match(v) {
				t.Errorf("%s: %q does not go to the gateway", r, v)
			}
		}
		rest, ok := clientRest(p)
		if !ok {
			continue
		}
		if !client.MatchString(p) {
			t.Errorf("%s is not under the client rule: add its path to clientNames (and to the gateway's guarded paths if it is guarded)", r)
		}
		for _, prefix := range anyPrefixes {
			for _, v := range []string{"/_matrix/client/" + prefix + "/" + rest, "/_matrix/client/" + prefix + "/" + strings.ToUpper(rest)} {
				if !match(v) {
					t.Errorf("%s: %q does not go to the gateway", r, v)
				}
			}
		}
	}
}

func TestRules(t *testing.T) {
	_, match := specRules(t)
	for _, tc := range []struct {
		name string
		path string
		want bool
	}{
		// Guarded homeserver endpoints and spellings (decoded and normalised
		// by the proxy before matching).
		{"delete_devices", "/_matrix/client/v3/delete_devices", true},
		{"delete_devices, trailing slash", "/_matrix/client/v3/delete_devices/", true},
		{"delete_devices, upper case", "/_matrix/client/v3/DELETE_DEVICES", true},
		{"delete_devices, upper-case namespace", "/_MATRIX/CLIENT/v3/delete_devices", true},
		{"delete_devices, below", "/_matrix/client/v3/delete_devices/x", true},
		{"delete device", "/_matrix/client/v3/devices/ABCDEF", true},
		{"delete device, trailing slash", "/_matrix/client/unstable/devices/ABCDEF/", true},
		{"password", "/_matrix/client/r0/account/password", true},
		{"password requestToken", "/_matrix/client/v3/account/password/email/requestToken", true},
		{"deactivate", "/_matrix/client/v3/account/deactivate", true},
		{"3pid", "/_matrix/client/v3/account/3pid", true},
		{"3pid add", "/_matrix/client/v3/account/3pid/add", true},
		{"cross-signing", "/_matrix/client/unstable/keys/device_signing/upload", true},
		{"login token", "/_matrix/client/v1/login/get_token", true},
		{"login token, MSC3882", "/_matrix/client/unstable/org.matrix.msc3882/login/token", true},
		{"login, api/v1", "/_matrix/client/api/v1/login", true},
		{"two-factor", "/_matrix/client/v3/account/two-factor/totp/confirm", true},
		{"fallback", "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web", true},
		{"self-service", "/_matrix2fa/", true},
		{"self-service, no slash", "/_matrix2fa", true},
		{"health", "/health", true},
		{"synapse admin", "/_synapse/admin/v1/users/@a:x", true},
		{"synapse admin root", "/_synapse/admin", true},
		{"dendrite admin", "/_dendrite/admin/evacuateUser/@a:x", true},
		{"synapse admin, upper case", "/_SYNAPSE/ADMIN/v1/users", true},

		// Pass-through: never the gateway.
		{"versions", "/_matrix/client/versions", false},
		{"sync", "/_matrix/client/v3/sync", false},
		{"whoami", "/_matrix/client/v3/account/whoami", false},
		{"pushrules", "/_matrix/client/v3/pushrules/", false},
		{"send", "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", false},
		{"state key named login", "/_matrix/client/v3/rooms/!r:x/state/m.room.name/login", false},
		{"devices list", "/_matrix/client/v3/devices", false},
		{"keys upload", "/_matrix/client/v3/keys/upload", false},
		{"keys query", "/_matrix/client/v3/keys/query", false},
		{"register", "/_matrix/client/v3/register", false},
		{"logout", "/_matrix/client/v3/logout", false},
		{"3pid lookalike", "/_matrix/client/v3/account/3pids", false},
		{"login lookalike", "/_matrix/client/v3/loginx", false},
		{"account data", "/_matrix/client/v3/user/@a:x/account_data/login", false},
		{"media upload", "/_matrix/media/v3/upload", false},
		{"media download", "/_matrix/client/v1/media/download/x/y", false},
		{"well-known", "/.well-known/matrix/client", false},
		{"federation", "/_matrix/federation/v1/send/1", false},
		{"synapse client", "/_synapse/client/pick_idp", false},
		{"admin lookalike", "/_synapse/administrator", false},
		{"health lookalike", "/healthz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := match(tc.path); got != tc.want {
				t.Errorf("%q to the gateway = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

// TestRulesExtraRoute: a route outside the fixed rules gets its own exact rule.
func TestRulesExtraRoute(t *testing.T) {
	rules, err := Rules([]spec.Route{{Method: "GET", Path: "/_matrix/client/v3/login"}, {Method: "GET", Path: "/metrics/{name}"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != len(fixedRules)+1 || rules[len(rules)-1].Pattern != "^/metrics/[^/]+/?$" {
		t.Fatalf("rules = %+v; want the fixed ones and ^/metrics/[^/]+/?$", rules)
	}
	if _, err := Rules([]spec.Route{{Method: "GET", Path: "/a b"}}); err == nil {
		t.Error("a path with a space: no error")
	}
	if _, err := Rules([]spec.Route{{Method: "GET", Path: "x"}}); err == nil {
		t.Error("a relative path: no error")
	}
}

// TestPatternsPortable: patterns hold nothing that nginx's or Caddy's file
// syntax would read differently (backslashes, braces, quotes, spaces, ;, #).
func TestPatternsPortable(t *testing.T) {
	routes, _ := specRules(t)
	rules, _ := Rules(routes)
	for _, r := range rules {
		if strings.ContainsAny(r.Pattern, "\\{}\"' \t;#") {
			t.Errorf("pattern %q holds a character the proxy files would read differently", r.Pattern)
		}
		if !strings.HasPrefix(r.Pattern, "^/") {
			t.Errorf("pattern %q is not anchored at the start of the path", r.Pattern)
		}
	}
}
