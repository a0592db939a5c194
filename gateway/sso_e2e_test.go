package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// End-to-end tests of "Sign in with 2FA" (the SSO-shaped sign-in page and
// its login tokens) against a real Dendrite.

const (
	ssoAllowed  = "http://client.example/app/"
	ssoRedirect = "/_matrix/client/v3/login/sso/redirect"
)

func ssoEnv(t *testing.T, opts ...envOption) *env {
	return newEnv(t, append([]envOption{func(g *gatewayConfig, _ *accountConfig) {
		g.RedirectAllowlist = []string{ssoAllowed}
	}}, opts...)...)
}

// ssoPage is the sign-in page URL for the gateway's provider and target.
func ssoPage(target string) string {
	return ssoRedirect + "/matrix-2fa?redirectUrl=" + url.QueryEscape(target)
}

// ssoCredentials opens the page and submits username and password.
func (c *pgClient) ssoCredentials(page, user, password string) pgPage {
	c.t.Helper()
	get := c.get(page)
	pgWant(c.t, get, 200, `name="username"`, `name="password"`)
	return c.post(page, "csrf", get.hidden("csrf"), "step", "credentials", "confirm", get.hidden("confirm"),
		"username", user, "password", password)
}

// ssoCode submits a code on the code page p.
func (c *pgClient) ssoCode(page string, p pgPage, code string) pgPage {
	c.t.Helper()
	return c.post(page, "csrf", p.hidden("csrf"), "step", "code", "session", p.hidden("session"),
		"confirm", p.hidden("confirm"), "code", code)
}

// ssoToken checks a 302 to target's prefix with a loginToken and returns it.
func ssoToken(t *testing.T, p pgPage, prefix string) string {
	t.Helper()
	if p.Status != 302 {
		t.Fatalf("got %d; want 302\n%s", p.Status, p.Body)
	}
	loc := p.Header.Get("Location")
	if !strings.HasPrefix(loc, prefix) {
		t.Fatalf("Location %q; want %s…", loc, prefix)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.Query().Get("loginToken")
	if len(tok) < 43 {
		t.Fatalf("loginToken %q in %q: want at least 32 random bytes", tok, loc)
	}
	return tok
}

func (e *env) ssoRedeem(token, name string) resp {
	e.t.Helper()
	body := map[string]any{"type": "m.login.token", "token": token}
	if name != "" {
		body["initial_device_display_name"] = name
	}
	return e.gw("POST", pgLogin, "", body)
}

// ssoDeviceName returns the display name of device at Dendrite.
func (e *env) ssoDeviceName(token, device string) string {
	e.t.Helper()
	r := e.direct("GET", pgDevices+"/"+device, token, nil)
	if r.Status != 200 {
		e.t.Fatalf("GET device %s: %d %s", device, r.Status, r.Raw)
	}
	return r.str("display_name")
}

func TestSSOSignInWithCode(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssoalice")
	c := e.pgClient()
	target := ssoAllowed + "?from=element#/login"
	page := ssoPage(target)

	get := c.get(page)
	pgWant(t, get, 200, "<form", `<label for="username">`, `autocomplete="username"`, `autocomplete="current-password"`, "client.example")
	pgCheckHTML(t, get)
	if ck := get.Header.Get("Set-Cookie"); !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Lax") {
		t.Fatalf("Set-Cookie %q", ck)
	}
	if csp := get.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://client.example;") {
		t.Fatalf("CSP %q: form-action must allow the redirect's origin", csp)
	}

	codePage := c.post(page, "csrf", get.hidden("csrf"), "step", "credentials", "username", u.Localpart, "password", u.Password)
	pgWant(t, codePage, 200, `name="code"`, `autocomplete="one-time-code"`, u.UserID)
	pgCheckHTML(t, codePage)

	// A wrong code: the generic error, the code page again.
	wrong := c.ssoCode(page, codePage, e.wrongCode(u))
	pgWant(t, wrong, 403, "Invalid username, password or code", `name="code"`)

	tok := ssoToken(t, c.ssoCode(page, wrong, e.code(u)), ssoAllowed+"?from=element&loginToken=")
	if loc := c.post(page).Header.Get("Location"); loc != "" {
		t.Fatalf("a bare POST redirected to %s", loc)
	}

	r := e.ssoRedeem(tok, "Browser")
	expect(t, r, 200, "")
	if r.str("user_id") != u.UserID || r.str("access_token") == "" || r.str("device_id") == "" {
		t.Fatalf("redeemed login: %s", r.Raw)
	}
	if w := e.gw("GET", pgWhoAmI, r.str("access_token"), nil); w.Status != 200 || w.str("user_id") != u.UserID {
		t.Fatalf("whoami: %d %s", w.Status, w.Raw)
	}
	if name := e.ssoDeviceName(u.AccessToken, r.str("device_id")); name != "Browser" {
		t.Fatalf("device display name %q; want Browser", name)
	}
	// Single use: the second time the token is not ours any more and Dendrite refuses it.
	expect(t, e.ssoRedeem(tok, ""), 403, "M_FORBIDDEN")
}

func TestSSOSignInRecoveryCodeAndOneForm(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssobob")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	codePage := c.ssoCredentials(page, u.UserID, u.Password) // a full user ID works too
	tok := ssoToken(t, c.ssoCode(page, codePage, u.recovery[0]), ssoAllowed+"?loginToken=")
	expect(t, e.ssoRedeem(tok, ""), 200, "")

	// The spec's one-form variant: username, password and code together.
	get := c.get(page)
	tok = ssoToken(t, c.post(page, "csrf", get.hidden("csrf"), "username", u.Localpart, "password", u.Password, "code", e.code(u)), ssoAllowed)
	expect(t, e.ssoRedeem(tok, ""), 200, "")
}

func TestSSOGenericErrors(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssocarol")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	before := e.deviceIDs(u.AccessToken)
	for name, creds := range map[string][2]string{
		"wrong password": {u.Localpart, u.Password + "x"},
		"unknown user":   {"nobody-here", "whatever"},
		"empty password": {u.Localpart, ""},
	} {
		p := c.ssoCredentials(page, creds[0], creds[1])
		pgWant(t, p, 403, "Invalid username, password or code", `name="password"`)
		if p.has(`name="code"`) {
			t.Fatalf("%s: code step shown", name)
		}
	}
	// Forged forms: no cookie, or a token for another cookie.
	other := e.pgClient()
	get := other.get(page)
	pgWant(t, c.post(page, "csrf", get.hidden("csrf"), "username", u.Localpart, "password", u.Password), 403, "expired")
	fresh := e.pgClient()
	pgWant(t, fresh.post(page, "csrf", get.hidden("csrf"), "username", u.Localpart, "password", u.Password), 403, "expired")
	// A pending login of the page is neither a fallback session nor a /login one.
	codePage := c.ssoCredentials(page, u.Localpart, u.Password)
	s := codePage.hidden("session")
	expect(t, c.get(pgSession(pgTOTPFallback, s)).asResp(t), 400, "M_INVALID_PARAM")
	r := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": s, "code": e.peekCode(u, 0)}})
	expect(t, r, 403, "M_FORBIDDEN")
	// Its code form is bound to the cookie too.
	pgWant(t, other.ssoCode(page, codePage, e.peekCode(u, 0)), 403, "expired")
	// Abandoned: the sweeper logs its login out after LoginTTL.
	if n := len(e.deviceIDs(u.AccessToken)); n != len(before)+1 {
		t.Fatalf("%d devices with a pending login; want %d", n, len(before)+1)
	}
	e.clock.Add(6 * time.Minute)
	e.gate.Sweep(context.Background())
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the sweep; want %v", after, before)
	}
	pgWant(t, c.ssoCode(page, codePage, e.peekCode(u, 0)), 403, "expired")
}

func TestSSOWithout2FA(t *testing.T) {
	e := ssoEnv(t)
	u := e.pgPlainUser("ssodave")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	tok := ssoToken(t, c.ssoCredentials(page, u.Localpart, u.Password), ssoAllowed+"?loginToken=")
	r := e.ssoRedeem(tok, "Plain")
	expect(t, r, 200, "")
	if w := e.gw("GET", pgWhoAmI, r.str("access_token"), nil); w.Status != 200 {
		t.Fatalf("whoami: %d %s", w.Status, w.Raw)
	}
}

func TestSSORedirectPolicy(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssoerin")
	c := e.pgClient()

	// Missing or unusable redirectUrl: JSON 400.
	expect(t, c.get(ssoRedirect).asResp(t), 400, "M_MISSING_PARAM")
	expect(t, c.get(strings.Replace(ssoRedirect, "/v3/", "/r0/", 1)).asResp(t), 400, "M_MISSING_PARAM")
	for _, bad := range []string{"javascript:alert(1)", "data:text/html,x", "/relative", "ftp://client.example/", "http://", "http://a b/"} {
		expect(t, c.get(ssoRedirect+"?redirectUrl="+url.QueryEscape(bad)).asResp(t), 400, "M_INVALID_PARAM")
	}
	// Both routes serve the page for our provider.
	pgWant(t, c.get(ssoRedirect+"?redirectUrl="+url.QueryEscape(ssoAllowed)), 200, `name="username"`)
	// Another provider is the homeserver's (Dendrite has none: not our page).
	if p := c.get(ssoRedirect + "/other-idp?redirectUrl=" + url.QueryEscape(ssoAllowed)); p.has(`name="username"`) {
		t.Fatalf("another provider got our page: %d", p.Status)
	}

	// Look-alikes of the allow-listed prefix need confirming.
	for _, target := range []string{"http://client.example.evil.test/app/", "http://client.example/application", "https://elsewhere.test/cb?x=1"} {
		p := c.get(ssoPage(target))
		host, _ := url.Parse(target)
		pgWant(t, p, 200, "Continue to "+host.Host+"?")
		if p.has(`name="password"`) {
			t.Fatalf("%s: the credentials form without confirmation", target)
		}
	}

	// Confirming, then signing in, lands on the confirmed target.
	target := "https://elsewhere.test/cb?x=1"
	page := ssoPage(target)
	inter := c.get(page)
	pgCheckHTML(t, inter)
	// Skipping the confirmation does not work.
	pgWant(t, c.post(page, "csrf", inter.hidden("csrf"), "username", u.Localpart, "password", u.Password), 403, "Continue to elsewhere.test?")
	creds := c.post(page, "csrf", inter.hidden("csrf"), "step", "confirm")
	pgWant(t, creds, 200, `name="password"`)
	if creds.hidden("confirm") == "" {
		t.Fatal("no confirmation token")
	}
	codePage := c.post(page, "csrf", creds.hidden("csrf"), "confirm", creds.hidden("confirm"), "username", u.Localpart, "password", u.Password)
	pgWant(t, codePage, 200, `name="code"`)
	tok := ssoToken(t, c.ssoCode(page, codePage, e.code(u)), "https://elsewhere.test/cb?x=1&loginToken=")
	expect(t, e.ssoRedeem(tok, ""), 200, "")
}

func TestSSOLockout(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssofrank")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	before := e.deviceIDs(u.AccessToken)
	p := c.ssoCredentials(page, u.Localpart, u.Password)
	for i := 0; i < 10 && p.Status != 429; i++ {
		pgWant(t, p, map[bool]int{true: 200, false: 403}[i == 0], `name="code"`)
		p = c.ssoCode(page, p, e.wrongCode(u))
	}
	pgWant(t, p, 429, "Too many failed attempts. Try again in ")
	if p.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the lockout; want %v (pending login logged out)", after, before)
	}
	// Still locked: the right password gets to the code step, the right code is refused.
	p = c.ssoCredentials(page, u.Localpart, u.Password)
	pgWant(t, c.ssoCode(page, p, e.code(u)), 429, "Try again in ")
}

func TestSSOLoginTokenExpiry(t *testing.T) {
	e := ssoEnv(t)
	u := e.enrol("ssogina")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	before := e.deviceIDs(u.AccessToken)

	// Unredeemed: the sweeper logs the login out after TokenTTL.
	tok := ssoToken(t, c.ssoCode(page, c.ssoCredentials(page, u.Localpart, u.Password), e.code(u)), ssoAllowed)
	if n := len(e.deviceIDs(u.AccessToken)); n != len(before)+1 {
		t.Fatalf("%d devices with an unredeemed token; want %d", n, len(before)+1)
	}
	e.gate.Sweep(context.Background())
	if n := len(e.deviceIDs(u.AccessToken)); n != len(before)+1 {
		t.Fatal("the sweeper took a live token")
	}
	e.clock.Add(3 * time.Minute)
	e.gate.Sweep(context.Background())
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the sweep; want %v", after, before)
	}
	expect(t, e.ssoRedeem(tok, ""), 403, "M_FORBIDDEN")

	// Expired but not yet swept: refused by the gateway, and logged out.
	tok = ssoToken(t, c.ssoCode(page, c.ssoCredentials(page, u.Localpart, u.Password), e.code(u)), ssoAllowed)
	e.clock.Add(3 * time.Minute)
	r := e.ssoRedeem(tok, "")
	expect(t, r, 403, "M_FORBIDDEN")
	if r.str("error") != "Invalid login token" {
		t.Fatalf("error %q", r.str("error"))
	}
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the expired redemption; want %v", after, before)
	}
}

func TestSSOForbidBarePassword(t *testing.T) {
	e := ssoEnv(t, func(g *gatewayConfig, _ *accountConfig) { g.ForbidBarePassword = true })
	u := e.enrol("ssohank")
	before := e.deviceIDs(u.AccessToken)
	r := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, r, 403, "M_FORBIDDEN")
	if !strings.Contains(r.str("error"), "Sign in with 2FA") {
		t.Fatalf("error %q does not point to Sign in with 2FA", r.str("error"))
	}
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the refused login; want %v", after, before)
	}
	// GET /login offers the provider, and it works.
	flows := e.gw("GET", pgLogin, "", nil)
	if !strings.Contains(string(flows.Raw), `"id":"matrix-2fa"`) || !strings.Contains(string(flows.Raw), `"m.login.token"`) {
		t.Fatalf("login flows: %s", flows.Raw)
	}
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	tok := ssoToken(t, c.ssoCode(page, c.ssoCredentials(page, u.Localpart, u.Password), e.code(u)), ssoAllowed)
	expect(t, e.ssoRedeem(tok, ""), 200, "")
}

// pgPlainUser registers a user without 2FA.
func (e *env) pgPlainUser(localpart string) *enrolled {
	e.t.Helper()
	return &enrolled{User: tesths.RegisterUser(e.t, e.hs, localpart)}
}

// TestBrowserSignIn runs tests/browser/signin.mjs: Sign in with 2FA in
// headless Chromium, to an allow-listed callback and, after the confirmation
// page, to one off the allowlist; the tokens are redeemed by the script.
func TestBrowserSignIn(t *testing.T) {
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><meta charset="utf-8"><title>Client</title><p>Back in the client</p>`)
	}))
	t.Cleanup(cb.Close)
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) { g.RedirectAllowlist = []string{cb.URL + "/cb"} })
	u := e.enrol("ssobrowser")
	before := e.deviceIDs(u.AccessToken)
	runBrowser(t, "signin.mjs", e.browserVars(u, map[string]string{
		"CALLBACK_URL": cb.URL + "/cb",
		"OTHER_URL":    cb.URL + "/other/cb",
		"WRONG_CODE":   e.wrongCode(u),
		"CODE":         e.peekCode(u, 0),
		"CODE2":        e.peekCode(u, 1),
	}))
	if n := len(e.deviceIDs(u.AccessToken)); n != len(before)+2 {
		t.Fatalf("%d devices after two sign-ins; want %d", n, len(before)+2)
	}
}
