package gateway_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
)

// Red-team tests of the enforcement policy and trusted clients (rt-a).

// rtBlocked is a policy env (enforce: all) and a user past the grace period
// without 2FA: every API request with their token must be 403 M_FORBIDDEN.
func rtBlocked(t *testing.T, opts ...envOption) (*env, string) {
	t.Helper()
	e := newEnv(t, append([]envOption{func(g *gatewayConfig, _ *accountConfig) {
		g.RedirectAllowlist = []string{ssoAllowed}
		g.Policy = policy.Config{Enforce: policy.ModeAll, Grace: polGrace}
	}}, opts...)...)
	u := tesths.RegisterUser(t, e.hs, "rtblocked")
	expect(t, e.gw("GET", polSync, u.AccessToken, nil), 200, "") // the grace period starts
	e.clock.Add(polGrace + time.Hour)
	expect(t, e.gw("GET", polSync, u.AccessToken, nil), 403, "M_FORBIDDEN")
	return e, u.AccessToken
}

// TestRedTeamADuplicateTokenBypassesPolicy: the same access token given
// twice (two access_token parameters, or two Authorization headers) makes
// httpx.RequestToken fail with ErrAmbiguousToken, which policyBlocks takes
// as "no token" and lets the request pass through untouched; Dendrite reads
// the first one and serves the blocked user.
func TestRedTeamADuplicateTokenBypassesPolicy(t *testing.T) {
	e, tok := rtBlocked(t)
	for name, build := range map[string]func() *http.Request{
		"two access_token parameters": func() *http.Request {
			req, _ := http.NewRequest("GET", e.srv.URL+polSync+"&access_token="+tok+"&access_token="+tok, nil)
			return req
		},
		"two Authorization headers": func() *http.Request {
			req, _ := http.NewRequest("GET", e.srv.URL+polSync, nil)
			req.Header.Add("Authorization", "Bearer "+tok)
			req.Header.Add("Authorization", "Bearer "+tok)
			return req
		},
		"token then junk parameter": func() *http.Request {
			req, _ := http.NewRequest("GET", e.srv.URL+polSync+"&access_token="+tok+"&access_token=x", nil)
			return req
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := send(t, build())
			if r.Status == 200 {
				t.Fatalf("blocked user served by the homeserver with a doubled token: %d %.200s", r.Status, r.Raw)
			}
		})
	}
}

// TestRedTeamAPolicyHolds: single-token spellings the policy must catch.
func TestRedTeamAPolicyHolds(t *testing.T) {
	e, tok := rtBlocked(t)
	req, _ := http.NewRequest("GET", e.srv.URL+polSync+"&access_token="+tok, nil)
	expect(t, send(t, req), 403, "M_FORBIDDEN")
	req, _ = http.NewRequest("GET", e.srv.URL+polSync, nil)
	req.Header.Set("Authorization", "bearer "+tok)
	if r := send(t, req); r.Status == 200 {
		t.Fatalf("lower-case scheme: %d", r.Status)
	}
	for _, p := range []string{
		"/_matrix/client/v3/login/get_token",
		"/_matrix/client/v3/account/two-factor/../../../sync",
		"/_matrix/client/unstable/org.x/sync",
		"/_matrix/media/v3/config",
		"/_dendrite/admin/whatever",
	} {
		if r := e.gw("POST", p, tok, map[string]any{}); r.Status != 403 {
			t.Errorf("POST %s: %d %s", p, r.Status, r.Raw)
		}
	}
	// A guarded endpoint the gateway answers itself.
	expect(t, e.gw("POST", "/_matrix/client/v3/delete_devices", tok, map[string]any{"devices": []string{"X"}}), 403, "M_FORBIDDEN")
}

// TestRedTeamAOAuthIssuesTokenToBlockedUser: /login refuses a blocked user
// (403, the login logged out again), but the OAuth authorization page signs
// them in with the password alone and the token endpoint hands out a fresh
// access token (a new homeserver device) — a second login path the policy
// does not cover.
func TestRedTeamAOAuthIssuesTokenToBlockedUser(t *testing.T) {
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
		g.Policy = policy.Config{Enforce: policy.ModeAll, Grace: polGrace}
	})
	u := tesths.RegisterUser(t, e.hs, "rtoauth")
	expect(t, e.gw("GET", polSync, u.AccessToken, nil), 200, "")
	e.clock.Add(polGrace + time.Hour)
	login := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.UserID}, "password": u.Password})
	expect(t, login, 403, "M_FORBIDDEN")

	client := e.registerClient(webClient())
	p := newPKCE("rt-verifier-")
	page := authorizeURL(client, "https://app.example/cb", "RTOAUTHDEV", "st", p, "")
	c := e.pgClient()
	got := c.oauthSignIn(page, u.Localpart, u.Password)
	if got.Status != 302 {
		return // refused: holds
	}
	params := redirectParams(t, got, "https://app.example/cb?")
	tok := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier)
	if tok.Status == 200 && tok.str("access_token") != "" {
		t.Fatalf("OAuth issued an access token (device RTOAUTHDEV) to a user /login refuses: %s", tok.Raw)
	}
}

// TestRedTeamATrustNotGrantedWithoutSecondFactor: neither the challenge nor
// a wrong code makes a client trusted; always_ask ops ask under every prefix.
func TestRedTeamATrustNotGrantedWithoutSecondFactor(t *testing.T) {
	t.Parallel()
	e := trustedFast(t, 5*time.Minute)
	r := trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}})
	s := r.str("session")
	if w := trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}, "auth": wrongAuth(alice)(e, s)}); w.Status != 401 {
		t.Fatalf("wrong code: %d %s", w.Status, w.Raw)
	}
	// A password stage before the second factor is refused, and trusts nothing.
	trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D1"}, "auth": passwordAuth2("alice", alicePW)(e, s)})
	r = trustedFrom.send(e, "POST", deleteDevices, obj{"devices": []string{"D2"}})
	if !slices.EqualFunc(r.flows(), totpThenPassword, slices.Equal) {
		t.Fatalf("trusted without a completed second factor: %d %s", r.Status, r.Raw)
	}

	deleteWith2FA(t, e, trustedFrom)
	for _, p := range []string{"/_matrix/client/r0/account/deactivate", "/_matrix/client/unstable/account/deactivate",
		"/_matrix/client/v3/account/password", "/_matrix/client/unstable/keys/device_signing/upload"} {
		r := trustedFrom.send(e, "POST", p, obj{})
		if !slices.ContainsFunc(r.flows(), func(f []string) bool { return slices.Contains(f, "m.login.2fa.totp") }) {
			t.Errorf("always_ask %s skipped for a trusted client: %d %s", p, r.Status, r.Raw)
		}
	}
	for _, p := range []string{"/_matrix/client/r0/account/two-factor/totp", "/_matrix/client/v3/account/two-factor/totp"} {
		r := trustedFrom.send(e, "DELETE", p, obj{"auth": passwordAuth2("alice", alicePW)(e, "")})
		if r.Status == 200 {
			t.Errorf("DELETE %s with the password from a trusted client disabled 2FA", p)
		}
	}
}
