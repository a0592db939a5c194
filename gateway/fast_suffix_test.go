package gateway_test

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFastDeleteDevicesSuffix: Synapse's delete_devices pattern has no "$",
// so any suffix reaches it; the gateway refuses every such spelling (a
// trailing slash is routed as the canonical path instead), and an empty
// device ID too.
func TestFastDeleteDevicesSuffix(t *testing.T) {
	for _, p := range []string{"/_matrix/client/v3/delete_devicesX", "/_matrix/client/v3/delete_devices/x",
		"/_matrix/client/unstable/delete_devices/anything/else", "/_matrix/client/v3/devices/"} {
		r := httptest.NewRequest("POST", p, strings.NewReader(`{"devices":["D"]}`))
		if strings.HasSuffix(p, "/v3/devices/") {
			r = httptest.NewRequest("DELETE", p, nil)
		}
		r.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		newFast(t).gw.Handler().ServeHTTP(rec, r)
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "M_UNRECOGNIZED") {
			t.Errorf("%s: %d %s; want 404 M_UNRECOGNIZED", p, rec.Code, rec.Body)
		}
	}
}
