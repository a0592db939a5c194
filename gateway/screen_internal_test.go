package gateway

import (
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

// TestEveryRoutePassesTheScreen: the cheap screen that sends paths straight
// through never misses a route the gateway serves (spec/openapi.yaml), nor a
// guarded spelling in another case.
func TestEveryRoutePassesTheScreen(t *testing.T) {
	routes, err := spec.Routes()
	if err != nil || len(routes) < 40 {
		t.Fatalf("spec routes: %d, %v", len(routes), err)
	}
	for _, r := range routes {
		p := strings.ReplaceAll(strings.ReplaceAll(r.Path, "{deviceId}", "DEV"), "{idpId}", "idp")
		p = strings.ReplaceAll(strings.ReplaceAll(p, "{file}", "style.css"), "{userId}", "@u:hs")
		for _, spelling := range []string{p, strings.ToUpper(p)} {
			if !mayBeOurs(spelling) {
				t.Errorf("%s %s: passed through without routing", r.Method, spelling)
			}
		}
	}
	for _, p := range []string{"/_matrix/client/v3/sync", "/_matrix/client/v3/rooms/!r:hs/messages", "/_matrix/media/v3/download/hs/x",
		"/_matrix/client/v3/account/whoami", "/_matrix/client/v3/pushrules/", "/_matrix/client/versions"} {
		if mayBeOurs(p) {
			t.Errorf("%s: routed, though no route of the gateway's can match it", p)
		}
	}
}
