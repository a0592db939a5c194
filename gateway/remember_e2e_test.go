package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// End-to-end tests of "remember this browser" (the sign-in page) and of
// tokens for bots and scripts (the account page) against a real Dendrite.

const rememberCookieName = "m2fa_remember"

func rememberEnv(t *testing.T) *env {
	return ssoEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.RememberTTL = 720 * time.Hour
		g.MaxBotTokens = 2
		g.TrustedProxies, _ = ratelimit.ParseProxies([]string{"127.0.0.0/8", "::1"})
	})
}

// ssoRemember signs u in on the sign-in page with client c, ticking
// "remember this browser", and returns the cookie the gateway set.
func (e *env) ssoRemember(c *pgClient, u *enrolled) *http.Cookie {
	e.t.Helper()
	page := ssoPage(ssoAllowed)
	p := c.ssoCredentials(page, u.Localpart, u.Password)
	pgWant(e.t, p, 200, `name="remember"`, "Remember this browser for 30 days")
	done := c.post(page, "csrf", p.hidden("csrf"), "step", "code", "session", p.hidden("session"),
		"code", e.code(u), "remember", "1")
	e.ssoSignedIn(done)
	cookie := findCookie((&http.Response{Header: done.Header}).Cookies(), rememberCookieName)
	if cookie == nil {
		e.t.Fatalf("no remember cookie: %v", done.Header["Set-Cookie"])
	}
	return cookie
}

// ssoSignedIn checks p redirects to the client with a login token that works.
func (e *env) ssoSignedIn(p pgPage) {
	e.t.Helper()
	if r := e.ssoRedeem(ssoToken(e.t, p, ssoAllowed), ""); r.Status != 200 {
		e.t.Fatalf("redeeming the login token: %d %s", r.Status, r.Raw)
	}
}

// ssoAsksCode reports whether a sign-in of u with c stops at the code step
// (false: it went straight back to the client, signed in).
func (e *env) ssoAsksCode(c *pgClient, u *enrolled) bool {
	e.t.Helper()
	p := c.ssoCredentials(ssoPage(ssoAllowed), u.Localpart, u.Password)
	if p.Status == 200 && p.has(`name="code"`) {
		return true
	}
	e.ssoSignedIn(p)
	return false
}

// rawDatabase is every byte of the SQLite files of this test's environment.
func rawDatabase(t *testing.T) []byte {
	t.Helper()
	var all []byte
	filepath.Walk(filepath.Dir(t.TempDir()), func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasPrefix(info.Name(), "2fa.db") {
			b, _ := os.ReadFile(path)
			all = append(all, b...)
		}
		return nil
	})
	if len(all) == 0 {
		t.Fatal("found no database file")
	}
	return all
}

func TestRememberBrowser(t *testing.T) {
	e := rememberEnv(t)
	u := e.enrol("remember")
	c := e.pgClient()
	cookie := e.ssoRemember(c, u)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/_matrix/client/" || cookie.Secure ||
		cookie.MaxAge != int((720*time.Hour).Seconds()) {
		t.Errorf("remember cookie: HttpOnly=%v SameSite=%v Path=%q Secure=%v MaxAge=%d", cookie.HttpOnly, cookie.SameSite, cookie.Path, cookie.Secure, cookie.MaxAge)
	}
	if e.ssoAsksCode(c, u) {
		t.Fatal("the remembered browser was asked for the code again")
	}
	if !e.ssoAsksCode(e.pgClient(), u) {
		t.Fatal("a fresh browser was let in without a code")
	}
	if other := e.enrol("remember2"); !e.ssoAsksCode(c, other) {
		t.Fatal("the browser remembered for one user let another in without a code")
	}
	if bytes.Contains(rawDatabase(t), []byte(cookie.Value)) {
		t.Fatal("the database holds the remember cookie itself")
	}
	list, err := e.db.Browsers(context.Background(), string(u.UserID), e.clock.Now())
	if err != nil || len(list) != 1 || len(list[0].Hash) != 32 || list[0].UserAgent != "Go-http-client/1.1" || list[0].Addr == "" {
		t.Fatalf("stored browsers: %+v, %v", list, err)
	}
	e.clock.Add(721 * time.Hour)
	if !e.ssoAsksCode(c, u) {
		t.Fatal("an expired remembered browser skipped the code")
	}
}

func TestRememberBrowserSecureCookie(t *testing.T) {
	e := rememberEnv(t)
	u := e.enrol("remembersecure")
	c := e.pgClient()
	page := ssoPage(ssoAllowed)
	p := c.ssoCredentials(page, u.Localpart, u.Password)
	form := "csrf=" + url.QueryEscape(p.hidden("csrf")) + "&step=code&session=" + url.QueryEscape(p.hidden("session")) + "&code=" + e.code(u) + "&remember=1"
	req, _ := http.NewRequest("POST", e.srv.URL+page, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	hr, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	cookie := findCookie(hr.Cookies(), rememberCookieName)
	if hr.StatusCode != http.StatusFound || cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("over https: %d, cookie %+v", hr.StatusCode, cookie)
	}
}

var reForgetID = regexp.MustCompile(`name="action" value="forget-browser">\s*<input type="hidden" name="id" value="([^"]+)">`)

// accountPage signs u in on the account page with the password and a code.
func (e *env) accountPage(u *enrolled) *webUser {
	e.t.Helper()
	b := e.browser()
	wantPage(e.t, b.signIn(u.User), 200, `value="code"`)
	wantPage(e.t, b.post("action", "code", "code", e.code(u)), 200, "Signed in as")
	return b
}

func TestRememberBrowserRevoked(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		revoke func(e *env, u *enrolled)
	}{
		{"one on the account page", func(e *env, u *enrolled) {
			b := e.accountPage(u)
			m := reForgetID.FindStringSubmatch(b.last.Body)
			if m == nil || strings.Count(b.last.Body, `class="browser"`) != 1 {
				t.Fatalf("the account page does not list the browser:\n%s", b.last.Body)
			}
			wantPage(t, b.post("action", "forget-browser", "id", html.UnescapeString(m[1])), 200, "The browser was forgotten", "No browser is remembered")
		}},
		{"all on the account page", func(e *env, u *enrolled) {
			b := e.accountPage(u)
			wantPage(t, b.post("action", "forget-browsers"), 200, "Every remembered browser was forgotten")
		}},
		{"password changed", func(e *env, u *enrolled) {
			const path = "/_matrix/client/v3/account/password"
			body := map[string]any{"new_password": "a new password 123", "logout_devices": false}
			ch := e.gw("POST", path, u.AccessToken, body)
			expect(t, ch, 401, "")
			body["auth"] = map[string]any{"type": "m.login.2fa.totp", "code": e.code(u), "session": ch.str("session")}
			expect(t, e.gw("POST", path, u.AccessToken, body), 401, "")
			body["auth"] = passwordAuth(u.User, ch.str("session"))
			expect(t, e.gw("POST", path, u.AccessToken, body), 200, "")
			u.Password = "a new password 123"
		}},
		{"authenticator replaced", func(e *env, u *enrolled) {
			if _, err := e.acc.Enrol(ctx, string(u.UserID)); err != nil {
				t.Fatal(err)
			}
			p, _ := e.db.Pending(ctx, string(u.UserID))
			secret, _ := e.opts.Box.Open(string(u.UserID), p.KeyID, p.Secret)
			u.secret = secret
			if _, err := e.acc.Confirm(ctx, string(u.UserID), e.code(u)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := rememberEnv(t)
			u := e.enrol("revoked")
			c := e.pgClient()
			e.ssoRemember(c, u)
			tc.revoke(e, u)
			if !e.ssoAsksCode(c, u) {
				t.Fatal("the browser is still remembered")
			}
		})
	}
	for _, off := range []string{"disabled", "reset"} {
		t.Run(off, func(t *testing.T) {
			e := rememberEnv(t)
			u := e.enrol("off")
			e.ssoRemember(e.pgClient(), u)
			if off == "disabled" {
				b := e.accountPage(u)
				wantPage(t, b.post("action", "disable", "password", u.Password, "code", e.code(u)), 200, "now off")
			} else if _, err := e.acc.AdminReset(ctx, string(u.UserID), "test"); err != nil {
				t.Fatal(err)
			}
			if list, err := e.db.Browsers(ctx, string(u.UserID), e.clock.Now()); err != nil || len(list) != 0 {
				t.Fatalf("remembered browsers after 2FA was %s: %d, %v", off, len(list), err)
			}
		})
	}
}

var (
	reNewToken = regexp.MustCompile(`<code class="token" id="new-token">([^<]+)</code>`)
	reRevokeID = regexp.MustCompile(`name="action" value="bot-revoke">\s*<input type="hidden" name="id" value="([^"]+)">`)
)

func TestBotToken(t *testing.T) {
	ctx := context.Background()
	e := rememberEnv(t)
	u := e.enrol("botowner")

	half := e.browser() // the password alone is not enough
	wantPage(t, half.signIn(u.User), 200, `value="code"`)
	wantPage(t, half.post("action", "bot-create", "name", "x", "password", u.Password), 400, "Enter your code")

	b := e.accountPage(u)
	wantPage(t, b.post("action", "bot-create", "name", "backup", "password", "wrong"), 403, "Wrong password")
	p := b.post("action", "bot-create", "name", "backup", "password", u.Password)
	wantPage(t, p, 200, "Copy it now", "backup")
	m := reNewToken.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no token on the page:\n%s", p.Body)
	}
	token := html.UnescapeString(m[1])
	if r := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", token, nil); r.Status != 200 {
		t.Fatalf("/sync with the bot token: %d %s", r.Status, r.Raw)
	}
	who := e.gw("GET", pgWhoAmI, token, nil)
	device := who.str("device_id")
	if who.str("user_id") != string(u.UserID) || e.ssoDeviceName(token, device) != "Bot token: backup" {
		t.Fatalf("the token is %s's device %s named %q", who.str("user_id"), device, e.ssoDeviceName(token, device))
	}
	list := b.get()
	wantPage(t, list, 200, `class="bot"`, device)
	if list.has(token) {
		t.Fatal("the token is shown again")
	}
	if bytes.Contains(rawDatabase(t), []byte(token)) {
		t.Fatal("the database holds the token in clear")
	}
	r := reRevokeID.FindStringSubmatch(list.Body)
	if r == nil {
		t.Fatalf("no revoke form:\n%s", list.Body)
	}
	wantPage(t, b.post("action", "bot-revoke", "id", html.UnescapeString(r[1])), 200, "was revoked")
	if r := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", token, nil); r.Status != 401 {
		t.Fatalf("/sync with the revoked token: %d %s", r.Status, r.Raw)
	}
	events, err := e.db.QueryAudit(ctx, storage.AuditQuery{UserID: string(u.UserID), Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range events {
		if strings.HasPrefix(ev.Kind, "bot_token") {
			kinds = append(kinds, ev.Kind+": "+ev.Detail)
		}
	}
	if want := []string{"bot_token_revoked: backup (" + device + ")", "bot_token_created: backup (" + device + ")"}; strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Fatalf("audit events %q, want %q", kinds, want)
	}
}

func TestBrowserRememberBrowser(t *testing.T) {
	var signIn string
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/start" {
			fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Client</title><a id="signin" href="%s">Sign in</a>`, html.EscapeString(signIn))
			return
		}
		io.WriteString(w, `<!doctype html><meta charset="utf-8"><title>Client</title><p>Back in the client</p>`)
	}))
	t.Cleanup(cb.Close)
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.RedirectAllowlist = []string{cb.URL + "/cb"}
		g.RememberTTL = 720 * time.Hour
	})
	signIn = e.srv.URL + ssoPage(cb.URL+"/cb")
	u := e.enrol("rememberbrowser")
	runBrowser(t, "remember.mjs", e.browserVars(u, map[string]string{
		"START_URL":    strings.Replace(cb.URL, "127.0.0.1", "localhost", 1) + "/start",
		"CALLBACK_URL": cb.URL + "/cb",
		"CODE":         e.peekCode(u, 0),
	}))
}
