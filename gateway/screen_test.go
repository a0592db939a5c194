package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/spec"
)

// screenMethods are the methods every spelling is tried with (a lower-case
// one included: the guarded pattern refuses it).
var screenMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, "post"}

// screenVersions replace a route's version prefix: those a homeserver
// serves, and some it does not (the gateway refuses guarded paths there).
var screenVersions = []string{"/r0/", "/v3/", "/v1/", "/v9/", "/unstable/", "/unstable/org.example/", "/api/v1/", "/V3/"}

// spellings returns raw paths that a homeserver or a proxy might read as p:
// letter case, doubled, leading and trailing slashes, dot segments, each
// letter and each slash percent-encoded, other version prefixes.
func spellings(p string) []string {
	out := []string{p, strings.ToUpper(p), p + "/", "/" + p, mixedCase(p)}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			out = append(out, p[:i]+"/"+p[i:], p[:i]+"/."+p[i:], p[:i]+"/x/.."+p[i:], p[:i]+"%2F"+p[i+1:], p[:i]+"%2f/"+p[i+1:])
		case c >= 'a' && c <= 'z' || c == '_' || c == '-':
			out = append(out, p[:i]+fmt.Sprintf("%%%02X", c)+p[i+1:])
		}
	}
	for _, from := range []string{"/r0/", "/v3/", "/v1/", "/unstable/"} {
		if strings.Contains(p, from) {
			for _, to := range screenVersions {
				out = append(out, strings.Replace(p, from, to, 1))
			}
		}
	}
	return out
}

// mixedCase upper-cases every other letter.
func mixedCase(p string) string {
	b := []byte(p)
	for i := range b {
		if i%2 == 0 && b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// screenPaths are the concrete paths of every route in spec/openapi.yaml and
// of every guarded path, with their variables filled in.
func screenPaths(t *testing.T) []string {
	routes, err := spec.Routes()
	if err != nil || len(routes) < 40 {
		t.Fatalf("spec routes: %d, %v", len(routes), err)
	}
	fill := strings.NewReplacer("{deviceId}", "DEV", "{idpId}", "idp", "{file}", "style.css", "{userId}", "@u:hs")
	var out []string
	for _, r := range routes {
		out = append(out, fill.Replace(r.Path))
	}
	for _, p := range []string{"delete_devices", "delete_devicesX", "devices/D", "devices/", "account/password", "account/deactivate",
		"account/3pid", "account/3pid/add", "keys/device_signing/upload", "login/get_token", "login/token", "account/two-factor/x/y"} {
		out = append(out, "/_matrix/client/v3/"+p)
	}
	return out
}

// TestScreenNeverMissesARoute: the cheap screen (mayBeOurs) never lets a
// request pass through unrouted that the route table or the guarded pattern
// would serve or refuse, in any spelling and with any method.
func TestScreenNeverMissesARoute(t *testing.T) {
	g := fuzzlessGateway(t)
	checked := 0
	for _, p := range screenPaths(t) {
		for _, raw := range spellings(p) {
			for _, m := range screenMethods {
				checked += checkScreen(t, g, m, raw)
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d routed spellings checked: the generator is broken", checked)
	}
}

// checkScreen fails t when the full router would take method raw but the
// screen would not; it returns 1 when the router takes it.
func checkScreen(t *testing.T, g *gateway.Gateway, method, raw string) int {
	t.Helper()
	r, err := http.NewRequest(method, "http://gw"+raw, nil)
	if err != nil {
		return 0 // not a request a server would parse either
	}
	screened := gateway.MayBeOurs(r.URL.Path)
	if !g.RoutedPastScreen(r) {
		return 0
	}
	if !screened {
		t.Errorf("%s %s: the router takes it, the screen passes it through", method, raw)
	}
	return 1
}

// FuzzScreen: the same invariant for any path.
func FuzzScreen(f *testing.F) {
	for _, p := range []string{"/_matrix/client/v3/account/whoami", "/_matrix/client/v3/login", "/_matrix/client/r0//account/password",
		"/_matrix/client/v3/devices/D", "/_matrix2fa/", "/_matrix/client/unstable/x/account/3pid", "/_matrix/client/v3/pushrules/"} {
		f.Add(http.MethodPost, p)
	}
	g := fuzzlessGateway(f)
	f.Fuzz(func(t *testing.T, method, raw string) {
		if !strings.HasPrefix(raw, "/") || strings.ContainsAny(raw, "?# \t\r\n") {
			return
		}
		if _, err := http.NewRequest(method, "http://gw"+raw, nil); err != nil {
			return
		}
		checkScreen(t, g, method, raw)
	})
}
