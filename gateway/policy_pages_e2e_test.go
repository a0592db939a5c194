package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
)

// End-to-end tests of the enforcement policy and "remember this browser" on
// the OAuth authorization page, and of the policy's notice on the account
// page, against a real Dendrite.

const oauthCB = "https://app.example/cb"

func policyOAuthEnv(t *testing.T, cfg policy.Config) *env {
	cfg.Grace = polGrace
	return ssoEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.Policy = cfg
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
	})
}

// noRedirect fails if page p sent the browser anywhere (an authorization code).
func noRedirect(t *testing.T, p pgPage, status int, what string) {
	t.Helper()
	if p.Status != status || p.Header.Get("Location") != "" {
		t.Fatalf("%s: %d to %q; want %d and no redirect\n%s", what, p.Status, p.Header.Get("Location"), status, p.Body)
	}
}

// hasDevice reports whether the homeserver lists device for token's owner.
func (e *env) hasDevice(token, device string) bool {
	e.t.Helper()
	r := e.direct("GET", "/_matrix/client/v3/devices", token, nil)
	expect(e.t, r, 200, "")
	return strings.Contains(string(r.Raw), `"`+device+`"`)
}

func TestPolicyOAuthPageGrace(t *testing.T) {
	e := policyOAuthEnv(t, policy.Config{Enforce: policy.ModeAll})
	alice := tesths.RegisterUser(t, e.hs, "poloauthgrace")
	client := e.registerClient(webClient())
	pk := newPKCE("policy-oauth-grace-")
	page := authorizeURL(client, oauthCB, "POLGRACE01", "s1", pk, "")
	c := e.pgClient()

	p := c.oauthSignIn(page, alice.Localpart, alice.Password)
	pgWant(t, p, 200, `id="days-left"`, "7 days", `id="skip"`, `id="qr"`, alice.UserID)
	// Neither the code step nor "continue" releases an enrolment's session.
	noRedirect(t, c.oauthCode(page, p, "000000"), 403, "code step on the enrolment's session")
	noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", "continue", "session", p.hidden("session")), 403, "continue before enrolling")
	if e.hasDevice(alice.AccessToken, "POLGRACE01") {
		t.Fatal("the client's device exists before the sign-in finished")
	}
	skip := c.post(page, "csrf", p.hidden("csrf"), "step", "skip", "session", p.hidden("session"))
	params := redirectParams(t, skip, oauthCB+"?")
	tok := e.exchange(client, params.Get("code"), oauthCB, pk.verifier)
	expect(t, tok, 200, "")
	expect(t, e.gw("GET", polSync, tok.str("access_token"), nil), 200, "")

	e.clock.Add(48 * time.Hour)
	pgWant(t, c.oauthSignIn(page, alice.Localpart, alice.Password), 200, "5 days", `id="skip"`)
}

func TestPolicyOAuthPageAfterGrace(t *testing.T) {
	e := policyOAuthEnv(t, policy.Config{Enforce: policy.ModeAll, Exempt: []string{"@poloauthbot*"}})
	alice := tesths.RegisterUser(t, e.hs, "poloauthalice")
	bot := tesths.RegisterUser(t, e.hs, "poloauthbot")
	expect(t, e.gw("GET", polSync, alice.AccessToken, nil), 200, "") // the grace period starts
	e.clock.Add(polGrace)
	expect(t, e.gw("GET", polSync, alice.AccessToken, nil), 403, "M_FORBIDDEN")
	client := e.registerClient(webClient())
	pk := newPKCE("policy-oauth-after-")
	page := authorizeURL(client, oauthCB, "POLAFTER01", "s2", pk, "")
	c := e.pgClient()

	// The exempt bot gets its code at once.
	redirectParams(t, c.oauthSignIn(authorizeURL(client, oauthCB, "POLBOT01", "s3", pk, ""), bot.Localpart, bot.Password), oauthCB+"?")

	p := c.oauthSignIn(page, alice.Localpart, alice.Password)
	pgWant(t, p, 200, "requires two-factor authentication", `id="qr"`)
	if p.has(`id="skip"`) || p.has(`id="days-left"`) {
		t.Fatal("\"Not now\" offered after the grace period")
	}
	noRedirect(t, c.oauthCode(page, p, "000000"), 403, "code step on the enrolment's session")
	noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", "skip", "session", p.hidden("session")), 403, "forged \"Not now\"")

	p = c.oauthSignIn(page, alice.Localpart, alice.Password)
	wrong := c.post(page, "csrf", p.hidden("csrf"), "step", "enrol", "session", p.hidden("session"),
		"enrolment", p.hidden("enrolment"), "code", "000000")
	pgWant(t, wrong, 403, `id="qr"`)
	codes := c.post(page, "csrf", p.hidden("csrf"), "step", "enrol", "session", p.hidden("session"),
		"enrolment", p.hidden("enrolment"), "code", e.polCode(p))
	pgWant(t, codes, 200, `id="codes"`, `id="continue"`)
	if e.hasDevice(alice.AccessToken, "POLAFTER01") {
		t.Fatal("the client's device exists before the sign-in finished")
	}
	// Enrolled now: "Not now" (with the enrolment page's token) is refused
	// and leaves the session; "continue" with that token too.
	noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", "skip", "session", p.hidden("session")), 403, "\"Not now\" after enrolling")
	noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", "continue", "session", p.hidden("session")), 403, "continue with the enrolment's token")
	done := c.post(page, "csrf", codes.hidden("csrf"), "step", "continue", "session", codes.hidden("session"))
	params := redirectParams(t, done, oauthCB+"?")
	tok := e.exchange(client, params.Get("code"), oauthCB, pk.verifier)
	expect(t, tok, 200, "")
	who := e.gw("GET", polWhoami, tok.str("access_token"), nil)
	if who.str("device_id") != "POLAFTER01" {
		t.Fatalf("whoami: %s", who.Raw)
	}
	expect(t, e.gw("GET", polSync, tok.str("access_token"), nil), 200, "")
	// The session is spent.
	noRedirect(t, c.post(page, "csrf", codes.hidden("csrf"), "step", "continue", "session", codes.hidden("session")), 403, "continue again")
}

func TestPolicyAccountPageDaysLeft(t *testing.T) {
	e := policyEnv(t, policy.Config{Enforce: policy.ModeSelected, Patterns: []string{"@polself-*"}})
	u := tesths.RegisterUser(t, e.hs, "polself-1")
	other := tesths.RegisterUser(t, e.hs, "polselfother")
	wantPage(t, e.browser().signIn(u), 200, "Signed in as", `id="days-left"`, "7 days")
	if p := e.browser().signIn(other); p.Status != 200 || strings.Contains(p.Body, `id="policy"`) {
		t.Fatalf("a user outside the policy is told about it: %d\n%s", p.Status, p.Body)
	}
	e.clock.Add(polGrace - 30*time.Hour)
	wantPage(t, e.browser().signIn(u), 200, `id="days-left"`, "2 days")
	e.clock.Add(31 * time.Hour)
	b := e.browser()
	wantPage(t, b.signIn(u), 200, "requires two-factor authentication")
	if b.last.has(`id="days-left"`) {
		t.Fatal("days left shown after the grace period")
	}
	// Enrolled, the notice is gone.
	e.enrolUser(u)
	if p := e.browser().signIn(u); p.Status != 200 || strings.Contains(p.Body, `id="policy"`) {
		t.Fatalf("an enrolled user is told about the policy: %d\n%s", p.Status, p.Body)
	}
}

// setCookies are the Set-Cookie headers of p named name.
func setCookies(p pgPage, name string) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range (&http.Response{Header: p.Header}).Cookies() {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func TestRememberBrowserOAuthPage(t *testing.T) {
	e := ssoEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.RememberTTL = 720 * time.Hour
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
	})
	u, other := e.enrol("remoauth"), e.enrol("remoauthother")
	client := e.registerClient(webClient())
	pk := newPKCE("remember-oauth-")
	page := func(dev string) string { return authorizeURL(client, oauthCB, dev, "st", pk, "") }
	c := e.pgClient()

	// A wrong code with the box ticked remembers nothing.
	codePage := c.oauthSignIn(page("REMDEV01"), u.Localpart, u.Password)
	pgWant(t, codePage, 200, `id="remember"`, "Remember this browser for 30 days")
	wrong := c.post(page("REMDEV01"), "csrf", codePage.hidden("csrf"), "step", "code", "session", codePage.hidden("session"), "code", "000000", "remember", "1")
	if wrong.Status != 403 || len(setCookies(wrong, rememberCookieName)) != 0 {
		t.Fatalf("wrong code: %d, cookies %v", wrong.Status, wrong.Header["Set-Cookie"])
	}
	done := c.post(page("REMDEV01"), "csrf", codePage.hidden("csrf"), "step", "code", "session", codePage.hidden("session"), "code", e.code(u), "remember", "1")
	redirectParams(t, done, oauthCB+"?")
	set := setCookies(done, rememberCookieName)
	if len(set) != 2 || set[0].Value != set[1].Value || set[0].Path != "/_matrix/client/" || set[1].Path != oauth.Prefix {
		t.Fatalf("remember cookies: %v", done.Header["Set-Cookie"])
	}
	for _, ck := range set {
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.MaxAge != 720*3600 {
			t.Fatalf("remember cookie flags: %v", ck)
		}
	}

	// The same browser: no code on the OAuth page, nor on the sign-in page.
	params := redirectParams(t, c.oauthSignIn(page("REMDEV02"), u.Localpart, u.Password), oauthCB+"?")
	expect(t, e.exchange(client, params.Get("code"), oauthCB, pk.verifier), 200, "")
	expect(t, e.ssoRedeem(ssoToken(t, c.ssoCredentials(ssoPage(ssoAllowed), u.UserID, u.Password), ssoAllowed), ""), 200, "")
	// A wrong password is still refused.
	noRedirect(t, c.oauthSignIn(page("REMDEV03"), u.Localpart, "wrong"), 403, "wrong password in a remembered browser")
	// Another user in that browser, and the user in a fresh one, are asked.
	pgWant(t, c.oauthSignIn(page("REMDEV04"), other.Localpart, other.Password), 200, `name="code"`)
	pgWant(t, e.pgClient().oauthSignIn(page("REMDEV05"), u.Localpart, u.Password), 200, `name="code"`)

	// Revoked on the account page: asked again.
	b := e.accountPage(u)
	wantPage(t, b.post("action", "forget-browsers"), 200)
	pgWant(t, c.oauthSignIn(page("REMDEV06"), u.Localpart, u.Password), 200, `name="code"`)
}

// TestBrowserPolicyEnrol runs tests/browser/policy.mjs: a user under policy
// `all` after the grace period is walked through enrolment on the sign-in
// page in headless Chromium and then gets in.
func TestBrowserPolicyEnrol(t *testing.T) {
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><meta charset="utf-8"><title>Client</title><p>Back in the client</p>`)
	}))
	t.Cleanup(cb.Close)
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.RedirectAllowlist = []string{cb.URL + "/cb"}
		g.Policy = policy.Config{Enforce: policy.ModeAll, Grace: polGrace}
	})
	u := tesths.RegisterUser(t, e.hs, "polbrowser")
	expect(t, e.gw("GET", polSync, u.AccessToken, nil), 200, "") // the grace period starts
	e.clock.Add(polGrace + time.Hour)
	runBrowser(t, "policy.mjs", e.browserVars(&enrolled{User: u}, map[string]string{"CALLBACK_URL": cb.URL + "/cb"}))
	if on, err := e.acc.Enabled(context.Background(), u.UserID); err != nil || !on {
		t.Fatalf("2FA after the browser's enrolment: %v %v", on, err)
	}
}
