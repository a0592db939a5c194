package gateway_test

import (
	"testing"
)

// Failures of the OAuth 2.0 API not covered in oauth_e2e_test.go: the
// lockout shared with /login, and state.

// TestOAuthLockoutSharedWithLogin: wrong codes on /login and on the
// authorization page count toward one lockout; past it even the right code
// is refused on both, and the page issues no authorization code.
func TestOAuthLockoutSharedWithLogin(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("oauthlocked")
	client := e.registerClient(webClient())
	const redirect = "https://app.example/cb"
	p := newPKCE("lockout-verifier-")
	page := authorizeURL(client, redirect, "LOCKDEV001", "s", p, "")
	c := e.pgClient()

	s := e.e2eHeldLogin(u)
	for i := 0; i < 3; i++ {
		r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.wrongCode(u))})
		expect(t, r, 401, "M_FORBIDDEN")
	}
	codePage := c.oauthSignIn(page, u.Localpart, u.Password)
	for i := 0; i < 2; i++ {
		r := c.oauthCode(page, codePage, e.wrongCode(u))
		if r.Status != 403 || r.Header.Get("Location") != "" {
			t.Fatalf("wrong code %d on the page: %d %q", i, r.Status, r.Header.Get("Location"))
		}
		codePage = r
	}
	r := c.oauthCode(page, codePage, e.peekCode(u, 0))
	if r.Status != 429 || r.Header.Get("Location") != "" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("right code past the lockout on the page: %d, Location %q, Retry-After %q\n%s", r.Status,
			r.Header.Get("Location"), r.Header.Get("Retry-After"), r.Body)
	}
	expect(t, e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(u))}), 429, "M_LIMIT_EXCEEDED")
	// A fresh sign-in on the page is locked out too.
	again := c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u))
	if again.Status != 429 || again.Header.Get("Location") != "" {
		t.Fatalf("a new sign-in while locked: %d %q", again.Status, again.Header.Get("Location"))
	}
}

// TestOAuthStateEchoed: state comes back exactly as sent (escaped by the
// redirect), in both response modes and on errors, and not at all when the
// client sent none. Comparing it is the client's check (RFC 6749 §10.12):
// a code delivered with another state is one the client must drop; were it
// redeemed anyway, the PKCE verifier and redirect_uri bind it to the request
// that started it.
func TestOAuthStateEchoed(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("oauthstate")
	client := e.registerClient(webClient())
	const redirect = "https://app.example/cb"
	p := newPKCE("state-verifier-")
	c := e.pgClient()
	const odd = "a b&c=d#e/ü"
	for _, mode := range []string{"query", "fragment"} {
		page := authorizeURL(client, redirect, "STATEDEV01", odd, p, mode)
		v := redirectParams(t, c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u)), redirect)
		if v.Get("state") != odd || v.Get("code") == "" {
			t.Fatalf("%s: params %v", mode, v)
		}
		// The code of one request does not redeem with another request's verifier.
		if r := e.exchange(client, v.Get("code"), redirect, newPKCE("other-request-").verifier); r.str("error") != "invalid_grant" {
			t.Fatalf("code with another request's verifier: %d %s", r.Status, r.Raw)
		}
	}
	page := authorizeURL(client, redirect, "STATEDEV02", "", p, "")
	v := redirectParams(t, c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u)), redirect+"?")
	if _, ok := v["state"]; ok {
		t.Fatalf("state without one sent: %v", v)
	}
	deny := authorizeURL(client, redirect, "D", odd, p, "fragment")
	get := c.get(deny)
	if v := redirectParams(t, c.post(deny, "csrf", get.hidden("csrf"), "step", "deny"), redirect+"#"); v.Get("state") != odd || v.Get("error") != "access_denied" {
		t.Fatalf("deny: %v", v)
	}
}
