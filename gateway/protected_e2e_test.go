package gateway_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

func TestProbeTmp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := tesths.RegisterUser(t, e.hs, "plain")
	d, err := e.hs.Login(ctx, u.Localpart, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	r := e.direct("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{d.DeviceID}})
	t.Logf("nouth %d %s", r.Status, r.Raw)
	a := passwordAuth(u, r.str("session"))
	a["password"] = "wrong"
	r2 := e.direct("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{d.DeviceID}, "auth": a})
	t.Logf("wrong %d %s", r2.Status, r2.Raw)
	r2 = e.direct("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{d.DeviceID}, "auth": passwordAuth(u, r.str("session"))})
	t.Logf("right %d %s", r2.Status, r2.Raw)
	r2 = e.direct("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": "x"})
	t.Logf("wrong login %d %s", r2.Status, r2.Raw)
	r2 = e.direct("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}})
	t.Logf("as login %d %s", r2.Status, r2.Raw)
	r2 = e.direct("GET", "/_matrix/client/v3/devices", u.AccessToken, nil)
	t.Logf("devices %d %s", r2.Status, r2.Raw)
	for _, p := range []string{"/_matrix/client/v3/login", "/_matrix/client/v3/account/two-factor/totp", "/_matrix/client/v3/delete_devices", "/_matrix/client/unstable/delete_devices"} {
		for _, base := range []string{e.hs.URL, e.srv.URL} {
			req, _ := http.NewRequest("OPTIONS", base+p, nil)
			req.Header.Set("Origin", "https://app.element.io")
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
			hr, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(hr.Body)
			hr.Body.Close()
			t.Logf("OPTIONS %s %s: %d %v %s", base, p, hr.StatusCode, hr.Header, b)
		}
	}
	r2 = e.direct("POST", "/_matrix/client/unstable/delete_devices", u.AccessToken, map[string]any{"devices": []string{d.DeviceID}})
	t.Logf("unstable direct %d %s", r2.Status, r2.Raw)
	r2 = e.gw("POST", "/_matrix/client/unstable/delete_devices", u.AccessToken, map[string]any{"devices": []string{d.DeviceID}})
	t.Logf("unstable gw %d %s", r2.Status, r2.Raw)
	r2 = e.direct("GET", "/_matrix/client/v3/sync?timeout=0", u.AccessToken, nil)
	t.Logf("sync %d %.300s", r2.Status, r2.Raw)
}
