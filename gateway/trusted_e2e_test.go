package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// End-to-end tests of trusted clients (issue 11) against a real Dendrite:
// after a 2FA stage, the same token from the same user agent and address
// skips it for the window; Dendrite's own password stage is still asked.

// e2eClient is a client as the gateway sees it: token, user agent and the
// address a trusted proxy (the test's loopback) forwards.
type e2eClient struct{ token, ua, addr string }

// send sends a JSON request through the gateway as c.
func (c e2eClient) send(e *env, method, path string, body any) resp {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("X-Forwarded-For", c.addr)
	req.Header.Set("Content-Type", "application/json")
	return send(e.t, req)
}

// trustedClients turns trusted clients on with the defaults (5 minutes),
// the test's loopback a trusted proxy.
func trustedClients(g *gatewayConfig, _ *accountConfig) {
	g.TrustedClients = trust.DefaultConfig()
	g.TrustedProxies, _ = ratelimit.ParseProxies([]string{"127.0.0.0/8", "::1"})
}

// deleteWithSecondFactor deletes device d as c: the challenge, the TOTP
// stage, then Dendrite's password stage.
func (e *env) deleteWithSecondFactor(c e2eClient, u *enrolled, d string) {
	e.t.Helper()
	body := map[string]any{"devices": []string{d}}
	s := e.e2eCheckChallenge(c.send(e, "POST", e2eDeleteDevicesPath, body), e2eProtectedFlows, nil)
	r := c.send(e, "POST", e2eDeleteDevicesPath, e2eWith(body, e2eAuth(e2eStageTOTP, s, e.code(u))))
	e.e2eCheckChallenge(r, e2eProtectedFlows, []string{e2eStageTOTP})
	expect(e.t, c.send(e, "POST", e2eDeleteDevicesPath, e2eWith(body, passwordAuth(u.User, s))), 200, "")
	if e.e2eHasDevice(u.AccessToken, d) {
		e.t.Fatalf("device %s survived its deletion", d)
	}
}

func TestTrustedClientSkipsSecondFactor(t *testing.T) {
	e := newEnv(t, trustedClients)
	alice := e.enrol("alice")
	trusted := e2eClient{alice.AccessToken, "Element/1.0", "198.51.100.7"}
	e.deleteWithSecondFactor(trusted, alice, e.newDevice(alice))

	// Within the window, a second device: Dendrite's own stage only.
	d := e.newDevice(alice)
	body := map[string]any{"devices": []string{d}}
	r := trusted.send(e, "POST", e2eDeleteDevicesPath, body)
	if r.Status != 401 || !slices.EqualFunc(r.flows(), [][]string{{e2eStagePass}}, slices.Equal) {
		t.Fatalf("trusted client: got %d %s; want Dendrite's password flow alone", r.Status, r.Raw)
	}
	expect(t, trusted.send(e, "POST", e2eDeleteDevicesPath, e2eWith(body, passwordAuth(alice.User, r.str("session")))), 200, "")
	if e.e2eHasDevice(alice.AccessToken, d) {
		t.Fatalf("device %s survived the trusted client's deletion", d)
	}

	other, err := e.hs.Login(context.Background(), alice.Localpart, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]e2eClient{
		"another user agent": {trusted.token, "Evil/1.0", trusted.addr},
		"another address":    {trusted.token, trusted.ua, "203.0.113.9"},
		"another token":      {other.AccessToken, trusted.ua, trusted.addr},
	} {
		t.Run(name, func(t *testing.T) {
			r := c.send(e, "POST", e2eDeleteDevicesPath, map[string]any{"devices": []string{e.newDevice(alice)}})
			e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
		})
	}
	t.Run("after the window", func(t *testing.T) {
		e.clock.Add(5*time.Minute + time.Second)
		r := trusted.send(e, "POST", e2eDeleteDevicesPath, map[string]any{"devices": []string{e.newDevice(alice)}})
		e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
	})
}

func TestTrustedClientStillAsksToDisable(t *testing.T) {
	e := newEnv(t, trustedClients)
	alice := e.enrol("alice")
	trusted := e2eClient{alice.AccessToken, "Element/1.0", "198.51.100.7"}
	e.deleteWithSecondFactor(trusted, alice, e.newDevice(alice))

	r := trusted.send(e, "DELETE", "/_matrix/client/v3/account/two-factor/totp", map[string]any{"auth": passwordAuth(alice.User, "")})
	if r.Status != 401 || !slices.Equal(r.strings("completed"), []string{e2eStagePass}) {
		t.Fatalf("disable with the password: got %d %s; want the challenge for the second factor", r.Status, r.Raw)
	}
	if enabled, err := e.acc.Enabled(context.Background(), alice.UserID); err != nil || !enabled {
		t.Fatalf("2FA disabled without the code: %v, %v", enabled, err)
	}
	r = trusted.send(e, "DELETE", "/_matrix/client/v3/account/two-factor/totp",
		map[string]any{"auth": e2eAuth(e2eStageTOTP, r.str("session"), e.code(alice))})
	expect(t, r, 200, "")

	// Disabling ended the trust: after a new enrolment the stage is back.
	e.enrolUser(alice.User)
	r = trusted.send(e, "POST", e2eDeleteDevicesPath, map[string]any{"devices": []string{e.newDevice(alice)}})
	e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
}
