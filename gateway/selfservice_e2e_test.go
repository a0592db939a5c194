package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

const selfPath = "/_matrix2fa/"

// webPage is one HTML answer of the self-service page.
type webPage struct {
	Status int
	Header http.Header
	Body   string
}

var (
	reCSRF      = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	reSecret    = regexp.MustCompile(`data-secret="([A-Z2-7]+)"`)
	reCodesList = regexp.MustCompile(`(?s)<ul class="codes" id="codes">(.*?)</ul>`)
	reCodeItem  = regexp.MustCompile(`<li>([^<]+)</li>`)
	reQR        = regexp.MustCompile(`<img class="qr" id="qr" src="data:image/png;base64,([^"]+)" alt="QR code for your authenticator app">`)
	reDownload  = regexp.MustCompile(`<a class="button" id="download" href="data:text/plain;charset=utf-8;base64,([^"]+)" download="[^"]+">`)
	reRemaining = regexp.MustCompile(`Recovery codes remaining: <strong>(\d+)</strong>`)
)

func (p webPage) csrf(t *testing.T) string {
	t.Helper()
	m := reCSRF.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no CSRF token in the page (%d):\n%s", p.Status, p.Body)
	}
	return html.UnescapeString(m[1])
}

func (p webPage) has(s string) bool { return strings.Contains(p.Body, s) }

func (p webPage) codes() []string {
	m := reCodesList.FindStringSubmatch(p.Body)
	if m == nil {
		return nil
	}
	var out []string
	for _, c := range reCodeItem.FindAllStringSubmatch(m[1], -1) {
		out = append(out, html.UnescapeString(c[1]))
	}
	return out
}

// webUser is a browser: an http.Client with a cookie jar that follows the
// page's post/redirect/get.
type webUser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	last webPage
}

func (e *env) browser() *webUser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &webUser{t: e.t, e: e, c: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

func (b *webUser) do(req *http.Request) webPage {
	b.t.Helper()
	hr, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer hr.Body.Close()
	raw, _ := io.ReadAll(hr.Body)
	b.last = webPage{Status: hr.StatusCode, Header: hr.Header, Body: string(raw)}
	return b.last
}

func (b *webUser) get() webPage {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+selfPath, nil)
	return b.do(req)
}

// post sends a form; the csrf field is the last page's unless given.
func (b *webUser) post(fields ...string) webPage {
	b.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Set(fields[i], fields[i+1])
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.last.csrf(b.t))
	}
	req, _ := http.NewRequest("POST", b.e.srv.URL+selfPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *webUser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL + selfPath)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func wantPage(t *testing.T, p webPage, status int, contains ...string) {
	t.Helper()
	if p.Status != status {
		t.Fatalf("status %d, want %d; page:\n%s", p.Status, status, p.Body)
	}
	for _, s := range contains {
		if !p.has(s) {
			t.Fatalf("page (%d) lacks %q:\n%s", p.Status, s, p.Body)
		}
	}
}

// signIn signs u in with the password (localpart form) and expects status.
func (b *webUser) signIn(u *dendrite.User) webPage {
	b.t.Helper()
	b.get()
	return b.post("action", "signin", "username", u.Localpart, "password", u.Password)
}

func (e *env) totpAt(secret []byte) string {
	e.t.Helper()
	return e.code(&enrolled{secret: secret})
}

func TestSelfServiceSignInWrongPassword(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "selfpw")
	b := e.browser()

	p := b.get()
	wantPage(t, p, 200, `action="/_matrix2fa/"`, `name="username"`, `<label for="password">`, `autocomplete="current-password"`)
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "img-src 'self' data:") {
		t.Errorf("CSP = %q", csp)
	}
	for _, tc := range []struct{ user, pw string }{
		{u.Localpart, u.Password + "x"},
		{u.UserID, "wrong"},
		{"nosuchuser", u.Password},
	} {
		p = b.post("action", "signin", "username", tc.user, "password", tc.pw)
		wantPage(t, p, 403, "Wrong username or password.")
		if b.cookie("matrix2fa_session") != nil {
			t.Fatalf("a session cookie after a refused sign-in (%s)", tc.user)
		}
	}
	p = b.post("action", "signin", "username", u.Localpart, "password", "")
	wantPage(t, p, 400, "Enter your username and password.")

	// The full user ID works as well as the localpart.
	p = b.post("action", "signin", "username", u.UserID, "password", u.Password)
	wantPage(t, p, 200, "Signed in as <strong>"+u.UserID+"</strong>", `data-enabled="false"`)
	// The password check left no device behind.
	devs := e.direct("GET", "/_matrix/client/v3/devices", u.AccessToken, nil)
	if list, _ := devs.Body["devices"].([]any); len(list) != 1 {
		t.Errorf("devices after sign-in: %s", devs.Raw)
	}
}

func TestSelfServiceCSRF(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "selfcsrf")
	b := e.browser()
	b.get()
	good := b.last.csrf(t)

	for _, tok := range []string{"", "wrong", good + "x"} {
		p := b.post("action", "signin", "username", u.Localpart, "password", u.Password, "csrf", tok)
		wantPage(t, p, 403, "did not come from this page")
	}
	// A token from another browser (bound to its pre-session cookie) fails.
	other := e.browser()
	other.get()
	p := b.post("action", "signin", "username", u.Localpart, "password", u.Password, "csrf", other.last.csrf(t))
	wantPage(t, p, 403, "did not come from this page")
	// A browser without the pre-session cookie (a cross-site post) fails.
	bare := e.browser()
	p = bare.post("action", "signin", "username", u.Localpart, "password", u.Password, "csrf", good)
	wantPage(t, p, 403)

	b.get()
	signinTok := b.last.csrf(t)
	p = b.post("action", "signin", "username", u.Localpart, "password", u.Password)
	wantPage(t, p, 200, `data-enabled="false"`)
	for _, tok := range []string{"", "wrong", signinTok, other.last.csrf(t)} {
		p = b.post("action", "enrol", "csrf", tok)
		wantPage(t, p, 403, "did not come from this page")
	}
	if st, _ := e.acc.Status(context.Background(), u.UserID); st.Pending {
		t.Fatal("an enrolment was started without a valid CSRF token")
	}
	// A browser saying the post is cross-site is refused whatever it sends.
	form := url.Values{"action": {"enrol"}, "csrf": {b.last.csrf(t)}}
	req, _ := http.NewRequest("POST", e.srv.URL+selfPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	wantPage(t, b.do(req), 403)
	b.get()
	p = b.post("action", "enrol")
	wantPage(t, p, 200, `id="qr"`)
}

func TestSelfServiceCookieFlags(t *testing.T) {
	// X-Forwarded-Proto counts only from a trusted proxy: the test client
	// (on loopback) is one here.
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.TrustedProxies, _ = ratelimit.ParseProxies([]string{"127.0.0.0/8", "::1"})
	})
	u := tesths.RegisterUser(t, e.hs, "selfcookie")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, https := range []bool{false, true} {
		req, _ := http.NewRequest("GET", e.srv.URL+selfPath, nil)
		if https {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		hr, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		pre := findCookie(hr.Cookies(), "matrix2fa_presession")
		if pre == nil {
			t.Fatalf("no pre-session cookie: %v", hr.Header["Set-Cookie"])
		}
		tok := webPage{Body: string(body)}.csrf(t)

		form := url.Values{"action": {"signin"}, "csrf": {tok}, "username": {u.Localpart}, "password": {u.Password}}
		req, _ = http.NewRequest("POST", e.srv.URL+selfPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: pre.Name, Value: pre.Value})
		if https {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		hr, err = noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		if hr.StatusCode != http.StatusSeeOther || hr.Header.Get("Location") != selfPath {
			t.Fatalf("sign-in answered %d %q", hr.StatusCode, hr.Header.Get("Location"))
		}
		sess := findCookie(hr.Cookies(), "matrix2fa_session")
		if sess == nil {
			t.Fatalf("no session cookie: %v", hr.Header["Set-Cookie"])
		}
		for _, c := range []*http.Cookie{pre, sess} {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != selfPath || c.Secure != https {
				t.Errorf("https=%v: cookie %s: HttpOnly=%v SameSite=%v Path=%q Secure=%v", https, c.Name, c.HttpOnly, c.SameSite, c.Path, c.Secure)
			}
		}
		if raw, _ := base64.RawURLEncoding.DecodeString(sess.Value); len(raw) != 32 {
			t.Errorf("session cookie value %q is not 32 random bytes", sess.Value)
		}
	}
}

func findCookie(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestSelfServiceLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := tesths.RegisterUser(t, e.hs, "selflife")
	b := e.browser()

	p := b.signIn(u)
	wantPage(t, p, 200, `data-enabled="false"`, "Set up two-factor authentication")

	// Enrol: QR as a data: PNG, the secret, the parameters.
	p = b.post("action", "enrol")
	wantPage(t, p, 200, `autocomplete="one-time-code"`, `inputmode="numeric"`, `<label for="confirm-code">`, "SHA1", "6 digits", "every 30 seconds")
	m := reQR.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no QR image in:\n%s", p.Body)
	}
	pngBytes, _ := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if img, err := png.Decode(bytes.NewReader(pngBytes)); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("QR PNG: %v", err)
	}
	sm := reSecret.FindStringSubmatch(p.Body)
	if sm == nil {
		t.Fatal("no secret on the page")
	}
	secret, err := decodeB32(sm[1])
	if err != nil || len(secret) < 20 {
		t.Fatalf("secret %q: %v", sm[1], err)
	}
	if st, _ := e.acc.Status(ctx, u.UserID); st.Enabled || !st.Pending {
		t.Fatalf("status after enrol = %+v", st)
	}

	// A wrong code shows the same QR again, with an error.
	p = b.post("action", "confirm", "code", "000000")
	wantPage(t, p, 403, "That code is not valid", "data-secret=\""+sm[1]+"\"", `id="qr"`)
	// The status page offers to continue; "resume" shows the same enrolment.
	b.get()
	p = b.post("action", "resume")
	wantPage(t, p, 200, "data-secret=\""+sm[1]+"\"")

	// Confirm: the configured number of recovery codes, once, with a download link.
	p = b.post("action", "confirm", "code", e.totpAt(secret))
	wantPage(t, p, 200, "Two-factor authentication is now on.", "will not be shown again")
	codes := p.codes()
	if len(codes) != e.acc.RecoveryCodes() {
		t.Fatalf("%d recovery codes shown", len(codes))
	}
	dm := reDownload.FindStringSubmatch(p.Body)
	if dm == nil {
		t.Fatalf("no download link in:\n%s", p.Body)
	}
	if txt, _ := base64.StdEncoding.DecodeString(html.UnescapeString(dm[1])); !strings.Contains(string(txt), codes[0]) || !strings.Contains(string(txt), codes[9]) {
		t.Errorf("download text %q lacks the codes", txt)
	}
	p = b.get()
	wantPage(t, p, 200, `data-enabled="true"`)
	if strings.Contains(p.Body, codes[0]) {
		t.Fatal("recovery codes shown again")
	}
	if rm := reRemaining.FindStringSubmatch(p.Body); rm == nil || rm[1] != strconv.Itoa(e.acc.RecoveryCodes()) {
		t.Fatalf("remaining: %v", rm)
	}
	if st, _ := e.acc.Status(ctx, u.UserID); !st.Enabled || st.Pending || st.Remaining != 10 {
		t.Fatalf("status after confirm = %+v", st)
	}

	// Sign out and in again: now the code is due after the password.
	p = b.post("action", "signout")
	wantPage(t, p, 200, `name="username"`)
	p = b.signIn(u)
	wantPage(t, p, 200, `name="code"`, `autocomplete="one-time-code"`, "Password accepted for <strong>"+u.UserID+"</strong>")
	if p.has(`data-enabled`) {
		t.Fatal("status shown before the second factor")
	}
	p = b.post("action", "enrol")
	wantPage(t, p, 400, `name="code"`)
	p = b.post("action", "code", "code", "123456")
	wantPage(t, p, 403, "That code is not valid")
	p = b.post("action", "code", "code", e.totpAt(secret))
	wantPage(t, p, 200, `data-enabled="true"`)

	// Regenerate: step-up with a fresh code; the new codes differ.
	p = b.post("action", "regenerate", "code", "")
	wantPage(t, p, 400)
	p = b.post("action", "regenerate", "code", codes[0]+"x")
	wantPage(t, p, 403, "That code is not valid")
	p = b.post("action", "regenerate", "code", e.totpAt(secret))
	wantPage(t, p, 200, "old ones no longer work")
	fresh := p.codes()
	if len(fresh) != 10 {
		t.Fatalf("%d regenerated codes", len(fresh))
	}
	for _, c := range fresh {
		for _, o := range codes {
			if c == o {
				t.Fatalf("regenerated code %s was in the old set", c)
			}
		}
	}
	// An old code is dead now.
	b.get()
	p = b.post("action", "regenerate", "code", codes[1])
	wantPage(t, p, 403)

	// Disable: password and a code, both checked.
	b.get()
	p = b.post("action", "disable", "password", u.Password+"x", "code", fresh[0])
	wantPage(t, p, 403, "Wrong password or code.")
	p = b.post("action", "disable", "password", u.Password, "code", "ZZZZ-ZZZZ-ZZ")
	wantPage(t, p, 403, "Wrong password or code.")
	p = b.post("action", "disable", "password", u.Password, "code", fresh[0])
	wantPage(t, p, 200, "Two-factor authentication is now off.", `data-enabled="false"`)
	if st, _ := e.acc.Status(ctx, u.UserID); st.Enabled || st.Remaining != 0 {
		t.Fatalf("status after disable = %+v", st)
	}
	p = b.post("action", "regenerate", "code", fresh[1])
	wantPage(t, p, 400, "not enabled")
}

func TestSelfServiceLockout(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("selflock")
	b := e.browser()
	p := b.signIn(u.User)
	wantPage(t, p, 200, `name="code"`)
	locked := false
	for i := 0; i < 10 && !locked; i++ {
		p = b.post("action", "code", "code", "000000")
		switch p.Status {
		case 403:
		case 429:
			locked = true
		default:
			t.Fatalf("attempt %d: %d\n%s", i, p.Status, p.Body)
		}
	}
	if !locked {
		t.Fatal("never locked out")
	}
	wantPage(t, p, 429, "Too many failed attempts.", "Please wait")
	if ra, err := strconv.Atoi(p.Header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Fatalf("Retry-After = %q", p.Header.Get("Retry-After"))
	}
	// A correct code is not even checked while locked out.
	b.get()
	p = b.post("action", "code", "code", e.code(u))
	wantPage(t, p, 429, "Too many failed attempts.")
	// After the wait, the right code signs in.
	e.clock.Add(16 * time.Minute)
	p = b.signIn(u.User)
	wantPage(t, p, 200, `name="code"`)
	p = b.post("action", "code", "code", e.code(u))
	wantPage(t, p, 200, `data-enabled="true"`)
}

func TestSelfServiceSessionEnds(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "selfend")

	// After sign-out, the old cookie and token are worthless.
	b := e.browser()
	b.signIn(u)
	wantPage(t, b.last, 200, `data-enabled="false"`)
	old := b.cookie("matrix2fa_session")
	oldCSRF := b.last.csrf(t)
	b.post("action", "signout")
	if c := b.cookie("matrix2fa_session"); c != nil {
		t.Errorf("session cookie kept after sign-out: %v", c)
	}
	replay := e.browser()
	u2, _ := url.Parse(e.srv.URL + selfPath)
	replay.c.Jar.SetCookies(u2, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: selfPath}})
	p := replay.post("action", "enrol", "csrf", oldCSRF)
	wantPage(t, p, 403, "Your session has ended")
	replay.c.Jar.SetCookies(u2, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: selfPath}})
	p = replay.get()
	wantPage(t, p, 200, `name="username"`)
	if p.has("data-enabled") {
		t.Fatal("a signed-out session still shows the status")
	}

	// After expiry (15 minutes), likewise; the sweeper deletes it.
	b = e.browser()
	b.signIn(u)
	wantPage(t, b.last, 200, `data-enabled="false"`)
	tok := b.last.csrf(t)
	e.clock.Add(14 * time.Minute)
	wantPage(t, b.get(), 200, `data-enabled="false"`)
	e.clock.Add(2 * time.Minute)
	ctx := context.Background()
	exp, err := e.db.ExpiredSessions(ctx, e.clock.Now(), 100)
	if err != nil || len(exp) != 1 || exp[0].Path != "/_matrix2fa/session" || exp[0].UserID != u.UserID {
		t.Fatalf("expired sessions = %+v, %v", exp, err)
	}
	p = b.post("action", "enrol", "csrf", tok)
	wantPage(t, p, 403, "Your session has ended")
	if st, _ := e.acc.Status(ctx, u.UserID); st.Pending {
		t.Fatal("an expired session started an enrolment")
	}
	e.gate.Sweep(ctx)
	if exp, _ := e.db.ExpiredSessions(ctx, e.clock.Now(), 100); len(exp) != 0 {
		t.Fatalf("sweep left %d sessions", len(exp))
	}
	wantPage(t, b.get(), 200, `name="username"`)

	// The password-only session waiting for the code expires sooner.
	en := e.enrol("selfend2")
	b = e.browser()
	wantPage(t, b.signIn(en.User), 200, `name="code"`)
	e.clock.Add(6 * time.Minute)
	p = b.post("action", "code", "code", e.code(en))
	wantPage(t, p, 403, "Your session has ended")
}

// TestBrowserSelfService drives the page in headless Chromium
// (tests/browser/selfservice.mjs): sign in, enrol by decoding the QR code shown,
// confirm, regenerate, disable, sign out. With SCREENSHOTS_DIR set it saves
// self-*.png screenshots there.
func TestBrowserSelfService(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "selfbrowser")
	vars := map[string]string{
		"GATEWAY_URL":  e.srv.URL,
		"USERNAME":     u.Localpart,
		"PASSWORD":     u.Password,
		"GATEWAY_TIME": strconv.FormatInt(e.clock.Now().Unix(), 10),
	}
	if dir := os.Getenv("SCREENSHOTS_DIR"); dir != "" {
		vars["SCREENSHOTS_DIR"] = dir
	}
	runBrowser(t, "selfservice.mjs", vars)

	ctx := context.Background()
	st, err := e.acc.Status(ctx, u.UserID)
	if err != nil || st.Enabled || st.Pending || st.Remaining != 0 {
		t.Fatalf("status after the browser run = %+v, %v", st, err)
	}
	evs, err := e.acc.AuditEvents(ctx, u.UserID, 20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		seen[ev.Kind] = true
	}
	for _, k := range []string{storage.AuditEnrol, storage.AuditConfirm, storage.AuditRegenerate, storage.AuditDisable} {
		if !seen[k] {
			t.Errorf("no %q audit event after the browser run (have %v)", k, seen)
		}
	}
}

// TestForwardedProtoFromUntrustedPeer: X-Forwarded-Proto from a client that
// is not a trusted proxy does not make cookies Secure (nor anything else).
func TestForwardedProtoFromUntrustedPeer(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+selfPath, nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	cookies := hr.Cookies()
	if len(cookies) == 0 {
		t.Fatal("no cookie set")
	}
	for _, c := range cookies {
		if c.Secure {
			t.Errorf("cookie %s Secure on the word of an untrusted peer", c.Name)
		}
	}
}
