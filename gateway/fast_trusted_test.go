package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// Fast tests of the trusted-client decision: after a 2FA stage, the same
// token from the same user agent and address skips the stage for the window.

const aliceTok2 = "alice-tok-2"

// from is a client: its token, user agent and address (behind the proxy).
type from struct{ token, ua, addr string }

var trustedFrom = from{aliceTok, "client-1", "203.0.113.7"}

// send sends a JSON body as f through the trusted proxy 192.0.2.1.
func (f from) send(e *fast, method, path string, body obj) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	h := http.Header{"Authorization": {"Bearer " + f.token}, "User-Agent": {f.ua},
		"X-Forwarded-For": {f.addr}, "Content-Type": {"application/json"}}
	return e.raw(method, path, h, string(b))
}

// trustedFast is a fast gateway with trusted clients on (window) behind the
// proxy 192.0.2.1, alice holding a second token.
func trustedFast(t *testing.T, window time.Duration) *fast {
	e := newFast(t, func(c *gateway.Config) {
		c.TrustedClients = trust.DefaultConfig()
		c.TrustedClients.Window = window
		c.TrustedProxies, _ = ratelimit.ParseProxies([]string{"192.0.2.1"})
	})
	e.hs.locked(func() { e.hs.tokens[aliceTok2] = homeserver.WhoAmI{UserID: alice, DeviceID: "ALICEDEV2"} })
	return e
}

// deleteWith2FA deletes D1 as f through the 2FA stage and the password.
func deleteWith2FA(t *testing.T, e *fast, f from) {
	t.Helper()
	r := f.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}})
	s := r.str("session")
	expect(t, f.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}, "auth": totpOf(alice)(e, s)}), 401, "")
	expect(t, f.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}, "auth": passwordAuth2("alice", alicePW)(e, s)}), 200, "")
}

func TestFastTrustedClient(t *testing.T) {
	t.Parallel()
	homeserverOnly := [][]string{{"m.login.password"}}
	tests := []struct {
		name   string
		window time.Duration
		before func(e *fast)
		as     from
		method string
		path   string
		want   [][]string // the first challenge's flows
	}{
		{"same client within the window", 5 * time.Minute, nil, trustedFrom, "POST", deleteDevices, homeserverOnly},
		{"same client, another endpoint", 5 * time.Minute, nil, trustedFrom, "DELETE", "/_matrix/client/v3/devices/D2", homeserverOnly},
		{"after the window", 5 * time.Minute, func(e *fast) { e.clock.Add(5*time.Minute + time.Second) }, trustedFrom, "POST", deleteDevices, totpThenPassword},
		{"another user agent", 5 * time.Minute, nil, from{aliceTok, "client-2", trustedFrom.addr}, "POST", deleteDevices, totpThenPassword},
		{"another address", 5 * time.Minute, nil, from{aliceTok, trustedFrom.ua, "203.0.113.8"}, "POST", deleteDevices, totpThenPassword},
		{"another token", 5 * time.Minute, nil, from{aliceTok2, trustedFrom.ua, trustedFrom.addr}, "POST", deleteDevices, totpThenPassword},
		{"window 0 (off)", 0, nil, trustedFrom, "POST", deleteDevices, totpThenPassword},
		{"an operation that always asks", 5 * time.Minute, nil, trustedFrom, "POST", "/_matrix/client/v3/account/deactivate", totpThenPassword},
		{"after logout", 5 * time.Minute, func(e *fast) {
			expect(e.t, trustedFrom.send(e, "POST", "/_matrix/client/v3/logout", obj{}), 200, "")
		}, trustedFrom, "POST", deleteDevices, totpThenPassword},
		{"after an admin reset and a new enrolment", 5 * time.Minute, func(e *fast) {
			if _, err := e.acc.AdminReset(e.t.Context(), alice, "test"); err != nil {
				e.t.Fatal(err)
			}
			e.enrol(alice)
		}, trustedFrom, "POST", deleteDevices, totpThenPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := trustedFast(t, tc.window)
			deleteWith2FA(t, e, trustedFrom)
			if tc.before != nil {
				tc.before(e)
			}
			r := tc.as.send(e, tc.method, tc.path, obj{"devices": []string{"D2"}})
			if r.Status != 401 || !slices.EqualFunc(r.flows(), tc.want, slices.Equal) {
				t.Fatalf("got %d %s; want the flows %v", r.Status, r.Raw, tc.want)
			}
		})
	}
}

// TestFastTrustedClientCompletes: a trusted client's operation goes through
// with the homeserver's stages alone, the auth dict still bound to the owner
// and the body rebuilt; the gateway's own endpoints skip the second factor
// where they may and ask where they always do.
func TestFastTrustedClientCompletes(t *testing.T) {
	t.Parallel()
	e := trustedFast(t, 5*time.Minute)
	deleteWith2FA(t, e, trustedFrom)
	r := trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D2"}, "evil": true})
	expect(t, r, 401, "")
	sameJSON(t, "first upstream", e.hs.lastDo(t).Body, `{"devices":["D2"]}`)
	s := r.str("session")
	r = trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D2"},
		"auth": obj{"type": "m.login.password", "session": s, "identifier": userID("ALICE"), "password": alicePW}})
	expect(t, r, 200, "")
	sameJSON(t, "upstream", e.hs.lastDo(t).Body, `{"devices":["D2"],"auth":{"type":"m.login.password","session":"`+s+
		`","identifier":{"type":"m.id.user","user":"@alice:example.org"},"password":"alice-pw"}}`)
	noOwnStagesUpstream(t, e)

	// Replacing the authenticator, disabling and regenerating always ask.
	r = trustedFrom.send(e, "POST", "/_matrix/client/v3/account/two-factor/totp", obj{})
	if !slices.ContainsFunc(r.flows(), func(f []string) bool { return slices.Contains(f, "m.login.2fa.totp") }) {
		t.Fatalf("re-enrolment of a trusted client: %d %s", r.Status, r.Raw)
	}
	r = trustedFrom.send(e, "DELETE", "/_matrix/client/v3/account/two-factor/totp", obj{})
	if !slices.ContainsFunc(r.flows(), func(f []string) bool { return slices.Contains(f, "m.login.2fa.totp") }) {
		t.Fatalf("disabling 2FA from a trusted client: %d %s", r.Status, r.Raw)
	}
	r = trustedFrom.send(e, "POST", "/_matrix/client/v3/account/two-factor/recovery", obj{})
	if !slices.EqualFunc(r.flows(), secondFactorOnly, slices.Equal) {
		t.Fatalf("regenerating codes from a trusted client: %d %s", r.Status, r.Raw)
	}
}
