package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the UIA fallback pages against a real Dendrite.

// specAuthDone is the completion logic the client-server spec prescribes for
// fallback pages; the success page must run exactly this.
const specAuthDone = `if (window.onAuthDone) { window.onAuthDone(); } else if (window.opener && window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }`

const (
	pgTOTPFallback     = "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web"
	pgRecoveryFallback = "/_matrix/client/v3/auth/m.login.2fa.recovery/fallback/web"
	pgLogin            = "/_matrix/client/v3/login"
	pgDeleteDevices    = "/_matrix/client/v3/delete_devices"
	pgDevices          = "/_matrix/client/v3/devices"
	pgWhoAmI           = "/_matrix/client/v3/account/whoami"
)

// pgPage is an HTML page answer.
type pgPage struct {
	Status int
	Header http.Header
	Body   string
}

func (p pgPage) has(s string) bool { return strings.Contains(p.Body, s) }

var pgHiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// hidden returns the value of the page's hidden field name ("" if none).
func (p pgPage) hidden(name string) string {
	for _, m := range pgHiddenRe.FindAllStringSubmatch(p.Body, -1) {
		if m[1] == name {
			return htmlUnescape(m[2])
		}
	}
	return ""
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

// pgClient is a browser-like HTTP client: a cookie jar, no redirect following.
type pgClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) pgClient() *pgClient {
	jar, _ := cookiejar.New(nil)
	return &pgClient{t: e.t, base: e.srv.URL, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *pgClient) do(method, path string, form url.Values) pgPage {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return pgPage{Status: res.StatusCode, Header: res.Header, Body: string(raw)}
}

func (c *pgClient) get(path string) pgPage { c.t.Helper(); return c.do("GET", path, nil) }

func (c *pgClient) post(path string, fields ...string) pgPage {
	c.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Add(fields[i], fields[i+1])
	}
	return c.do("POST", path, form)
}

// pgWant fails unless p has status and contains every string.
func pgWant(t *testing.T, p pgPage, status int, contains ...string) {
	t.Helper()
	if p.Status != status {
		t.Fatalf("got %d; want %d\n%s", p.Status, status, p.Body)
	}
	for _, s := range contains {
		if !p.has(s) {
			t.Fatalf("page (%d) lacks %q:\n%s", p.Status, s, p.Body)
		}
	}
}

var pgNonceRe = regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9+/=]+)'`)

// pgCheckHTML checks an HTML page's headers: HTML, the strict CSP with a
// nonce (returned), nothing from other origins.
func pgCheckHTML(t *testing.T, p pgPage) string {
	t.Helper()
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q; want text/html", ct)
	}
	csp := p.Header.Get("Content-Security-Policy")
	m := pgNonceRe.FindStringSubmatch(csp)
	if m == nil || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q: want default-src 'none' and a script nonce", csp)
	}
	if !strings.Contains(p.Body, `name="viewport"`) {
		t.Fatal("page has no viewport meta")
	}
	for _, bad := range []string{`src="http`, `href="http`, `src="//`, `href="//`} {
		if strings.Contains(p.Body, bad) {
			t.Fatalf("page refers to another origin (%s):\n%s", bad, p.Body)
		}
	}
	return m[1]
}

// pgCheckDone checks a fallback success page: the spec's script, exactly,
// in a script element whose nonce is the CSP's.
func pgCheckDone(t *testing.T, p pgPage) {
	t.Helper()
	pgWant(t, p, 200, "You may now close this window", specAuthDone)
	nonce := pgCheckHTML(t, p)
	if !strings.Contains(htmlUnescape(p.Body), `<script nonce="`+nonce+`">`+specAuthDone+`</script>`) {
		t.Fatalf("the completion script does not carry the CSP nonce %q:\n%s", nonce, p.Body)
	}
}

// pgDeleteChallenge starts delete_devices for device through the gateway and
// returns the session of its 401.
func (e *env) pgDeleteChallenge(u *enrolled, device string) string {
	e.t.Helper()
	r := e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{device}})
	expect(e.t, r, 401, "")
	want := [][]string{{"m.login.2fa.totp", "m.login.password"}, {"m.login.2fa.recovery", "m.login.password"}}
	if got := r.flows(); !slices.EqualFunc(got, want, slices.Equal) {
		e.t.Fatalf("delete_devices flows %v; want %v", got, want)
	}
	if r.str("session") == "" {
		e.t.Fatalf("no session: %s", r.Raw)
	}
	return r.str("session")
}

func pgSession(path, s string) string { return path + "?session=" + url.QueryEscape(s) }

func TestFallbackTOTPDeleteDevices(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fbalice")
	dev := e.newDevice(u)
	s := e.pgDeleteChallenge(u, dev)
	c := e.pgClient()
	page := pgSession(pgTOTPFallback, s)

	get := c.get(page)
	pgWant(t, get, 200, "<form", `method="post"`, `name="code"`, `autocomplete="one-time-code"`, `inputmode="numeric"`,
		`<label for="code">`, "POST /_matrix/client/v3/delete_devices", "Sign out (delete) devices", u.UserID)
	pgCheckHTML(t, get)
	csrf := get.hidden("csrf")
	if csrf == "" {
		t.Fatalf("no csrf field:\n%s", get.Body)
	}

	// A wrong code: the form again, 403 "Invalid code".
	wrong := c.post(page, "csrf", csrf, "code", e.wrongCode(u))
	pgWant(t, wrong, 403, "Invalid code", `name="code"`)
	pgCheckHTML(t, wrong)
	// A forged form (no or another session's csrf) is refused before the code is looked at.
	forged := c.post(page, "csrf", "forged", "code", e.peekCode(u, 0))
	pgWant(t, forged, 403, "expired")

	// Before the 2FA stage the password stage is refused (never forwarded).
	r := e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{dev}, "auth": passwordAuth(u.User, s)})
	expect(t, r, 401, "M_FORBIDDEN")

	done := c.post(page, "csrf", csrf, "code", e.code(u))
	pgCheckDone(t, done)
	// Opening or submitting the page again just says done.
	pgCheckDone(t, c.get(page))

	// The client resumes with the session alone: the 2FA stage is completed.
	r = e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{dev}, "auth": map[string]any{"session": s}})
	expect(t, r, 401, "")
	if got := r.strings("completed"); !slices.Equal(got, []string{"m.login.2fa.totp"}) {
		t.Fatalf("completed %v; want [m.login.2fa.totp]", got)
	}
	r = e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{dev}, "auth": passwordAuth(u.User, s)})
	expect(t, r, 200, "")
	if ids := e.deviceIDs(u.AccessToken); slices.Contains(ids, dev) {
		t.Fatalf("device %s still there after delete_devices: %v", dev, ids)
	}
}

// fallbackLogins turns on completing held /login sessions on the fallback page.
func fallbackLogins(g *gatewayConfig, _ *accountConfig) { g.FallbackCompletesLogin = true }

func TestFallbackHeldLogin(t *testing.T) {
	e := newEnv(t, fallbackLogins)
	u := e.enrol("fbbob")
	r := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, r, 401, "")
	s := r.str("session")
	c := e.pgClient()
	// r0 works as well as v3.
	page := pgSession(strings.Replace(pgTOTPFallback, "/v3/", "/r0/", 1), s)
	get := c.get(page)
	// The page says when the sign-in began: someone sent another's link has
	// something to notice.
	pgWant(t, get, 200, "Sign-in", `name="code"`, "started "+e.clock.Now().UTC().Format("15:04 UTC, 2 January 2006"),
		"started from <strong>127.0.0.1</strong>", "Go-http-client")
	pgCheckDone(t, c.post(page, "csrf", get.hidden("csrf"), "code", e.code(u)))

	r = e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"session": s}})
	expect(t, r, 200, "")
	if r.str("access_token") == "" || r.str("user_id") != u.UserID {
		t.Fatalf("released login: %s", r.Raw)
	}
	if w := e.gw("GET", pgWhoAmI, r.str("access_token"), nil); w.Status != 200 || w.str("user_id") != u.UserID {
		t.Fatalf("whoami with the released token: %d %s", w.Status, w.Raw)
	}
	// The session is used up.
	expect(t, c.do("GET", page, nil).asResp(t), 400, "M_INVALID_PARAM")
}

// TestFallbackHeldLoginOffByDefault: by default a held /login cannot be
// completed on the fallback page (a link to it is a phishing aid for someone
// who has the password): a browser gets a page saying where to enter the code,
// an API client the unknown-session error; an expired link opened in a
// browser gets a page too.
func TestFallbackHeldLoginOffByDefault(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fbdefault")
	r := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, r, 401, "")
	page := pgSession(pgTOTPFallback, r.str("session"))
	browse := func(path, accept string) (int, string) {
		req, err := http.NewRequest("GET", e.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type") + "\n" + string(b)
	}
	html := "text/html,application/xhtml+xml,*/*;q=0.8"
	if st, body := browse(page, html); st != 403 || !strings.Contains(body, "text/html") || !strings.Contains(body, "in the app where the password was typed") || strings.Contains(body, `name="code"`) {
		t.Fatalf("held login on the fallback page: %d %s", st, body)
	}
	if st, body := browse(page, ""); st != 403 || !strings.Contains(body, "M_FORBIDDEN") {
		t.Fatalf("held login on the fallback page, API client: %d %s", st, body)
	}
	if st, body := browse(pgSession(pgTOTPFallback, "expired-or-forged"), html); st != 400 || !strings.Contains(body, "has expired or has already been used") {
		t.Fatalf("unknown session in a browser: %d %s", st, body)
	}
	// The code was never asked for, and the login still completes in the app.
	r = e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": r.str("session"), "code": e.code(u)}})
	expect(t, r, 200, "")
}

// asResp reads a JSON error page as a resp.
func (p pgPage) asResp(t *testing.T) resp {
	r := resp{Status: p.Status, Header: p.Header, Raw: []byte(p.Body)}
	if err := json.Unmarshal([]byte(p.Body), &r.Body); err != nil {
		t.Fatalf("not JSON (%d): %s", p.Status, p.Body)
	}
	return r
}

func TestFallbackRecoveryCodes(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fbcarol")
	c := e.pgClient()

	// The TOTP page takes a recovery code (clients stick to the first flow),
	// completing the TOTP stage of the client's flow.
	dev := e.newDevice(u)
	s := e.pgDeleteChallenge(u, dev)
	page := pgSession(pgTOTPFallback, s)
	get := c.get(page)
	pgWant(t, get, 200, "Use a recovery code")
	rec := c.get(page + "&recovery=1")
	pgWant(t, rec, 200, "Recovery code", `autocomplete="one-time-code"`)
	if rec.has(`inputmode="numeric"`) {
		t.Fatal("the recovery-code field asks for a numeric keyboard")
	}
	pgCheckDone(t, c.post(page+"&recovery=1", "csrf", rec.hidden("csrf"), "code", u.recovery[0]))
	// The client resends its request (the same operation) with the session.
	r := e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{dev}, "auth": map[string]any{"session": s}})
	if got := r.strings("completed"); r.Status != 401 || !slices.Equal(got, []string{"m.login.2fa.totp"}) {
		t.Fatalf("after a recovery code on the TOTP page: %d %s", r.Status, r.Raw)
	}

	// The recovery page: a recovery code (lower case, no hyphens is fine),
	// never a TOTP code; a used code is refused.
	dev = e.newDevice(u)
	s = e.pgDeleteChallenge(u, dev)
	page = pgSession(pgRecoveryFallback, s)
	get = c.get(page)
	pgWant(t, get, 200, "Recovery code", `autocomplete="one-time-code"`)
	csrf := get.hidden("csrf")
	pgWant(t, c.post(page, "csrf", csrf, "code", e.peekCode(u, 0)), 403, "Invalid code")
	pgWant(t, c.post(page, "csrf", csrf, "code", u.recovery[0]), 403, "Invalid code")
	code := strings.ToLower(strings.ReplaceAll(u.recovery[1], "-", ""))
	pgCheckDone(t, c.post(page, "csrf", csrf, "code", code))
	r = e.gw("POST", pgDeleteDevices, u.AccessToken, map[string]any{"devices": []string{dev}, "auth": map[string]any{"session": s}})
	if got := r.strings("completed"); r.Status != 401 || !slices.Equal(got, []string{"m.login.2fa.recovery"}) {
		t.Fatalf("after the recovery page: %d %s", r.Status, r.Raw)
	}
}

func TestFallbackLockout(t *testing.T) {
	e := newEnv(t, fallbackLogins)
	u := e.enrol("fbdave")
	r := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, r, 401, "")
	s := r.str("session")
	before := len(e.deviceIDs(u.AccessToken))
	c := e.pgClient()
	page := pgSession(pgTOTPFallback, s)
	csrf := c.get(page).hidden("csrf")
	var p pgPage
	for i := 0; i < 10; i++ {
		if p = c.post(page, "csrf", csrf, "code", e.wrongCode(u)); p.Status != 403 {
			break
		}
	}
	pgWant(t, p, 429, "Too many failed attempts", "Try again in ")
	pgCheckHTML(t, p)
	if !regexp.MustCompile(`Try again in \d+ (minute|second)`).MatchString(p.Body) {
		t.Fatalf("no wait shown:\n%s", p.Body)
	}
	if ra := p.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	if p.has(`name="code"`) {
		t.Fatal("the locked page still shows the form")
	}
	// The held login died with the lockout: its device is logged out.
	if after := len(e.deviceIDs(u.AccessToken)); after != before-1 {
		t.Fatalf("devices %d after the lockout; want %d", after, before-1)
	}
	expect(t, e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"session": s}}), 400, "M_INVALID_PARAM")
}

func TestFallbackSessionErrors(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fberin")
	c := e.pgClient()
	for _, path := range []string{pgTOTPFallback, pgRecoveryFallback} {
		expect(t, c.get(path).asResp(t), 400, "M_MISSING_PARAM")
		expect(t, c.post(path, "code", "123456").asResp(t), 400, "M_MISSING_PARAM")
		expect(t, c.get(pgSession(path, "no-such-session")).asResp(t), 400, "M_INVALID_PARAM")
		expect(t, c.post(pgSession(path, "no-such-session"), "code", "123456").asResp(t), 400, "M_INVALID_PARAM")
	}
	// An expired session.
	s := e.pgDeleteChallenge(u, e.newDevice(u))
	get := c.get(pgSession(pgTOTPFallback, s))
	pgWant(t, get, 200)
	e.clock.Add(16 * time.Minute)
	expect(t, c.post(pgSession(pgTOTPFallback, s), "csrf", get.hidden("csrf"), "code", e.peekCode(u, 0)).asResp(t), 400, "M_INVALID_PARAM")
	// A missing code.
	s = e.pgDeleteChallenge(u, e.newDevice(u))
	get = c.get(pgSession(pgTOTPFallback, s))
	expect(t, c.post(pgSession(pgTOTPFallback, s), "csrf", get.hidden("csrf")).asResp(t), 400, "M_MISSING_PARAM")
	// Another stage's fallback is the homeserver's business (passed through).
	if p := c.get(pgSession("/_matrix/client/v3/auth/m.login.recaptcha/fallback/web", s)); p.has("two-factor") {
		t.Fatalf("recaptcha fallback served by the gateway: %d %s", p.Status, p.Body)
	}
}

// TestFallbackStageNotYet: a session whose 2FA stage comes after another
// stage (re-enrolment: password first) refuses the code until then, without
// using it up.
func TestFallbackStageNotYet(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fbfrank")
	r := e.gw("POST", "/_matrix/client/v3/account/two-factor/totp", u.AccessToken, map[string]any{})
	expect(t, r, 401, "")
	s := r.str("session")
	c := e.pgClient()
	page := pgSession(pgTOTPFallback, s)
	get := c.get(page)
	pgWant(t, get, 200, "Set up two-factor authentication again")
	code := e.peekCode(u, 0)
	pgWant(t, c.post(page, "csrf", get.hidden("csrf"), "code", code), 403, "previous step")
	// The password stage, then the same code works.
	expect(t, e.gw("POST", "/_matrix/client/v3/account/two-factor/totp", u.AccessToken, map[string]any{"auth": passwordAuth(u.User, s)}), 401, "")
	pgCheckDone(t, c.post(page, "csrf", get.hidden("csrf"), "code", code))
}

// TestBrowserFallback runs tests/browser/fallback.mjs: the fallback page in a
// popup opened by a client on another origin (delete_devices, postMessage,
// resume, password stage), and in a webview (window.onAuthDone) for a held
// login.
func TestBrowserFallback(t *testing.T) {
	e := newEnv(t, fallbackLogins)
	u := e.enrol("fbbrowser")
	dev := e.newDevice(u)
	r := e.gw("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, r, 401, "")
	login := r.str("session")

	// The gateway clock stands still: the popup gets this step's code, the
	// webview the next step's (each step works once, in ascending order).
	runBrowser(t, "fallback.mjs", e.browserVars(u, map[string]string{
		"DEVICE":        dev,
		"WRONG_CODE":    e.wrongCode(u),
		"CODE":          e.peekCode(u, 0),
		"LOGIN_SESSION": login,
		"CODE2":         e.peekCode(u, 1),
	}))

	if ids := e.deviceIDs(u.AccessToken); slices.Contains(ids, dev) {
		t.Fatalf("device %s still there after the browser's delete_devices: %v", dev, ids)
	}
	r = e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"session": login}})
	expect(t, r, 200, "")
	if w := e.gw("GET", pgWhoAmI, r.str("access_token"), nil); w.Status != 200 || w.str("user_id") != u.UserID {
		t.Fatalf("whoami with the login released after the webview: %d %s", w.Status, w.Raw)
	}
}
