package proxyconf

import (
	"fmt"
	"net/url"
	"path"
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
	raw := Matcher(RawRules())
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
		if !raw(p) {
			t.Errorf("%s: the raw rules do not match %q: add its word to rawWords", r, p)
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
		{"delete_devices, suffix", "/_matrix/client/v3/delete_devicesX", true},
		{"delete_devices, .json", "/_matrix/client/v3/delete_devices.json", true},
		{"delete_devices, decoded question mark", "/_matrix/client/v3/delete_devices?x", true},
		{"delete_devices, decoded space", "/_matrix/client/unstable/delete_devices ", true},
		{"delete_devices, upper-case suffix", "/_matrix/client/r0/DELETE_DEVICESx", true},
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
	for i, r := range append(rules, RawRules()...) {
		if strings.ContainsAny(r.Pattern, "\\{}\"' \t;#") {
			t.Errorf("pattern %q holds a character the proxy files would read differently", r.Pattern)
		}
		// A raw rule may start with [^/?]* (a path's first characters).
		if anchor := map[bool]string{true: "^/", false: "^"}[i < len(rules)]; !strings.HasPrefix(r.Pattern, anchor) {
			t.Errorf("pattern %q does not start with %s", r.Pattern, anchor)
		}
	}
}

// TestRawWordsCoverClientNames: each client path the normalised rules send to
// the gateway holds one of rawWords, so its raw spellings go there too.
func TestRawWordsCoverClientNames(t *testing.T) {
	raw := Matcher(RawRules())
	for _, n := range append(append([]string(nil), clientNames...), clientPrefixNames...) {
		p := "/_matrix/client/v3/" + strings.ReplaceAll(n, "[^/]+", "x")
		if !raw(p) {
			t.Errorf("%q (from %q) holds none of rawWords", p, n)
		}
	}
}

// TestDecider: raw request URIs (as sent, with the query), to the gateway or
// straight to the homeserver, by the normalised path and the raw URI together.
func TestDecider(t *testing.T) {
	routes, _ := specRules(t)
	rules, _ := Rules(routes)
	gateway := Decider(rules)
	for _, tc := range []struct {
		uri  string
		want bool
	}{
		// Synapse's delete_devices has no end anchor and reads the raw path.
		{"/_matrix/client/v3/delete_devices", true},
		{"/_matrix/client/v3/delete_devicesX", true},
		{"/_matrix/client/v3/delete_devices.json", true},
		{"/_matrix/client/v3/delete_devices%3Fx", true},
		{"/_matrix/client/unstable/delete_devices%20", true},
		{"/_matrix/client/r0/delete_devices%2F%2E%2E", true}, // normalised: /_matrix/client/r0
		{"/_matrix/client/r0/delete_devices%2f%2e%2e", true},
		{"/_matrix/client/v3/delete_devices/../../v3/sync", true}, // normalised: /_matrix/client/v3/sync
		{"/_matrix/client/v3/delete_devices;x", true},
		{"/_matrix/client/v3/DeLeTe_DeViCeS%23", true},
		{"/_matrix/client/v3/delete_devices?x=1", true},
		// Escaped letters, dots and slashes: another spelling, maybe of a guarded path.
		{"/_matrix/client/v3/%64elete_devices%2F%2E%2E", true}, // normalised: /_matrix/client/v3
		{"/_matrix/client/v3/%6Cogin", true},
		{"/_matrix/client/v3/account%2Fpassword", true},
		{"/_matrix/client/v3/account/x/../password", true},
		{"/_matrix/client/v3/account//password", true},
		{"/_matrix/client/v3/account/./password", true},
		{"/_matrix/client/v3/account/password/.", true},
		{"/_matrix/client/v3/devices/%41BC", true},
		{"/_matrix/client/v3/x/%252e%252e/delete_devices", true},
		{"/_matrix/media/v3/%252e%252e/%252e%252e/client/v3/delete_devices", true}, // decoded twice: the client API
		{"/_matrix/media/v3/..%2F..%2Fclient/v3/loginx", true},
		{"//_matrix/client/v3/loginx", true},
		{"/./_matrix/client/v3/loginx", true},
		{"/%5Fmatrix/client/v3/loginx", true},
		{"/_matrix/%63lient/v3/loginx", true},
		{"/_MATRIX/CLIENT/V3/LOGINX", true},
		{"/_synapse/%61dmin/v1/users", true},
		{"/_synapse/admin/v1/users/%40a%3Ax", true},
		{"/_synapse/adminx", true},
		// Guarded words anywhere in a client API path (the gateway passes
		// the harmless ones through).
		{"/_matrix/client/v3/loginx", true},
		{"/_matrix/client/v3/rooms/!r:x/state/m.room.name/login", true},
		{"/_matrix/client/v3/account/passwordx", true},
		{"/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web", true},
		// Malformed escapes: nginx and Caddy refuse them.
		{"/_matrix/client/v3/%zz", true},

		// Straight to the homeserver.
		{"/_matrix/client/versions", false},
		{"/_matrix/client/versions?x=delete_devices%2F..&login=1", false},
		{"/_matrix/client/v3/sync?since=s1..2&filter=%7B%22room%22%3A%7B%7D%7D", false},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages?dir=b", false},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/m1700000000.1", false},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.org/state/m.room.member/%40alice%3Aexample.org", false},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.org/event/%24ev%2Bx%3D", false},
		{"/_matrix/client/v3/profile/%40alice%3Aexample.org/displayname", false},
		{"/_matrix/client/v3/directory/room/%23room%3Aexample.org", true}, // %23 (#) is odd: the gateway passes it through
		{"/_matrix/client/v3/account/whoami", false},
		{"/_matrix/client/v3/devices", false},
		{"/_matrix/client/v3/keys/query", false},
		{"/_matrix/client/v3/pushrules/", false},
		{"/_matrix/client/v3/user/%40a%3Ax/account_data/m.direct", false},
		{"/_matrix/client/v1/media/download/example.org/abcDEF", false},
		{"/_matrix/media/v3/download/example.org/abcDEF/my%20file.png", false},
		{"/_matrix/media/v3/upload?filename=a%2F..%2Flogin", false},
		{"/_matrix/federation/v1/user/devices/%40a%3Ax", false},
		{"/_matrix/federation/v1/send/1700000000", false},
		{"/.well-known/matrix/client", false},
		{"/_synapse/client/pick_idp", false},
	} {
		if got := gateway(tc.uri); got != tc.want {
			t.Errorf("%q to the gateway = %v, want %v", tc.uri, got, tc.want)
		}
	}
}

// readings are ways a homeserver (or a framework in front of it) may read a
// raw path: as is, percent-decoded once or twice, with slashes merged and
// dot segments resolved before or after decoding.
func readings(raw string) []string {
	out := []string{raw, path.Clean(raw)}
	p := raw
	for i := 0; i < 2; i++ {
		d, err := url.PathUnescape(p)
		if err != nil {
			break
		}
		out = append(out, d, path.Clean(d))
		p = d
	}
	return out
}

// readAsGuarded is the worst homeserver: it matches the guarded paths and the
// gateway's own without regard to case and with no end anchor.
var readAsGuarded = regexp.MustCompile(`(?i)^/_matrix/client/(?:[^/]*/){1,2}(?:login|delete_devices|devices/.|account/(?:password|deactivate|3pid|two-factor)|keys/device_signing/upload|auth/[^/]*/fallback/web)`)

// TestDeciderSpellings: every spelling of a guarded path that some reading
// of the raw path takes for a guarded path goes to the gateway: escaped
// characters (once or twice), other cases, suffixes, dot and empty segments,
// detours through other prefixes.
func TestDeciderSpellings(t *testing.T) {
	routes, _ := specRules(t)
	rules, _ := Rules(routes)
	gateway := Decider(rules)
	bases := []string{
		"/_matrix/client/v3/delete_devices",
		"/_matrix/client/r0/devices/ABC",
		"/_matrix/client/v3/account/password",
		"/_matrix/client/unstable/account/deactivate",
		"/_matrix/client/v3/account/3pid/add",
		"/_matrix/client/v3/keys/device_signing/upload",
		"/_matrix/client/v3/login",
		"/_matrix/client/unstable/org.matrix.msc3882/login/token",
		"/_matrix/client/v3/account/two-factor",
	}
	suffixes := []string{"", "/", "X", ".json", "%3Fx", "%23x", "%20", "%00", ";x", "%2F%2E%2E", "/..", "/%2e%2e", "%2F..%2F..%2Fsync", "/../../v3/sync", "%252F%252E%252E", "/."}
	spellings := map[string]bool{}
	for _, base := range bases {
		for _, suf := range suffixes {
			p := base + suf
			spellings[p] = true
			spellings[strings.ToUpper(p)] = true
			for i := 1; i < len(p); i++ {
				c := p[i]
				if c == '%' || i > 1 && p[i-1] == '%' || i > 2 && p[i-2] == '%' {
					continue
				}
				esc := fmt.Sprintf("%%%02X", c)
				spellings[p[:i]+esc+p[i+1:]] = true                          // escaped once
				spellings[p[:i]+strings.ToLower(esc)+p[i+1:]] = true         // lower-case hex
				spellings[p[:i]+"%25"+fmt.Sprintf("%02X", c)+p[i+1:]] = true // escaped twice
				if c == '/' {
					spellings[p[:i]+"//"+p[i+1:]] = true
					spellings[p[:i]+"/./"+p[i+1:]] = true
					spellings[p[:i]+"/x/../"+p[i+1:]] = true
					spellings[p[:i]+"/x/%2E%2E/"+p[i+1:]] = true
				}
			}
			rest := strings.TrimPrefix(p, "/_matrix/")
			for _, detour := range []string{"/_matrix/media/v3/../../_matrix/", "/_matrix/media/%2e%2e/", "/_matrix/media/%252e%252e/", "/x/..%2F_matrix/"} {
				spellings[detour+rest] = true
			}
		}
	}
	checked := 0
	for p := range spellings {
		read := false
		for _, r := range readings(p) {
			read = read || readAsGuarded.MatchString(r)
		}
		if !read {
			continue
		}
		checked++
		if !gateway(p) {
			t.Errorf("%q goes straight to the homeserver, which may read it as a guarded path", p)
		}
	}
	if checked < 1000 {
		t.Errorf("only %d spellings read as guarded: the generator is broken", checked)
	}
	t.Logf("%d spellings read as guarded, all to the gateway", checked)
}
