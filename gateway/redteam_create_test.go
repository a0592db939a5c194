package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Red team of prompt=create (the create view of the OAuth authorization
// page): every test here fails when an attack succeeds. Most run through
// rtHS, a recording and scriptable reverse proxy between the gateway and a
// real Dendrite, to see exactly what the gateway sends to /register and to
// simulate an operator closing registration or a homeserver failing half
// way.

// rtRegister is one POST /register the gateway sent, and Dendrite's answer.
type rtRegister struct {
	RawQuery string
	Header   http.Header
	Body     map[string]any
	Status   int
	Answer   map[string]any
}

// rtHS is a reverse proxy to Dendrite that records /register requests and
// can delay, refuse or break them, and fail logins.
type rtHS struct {
	srv *httptest.Server

	mu        sync.Mutex
	registers []rtRegister
	// closed answers /register 403 M_FORBIDDEN (registration turned off).
	closed bool
	// delay holds /register requests before forwarding them.
	delay time.Duration
	// failLogins answers the next n POST /login with 503.
	failLogins int
	// breakRegistered turns Dendrite's 200 to a /register into a 502 (the
	// account exists, the gateway does not learn it).
	breakRegistered bool
	// rewriteUserID replaces the user_id of a 200 to /register.
	rewriteUserID string
	// repeatDummy answers a /register with a dummy auth by the first 401
	// again, without forwarding it.
	repeatDummy bool
	probes      atomic.Int32 // /register with body {"inhibit_login": true} (isProbe)
}

func newRTHS(t *testing.T, hs *dendrite.Server) *rtHS {
	t.Helper()
	target, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	rt := &rtHS{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(res *http.Response) error {
		if !strings.HasSuffix(res.Request.URL.Path, "/register") || res.Request.Method != http.MethodPost {
			return nil
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var ans map[string]any
		_ = json.Unmarshal(raw, &ans)
		rt.mu.Lock()
		if n := len(rt.registers); n > 0 {
			rt.registers[n-1].Status, rt.registers[n-1].Answer = res.StatusCode, ans
		}
		brk, rewrite := rt.breakRegistered && res.StatusCode == 200, rt.rewriteUserID
		rt.mu.Unlock()
		if brk {
			return fmt.Errorf("rtHS: connection lost after the registration")
		}
		if rewrite != "" && res.StatusCode == 200 {
			ans["user_id"] = rewrite
			raw, _ = json.Marshal(ans)
			res.Header.Del("Content-Length")
			res.ContentLength = int64(len(raw))
		}
		res.Body = io.NopCloser(bytes.NewReader(raw))
		return nil
	}
	var first401 []byte
	rt.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/login") {
			rt.mu.Lock()
			fail := rt.failLogins > 0
			if fail {
				rt.failLogins--
			}
			rt.mu.Unlock()
			if fail {
				http.Error(w, `{"errcode":"M_UNKNOWN","error":"down"}`, http.StatusServiceUnavailable)
				return
			}
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/register") {
			raw, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(raw))
			var body map[string]any
			_ = json.Unmarshal(raw, &body)
			if isProbe(body) {
				rt.probes.Add(1)
			}
			rt.mu.Lock()
			rt.registers = append(rt.registers, rtRegister{RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
			closed, delay, repeat := rt.closed, rt.delay, rt.repeatDummy
			rt.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			if closed {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"Registration is disabled"}`))
				return
			}
			if auth, _ := body["auth"].(map[string]any); repeat && auth != nil && first401 != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write(first401)
				return
			}
			if repeat && body["auth"] == nil && !isProbe(body) {
				// Keep Dendrite's first challenge to answer it again.
				rec := httptest.NewRecorder()
				rp.ServeHTTP(rec, r)
				first401 = rec.Body.Bytes()
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(first401)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(rt.srv.Close)
	return rt
}

func (rt *rtHS) set(f func(rt *rtHS)) { rt.mu.Lock(); f(rt); rt.mu.Unlock() }

// isProbe: the registration probe's body is {"inhibit_login": true}, no more.
func isProbe(body map[string]any) bool {
	return len(body) == 1 && body["inhibit_login"] == true
}

// creates are the recorded /register requests that were not probes.
func (rt *rtHS) creates() []rtRegister {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []rtRegister
	for _, r := range rt.registers {
		if !isProbe(r.Body) {
			out = append(out, r)
		}
	}
	return out
}

// newEnvRT is newEnv with the gateway's homeserver behind rt (e.hs is still
// Dendrite itself), OAuth on.
func newEnvRT(t *testing.T, hs *dendrite.Server, rt *rtHS, opts ...envOption) *env {
	t.Helper()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	c := &clock{t: time.Now().Truncate(30 * time.Second)}
	gcfg := gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute,
		SSOProviderID: "matrix-2fa", SSOProviderName: "Sign in with 2FA", PublicBaseURL: oauthIssuer, OAuth: oauth.Config{Enabled: true}}
	acfg := account.DefaultConfig()
	acfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	for _, o := range opts {
		o(&gcfg, &acfg)
	}
	db, box, acc := newCore(t, acfg, account.WithClock(c.Now), account.WithLogger(quiet))
	client, err := homeserver.New(rt.srv.URL, homeserver.Options{Logger: quiet, WhoAmITTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	o := gateway.Options{Config: gcfg, Homeserver: client, Accounts: acc, Store: db, Box: box, Logger: quiet, Now: c.Now}
	gw := gateway.New(o)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, hs: hs, gate: gw, srv: srv, acc: acc, db: db, clock: c, opts: o}
}

// rtLogin reports whether Dendrite takes localpart's password.
func rtLogin(t *testing.T, hs *dendrite.Server, localpart, password string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := hs.Login(ctx, localpart, password)
	return err == nil
}

// rtWhoami is the user and device of an access token, through the gateway.
func (e *env) rtWhoami(at string) (user, device string) {
	e.t.Helper()
	who := e.gw("GET", polWhoami, at, nil)
	return who.str("user_id"), who.str("device_id")
}

// TestRedTeamCreateForwardedBody: what the gateway sends to /register is
// only what it built — username (lowercased, ASCII), password, auth {type,
// session, token} in a session Dendrite gave it, inhibit_login true — never
// a field of the form or the authorization request (inhibit_login=false,
// device_id, admin, kind=guest, a session, an auth dict, a device name,
// refresh_token), and never a query (kind=guest). The client's device is the
// scope's, not the form's.
func TestRedTeamCreateForwardedBody(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-body-")
	// Smuggled in the authorization request too: the CSRF token is bound to
	// this very query, so the create step is accepted with it.
	page := createURL(client, "RTBODYDEV1", "s", p) + "&kind=guest&admin=true&inhibit_login=false&device_id=EVILDEV&username=rtvictim"
	c := e.pgClient()
	get := c.get(page)
	pgWant(t, get, 200, `name="password2"`)
	good := tesths.RandomPassword(t)
	r := c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", "RTBody", "password", good, "password2", good,
		"inhibit_login", "false", "device_id", "EVILDEV", "admin", "true", "kind", "guest", "initial_device_display_name", "evil",
		"refresh_token", "true", "session", "SMUGGLED", "auth", `{"type":"m.login.dummy","session":"SMUGGLED"}`,
		"type", "m.login.application_service", "user", "rtvictim", "identifier", "@rtvictim:localhost")
	v := redirectParams(t, r, oauthCB+"?")
	tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
	expect(t, tok, 200, "")
	if u, d := e.rtWhoami(tok.str("access_token")); u != "@rtbody:localhost" || d != "RTBODYDEV1" {
		t.Fatalf("whoami %s %s", u, d)
	}
	if again := e.exchange(client, v.Get("code"), oauthCB, p.verifier); again.Status == 200 {
		t.Fatal("the new user's authorization code worked twice")
	}
	sent := rt.creates()
	if len(sent) < 2 {
		t.Fatalf("want the first request and one stage, got %+v", sent)
	}
	var session string
	for i, s := range sent {
		if s.RawQuery != "" {
			t.Errorf("request %d: a query was forwarded: %q", i, s.RawQuery)
		}
		for k := range s.Body {
			if !slices.Contains([]string{"username", "password", "auth", "inhibit_login"}, k) {
				t.Errorf("request %d: field %q forwarded: %v", i, k, s.Body)
			}
		}
		if s.Body["username"] != "rtbody" || s.Body["password"] != good || s.Body["inhibit_login"] != true {
			t.Errorf("request %d: body %v", i, s.Body)
		}
		auth, _ := s.Body["auth"].(map[string]any)
		if i == 0 {
			if auth != nil {
				t.Errorf("the first request carries auth %v", auth)
			}
		} else {
			for k := range auth {
				if !slices.Contains([]string{"type", "session", "token"}, k) {
					t.Errorf("request %d: auth field %q forwarded", i, k)
				}
			}
			if auth["type"] != oauth.StageDummy || auth["session"] != session || session == "" || session == "SMUGGLED" {
				t.Errorf("request %d: auth %v, the session Dendrite gave is %q", i, auth, session)
			}
		}
		if s.Status == http.StatusUnauthorized {
			session, _ = s.Answer["session"].(string)
		}
		if at, _ := s.Answer["access_token"].(string); at != "" {
			t.Errorf("request %d: Dendrite logged the new user in despite inhibit_login", i)
		}
	}
	if e.hasDevice(tok.str("access_token"), "EVILDEV") {
		t.Fatal("the form's device exists")
	}

	// Headers of the browser's request (a token, an application service's
	// token, cookies) never reach /register.
	withToken := page + "&access_token=QUERYTOKEN"
	get = c.get(withToken)
	form := url.Values{"csrf": {get.hidden("csrf")}, "step": {"create"}, "username": {"rtheaders"}, "password": {good}, "password2": {good}}
	req, err := http.NewRequest("POST", e.srv.URL+withToken, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer AS_TOKEN_SMUGGLED")
	req.Header.Set("Cookie", "smuggled=1")
	res, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 302 {
		t.Fatalf("create step with a token in the query and headers: %d", res.StatusCode)
	}
	for i, s := range rt.creates() {
		if s.Header.Get("Authorization") != "" || s.Header.Get("Cookie") != "" || strings.Contains(s.RawQuery, "TOKEN") {
			t.Errorf("request %d: the browser's credentials reached /register: %v %q", i, s.Header, s.RawQuery)
		}
	}
}

// TestRedTeamCreateExistingUser: no spelling of an existing user's name on
// the create view — letter case, Unicode that lowercases to ASCII (Kelvin
// sign, dotted capital I), whitespace, the full user ID, a trailing colon —
// signs that user in or touches their devices or 2FA, with or without their
// password. Look-alikes the homeserver takes as new names (a trailing dot,
// "=xx") are new, separate accounts: the code is theirs, not the victim's.
func TestRedTeamCreateExistingUser(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	victim := e.enrol("rtkiki")
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-victim-")
	page := createURL(client, "RTVICDEV01", "s", p)
	c := e.pgClient()
	good := tesths.RandomPassword(t)

	taken := []string{"rtkiki", "RTKIKI", "rt\u212Aiki", "RT\u212A\u0130\u212A\u0130", "rtk\u0130ki", " rtkiki\t", "\u00a0rtkiki\u00a0",
		"rtkiki\r\n"}
	for _, name := range taken {
		for _, pw := range []string{victim.Password, good} {
			r := c.oauthCreate(page, name, pw, pw)
			if r.Status == 302 || r.Header.Get("Location") != "" {
				t.Fatalf("%q: a redirect %q", name, r.Header.Get("Location"))
			}
			if !r.has("That username is taken") && !r.has("That username cannot be used") {
				t.Fatalf("%q: %d\n%s", name, r.Status, r.Body)
			}
		}
	}
	invalid := []string{"@rtkiki:localhost", "rtkiki:localhost", "rtkiki:", "@rtkiki", "rt\u200bkiki", "rtk\u0131ki", "rtkiki\x00",
		"rtkiki%00", "rtkiki\u0301", "ｒｔｋｉｋｉ"}
	for _, name := range invalid {
		r := c.oauthCreate(page, name, victim.Password, victim.Password)
		noRedirect(t, r, 400, fmt.Sprintf("%q", name))
	}
	// Look-alikes Dendrite may take as new names: never the victim.
	for _, name := range []string{"rtkiki.", "=72tkiki", "rtkiki/", "rtkiki_", "rtkiki+x"} {
		r := c.oauthCreate(page, name, victim.Password, victim.Password)
		if r.Status != 302 {
			if r.Status >= 500 {
				t.Fatalf("%q: %d\n%s", name, r.Status, r.Body)
			}
			continue // the homeserver refused the name: fine
		}
		v := redirectParams(t, r, oauthCB+"?")
		tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
		expect(t, tok, 200, "")
		if u, _ := e.rtWhoami(tok.str("access_token")); u != "@"+name+":localhost" {
			t.Fatalf("%q signed in as %q", name, u)
		}
		t.Logf("look-alike %q registered as a new, separate account", name)
		if on, err := e.acc.Enabled(context.Background(), "@"+name+":localhost"); err != nil || on {
			t.Fatalf("%q inherits 2FA: %v %v", name, on, err)
		}
	}
	for _, s := range rt.creates() {
		if u, _ := s.Body["username"].(string); strings.ContainsFunc(u, func(r rune) bool { return r > 0x7f }) {
			t.Fatalf("a non-ASCII username went to the homeserver: %q", u)
		}
	}
	if e.hasDevice(victim.AccessToken, "RTVICDEV01") {
		t.Fatal("a device for the victim")
	}
	if on, err := e.acc.Enabled(context.Background(), victim.UserID); err != nil || !on {
		t.Fatalf("the victim's 2FA: %v %v", on, err)
	}
	if !rtLogin(t, hs, victim.Localpart, victim.Password) {
		t.Fatal("the victim's password changed")
	}
}

// TestRedTeamCreateCSRFAndReplay: the create step needs this browser's
// page cookie and a token bound to this very authorization request; a token
// of another browser, of another request (another state, no prompt=create),
// or of the code step registers nobody; a replayed form never signs in
// again; prompt given twice reads only the first.
func TestRedTeamCreateCSRFAndReplay(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-csrf-")
	page := createURL(client, "RTCSRFDEV1", "s1", p)
	good := tesths.RandomPassword(t)
	a, b := e.pgClient(), e.pgClient()
	tokA := a.get(page).hidden("csrf")
	b.get(page)

	try := func(what string, c *pgClient, path, csrf, user string) {
		t.Helper()
		r := c.post(path, "csrf", csrf, "step", "create", "username", user, "password", good, "password2", good)
		if r.Status == 302 || r.Status == 200 || r.Status >= 500 {
			t.Fatalf("%s: %d %q\n%s", what, r.Status, r.Header.Get("Location"), r.Body)
		}
		if rtLogin(t, hs, user, good) {
			t.Fatalf("%s: %s was registered", what, user)
		}
	}
	try("another browser's token", b, page, tokA, "rtcsrf1")
	try("no cookie", &pgClient{t: t, base: e.srv.URL, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}, page, tokA, "rtcsrf2")
	try("another state's request", a, createURL(client, "RTCSRFDEV1", "s2", p), tokA, "rtcsrf3")
	try("without prompt=create", a, authorizeURL(client, oauthCB, "RTCSRFDEV1", "s1", p, ""), tokA, "rtcsrf4")
	try("prompt given twice, login first", a, authorizeURL(client, oauthCB, "RTCSRFDEV1", "s1", p, "")+"&prompt=login&prompt=create",
		a.get(authorizeURL(client, oauthCB, "RTCSRFDEV1", "s1", p, "")+"&prompt=login&prompt=create").hidden("csrf"), "rtcsrf5")

	// The code step's token (a 2FA sign-in) is not the create step's.
	victim := e.enrol("rtcsrfvictim")
	plain := authorizeURL(client, oauthCB, "RTCSRFDEV1", "s1", p, "") + "&prompt=create"
	codePage := a.oauthSignIn(plain, victim.Localpart, victim.Password)
	pgWant(t, codePage, 200, `name="code"`)
	r := a.post(plain, "csrf", codePage.hidden("csrf"), "step", "create", "session", codePage.hidden("session"),
		"username", "rtcsrf6", "password", good, "password2", good)
	noRedirect(t, r, 403, "the code step's token on the create step")

	// A form replayed after it signed the user in: the name is taken, no
	// second code, no redirect.
	get := a.get(page)
	form := []string{"csrf", get.hidden("csrf"), "step", "create", "username", "rtreplay", "password", good, "password2", good}
	redirectParams(t, a.post(page, form...), oauthCB+"?")
	for i := 0; i < 3; i++ {
		r := a.post(page, form...)
		noRedirect(t, r, 400, "replayed create form")
		pgWant(t, r, 400, "That username is taken")
	}
	// Two requests from the same replayed form at once: one account.
	var wg sync.WaitGroup
	var redirects atomic.Int32
	get = a.get(page)
	form = []string{"csrf", get.hidden("csrf"), "step", "create", "username", "rtreplay2", "password", good, "password2", good}
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := a.do("POST", page, formValues(form)); r.Status == 302 {
				redirects.Add(1)
			} else if r.Status >= 500 {
				t.Errorf("concurrent replay: %d\n%s", r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	if n := redirects.Load(); n != 1 {
		t.Fatalf("%d redirects with a code for one registration", n)
	}
}

func formValues(fields []string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		v.Add(fields[i], fields[i+1])
	}
	return v
}

// TestRedTeamCreateConcurrentSameName: browsers racing to register one name
// with different passwords: exactly one gets a code, for the user whose
// password the homeserver keeps; the others get a sentence.
func TestRedTeamCreateConcurrentSameName(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-race-")
	page := createURL(client, "RTRACEDEV1", "s", p)
	const n = 8
	type try struct {
		c        *pgClient
		csrf, pw string
	}
	tries := make([]try, n)
	for i := range tries {
		c := e.pgClient()
		tries[i] = try{c, c.get(page).hidden("csrf"), tesths.RandomPassword(t)}
	}
	results := make([]pgPage, n)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tr := tries[i]
			results[i] = tr.c.do("POST", page, formValues([]string{"csrf", tr.csrf, "step", "create", "username", "rtrace",
				"password", tr.pw, "password2", tr.pw}))
		}(i)
	}
	wg.Wait()
	winners := 0
	for i, r := range results {
		switch {
		case r.Status == 302:
			winners++
			v := redirectParams(t, r, oauthCB+"?")
			tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
			expect(t, tok, 200, "")
			if u, _ := e.rtWhoami(tok.str("access_token")); u != "@rtrace:localhost" {
				t.Fatalf("winner signed in as %q", u)
			}
			if !rtLogin(t, hs, "rtrace", tries[i].pw) {
				t.Fatal("the winner's password is not the account's")
			}
		case r.Status >= 500:
			t.Errorf("try %d: %d\n%s", i, r.Status, r.Body)
		case r.Header.Get("Location") != "":
			t.Errorf("try %d: redirect %q", i, r.Header.Get("Location"))
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners", winners)
	}
}

// TestRedTeamCreateRedirectSafety: with prompt=create, an unknown client or
// an unregistered redirect_uri is a page, never a redirect, on GET and on
// the create step, and registers nobody; other errors redirect with the
// exact state; the code's redirect carries the exact state, in the query or
// the fragment.
func TestRedTeamCreateRedirectSafety(t *testing.T) {
	e := oauthEnv(t)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-redirect-")
	good := tesths.RandomPassword(t)
	c := e.pgClient()
	state := "a b&c=d/é+%25#frag?x=\"<>"
	for name, page := range map[string]string{
		"unknown client":   createURL("no-such-client", "RTREDIR001", state, p),
		"other redirect":   authorizeURL(client, "https://evil.example/cb", "RTREDIR001", state, p, "") + "&prompt=create",
		"redirect sub-uri": authorizeURL(client, oauthCB+"/../../evil", "RTREDIR001", state, p, "") + "&prompt=create",
		"no redirect":      strings.Replace(createURL(client, "RTREDIR001", state, p), "redirect_uri=", "x=", 1),
	} {
		get := c.get(page)
		noRedirect(t, get, 400, name+" GET")
		r := c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", "rtredir", "password", good, "password2", good)
		noRedirect(t, r, 400, name+" create step")
	}
	if rtLogin(t, e.hs, "rtredir", good) {
		t.Fatal("registered through a refused authorization request")
	}
	// An error after the redirect URI is checked: to the client, state exact.
	bad := strings.Replace(createURL(client, "RTREDIR001", state, p), "code_challenge_method=S256", "code_challenge_method=plain", 1)
	v := redirectParams(t, c.get(bad), oauthCB+"?")
	if v.Get("error") != "invalid_request" || v.Get("state") != state {
		t.Fatalf("error redirect %v", v)
	}
	v = redirectParams(t, c.post(bad, "step", "create", "username", "rtredir2", "password", good, "password2", good), oauthCB+"?")
	if v.Get("error") != "invalid_request" || v.Get("state") != state || v.Get("code") != "" {
		t.Fatalf("create step on a bad request: %v", v)
	}
	if rtLogin(t, e.hs, "rtredir2", good) {
		t.Fatal("registered through an authorization request with an error")
	}
	// The code, with the state exactly as sent, in both response modes.
	for i, mode := range []string{"", "fragment"} {
		page := authorizeURL(client, oauthCB, "RTREDIR001", state, p, mode) + "&prompt=create"
		name := fmt.Sprintf("rtredirok%d", i)
		prefix := oauthCB + "?"
		if mode == "fragment" {
			prefix = oauthCB + "#"
		}
		v := redirectParams(t, c.oauthCreate(page, name, good, good), prefix)
		if v.Get("state") != state || v.Get("code") == "" || len(v) != 2 {
			t.Fatalf("%s: %v", mode, v)
		}
	}
	// "Deny" on the create view: access_denied, exact state, nobody registered.
	page := createURL(client, "RTREDIR001", state, p)
	get := c.get(page)
	v = redirectParams(t, c.post(page, "csrf", get.hidden("csrf"), "step", "deny", "username", "rtdeny", "password", good, "password2", good), oauthCB+"?")
	if v.Get("error") != "access_denied" || v.Get("state") != state {
		t.Fatalf("deny: %v", v)
	}
	if rtLogin(t, e.hs, "rtdeny", good) {
		t.Fatal("Deny registered the user")
	}
}

// rtMetadataCreate reports whether the metadata offers prompt=create.
func (e *env) rtMetadataCreate() bool {
	e.t.Helper()
	r := e.gw("GET", "/_matrix/client/v1/auth_metadata", "", nil)
	expect(e.t, r, 200, "")
	return slices.Contains(r.strings("prompt_values_supported"), "create")
}

// TestRedTeamCreateProbeBounded: the registration probe runs once per
// minute however many metadata and page requests come (concurrent ones
// too); after the operator closes registration the create step is refused
// by the homeserver at once (no account), and the metadata stops offering
// prompt=create within the minute plus one refresh.
func TestRedTeamCreateProbeBounded(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-probe-")
	page := createURL(client, "RTPROBEDEV", "s", p)
	burst := func(n int) {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := do(t, e.srv.URL, "GET", "/_matrix/client/v1/auth_metadata", "", nil)
				if r.Status != 200 {
					t.Errorf("metadata: %d", r.Status)
				}
			}()
		}
		wg.Wait()
	}
	burst(60)
	c := e.pgClient()
	for i := 0; i < 20; i++ {
		c.get(page)
	}
	if n := rt.probes.Load(); n != 1 {
		t.Fatalf("%d probes for 60 concurrent metadata requests and 20 pages", n)
	}
	e.clock.Add(61 * time.Second)
	burst(40)
	deadline := time.Now().Add(6 * time.Second)
	for rt.probes.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rt.probes.Load(); n != 2 {
		t.Fatalf("%d probes after the minute (want 2)", n)
	}

	// The operator closes registration.
	rt.set(func(rt *rtHS) { rt.closed = true })
	if !e.rtMetadataCreate() {
		t.Log("closed registration noticed before the minute was over")
	}
	good := tesths.RandomPassword(t)
	r := c.oauthCreate(page, "rtclosed", good, good)
	noRedirect(t, r, 403, "create step once registration is closed")
	pgWant(t, r, 403, closedSentence)
	if rtLogin(t, hs, "rtclosed", good) {
		t.Fatal("registered although registration is closed")
	}
	e.clock.Add(61 * time.Second)
	stale := 0
	for e.rtMetadataCreate() {
		stale++
		if stale > 50 {
			t.Fatal("prompt=create still offered long after registration closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d stale metadata answers after the minute", stale)
	if n := rt.probes.Load(); n != 3 {
		t.Fatalf("%d probes (want 3)", n)
	}
}

// TestRedTeamCreateFirstProbeCancelled: the first registration probe runs
// with the context of the request that triggered it. A client that asks for
// the metadata (or the page) first and hangs up before the homeserver
// answers must not make the gateway believe registration is off.
func TestRedTeamCreateFirstProbeCancelled(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	rt.set(func(rt *rtHS) { rt.delay = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/_matrix/client/v1/auth_metadata", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatal("the metadata answered before the delayed probe")
	}
	cancel()
	time.Sleep(700 * time.Millisecond) // the probe has ended
	rt.set(func(rt *rtHS) { rt.delay = 0 })
	if !e.rtMetadataCreate() {
		t.Fatalf("one hung-up request turned prompt=create off (probes: %d); the metadata and the create view say registration is closed for a minute",
			rt.probes.Load())
	}
}

// TestRedTeamCreateHalfway: the homeserver registered the user but its
// answer was lost (the page checks the account signs in, and goes on), or
// the password check after it failed (a sentence, no 500, no code); either
// way the user can sign in with the new password afterwards.
func TestRedTeamCreateHalfway(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-halfway-")
	page := createURL(client, "RTHALFDEV1", "s", p)
	plain := authorizeURL(client, oauthCB, "RTHALFDEV1", "s", p, "")
	c := e.pgClient()
	good := tesths.RandomPassword(t)

	signInAfter := func(user string) {
		t.Helper()
		v := redirectParams(t, c.oauthSignIn(plain, user, good), oauthCB+"?")
		tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
		expect(t, tok, 200, "")
		if u, d := e.rtWhoami(tok.str("access_token")); u != "@"+user+":localhost" || d != "RTHALFDEV1" {
			t.Fatalf("whoami %s %s", u, d)
		}
	}

	// The connection drops after Dendrite registered the user: the page
	// asks whether the account now signs in with that password, and goes on
	// as a sign-in (audit event recorded), never a 500.
	rt.set(func(rt *rtHS) { rt.breakRegistered = true })
	r := c.oauthCreate(page, "rthalf1", good, good)
	rt.set(func(rt *rtHS) { rt.breakRegistered = false })
	if r.Status == 500 {
		t.Fatalf("the homeserver's lost answer to the registration is a 500 on the page (%q)", rtErrorText(r))
	}
	v := redirectParams(t, r, oauthCB+"?")
	tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
	expect(t, tok, 200, "")
	if u, d := e.rtWhoami(tok.str("access_token")); u != "@rthalf1:localhost" || d != "RTHALFDEV1" {
		t.Fatalf("whoami after the lost answer: %s %s", u, d)
	}
	signInAfter("rthalf1")

	// The password check right after the registration fails.
	rt.set(func(rt *rtHS) { rt.failLogins = 1 })
	r = c.oauthCreate(page, "rthalf2", good, good)
	if r.Status == 302 || !r.has(`class="error"`) {
		t.Fatalf("login down: %d %q\n%s", r.Status, r.Header.Get("Location"), r.Body)
	}
	if r.Status == 500 {
		t.Errorf("the homeserver's 503 to the password check after the registration is a 500 on the page (%q); want 502/503", rtErrorText(r))
	}
	t.Logf("login down after the registration: %d, %q, sign-in view: %v, user ID filled in: %v", r.Status, rtErrorText(r),
		r.has(`value="credentials"`), r.has(`value="@rthalf2:localhost"`))
	signInAfter("rthalf2")
	// The audit: both registrations are there (the lost answer's too, once
	// the account signed in).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range []string{"rthalf1", "rthalf2"} {
		events, err := e.db.QueryAudit(ctx, storage.AuditQuery{UserID: "@" + u + ":localhost", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range events {
			if ev.Kind == storage.AuditRegistered {
				n++
			}
		}
		if n != 1 {
			t.Errorf("audit %q events of %s: %d, want 1", storage.AuditRegistered, u, n)
		}
	}
}

// rtErrorText is the error sentence of a page.
func rtErrorText(p pgPage) string {
	_, after, ok := strings.Cut(p.Body, `class="error"`)
	if !ok {
		return ""
	}
	_, after, _ = strings.Cut(after, ">")
	text, _, _ := strings.Cut(after, "<")
	return text
}

// TestRedTeamCreateOddHomeserver: a homeserver that registers another user
// than asked, or asks for the dummy stage again, gets no code and no
// sign-in; the browser sees a sentence, not a 500.
func TestRedTeamCreateOddHomeserver(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt)
	victim := e.enrol("rtoddvictim")
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-odd-")
	page := createURL(client, "RTODDDEV01", "s", p)
	c := e.pgClient()
	good := tesths.RandomPassword(t)

	rt.set(func(rt *rtHS) { rt.rewriteUserID = victim.UserID })
	r := c.oauthCreate(page, "rtodd1", good, good)
	rt.set(func(rt *rtHS) { rt.rewriteUserID = "" })
	if r.Header.Get("Location") != "" || r.Status == 200 {
		t.Fatalf("another user ID: %d %q\n%s", r.Status, r.Header.Get("Location"), r.Body)
	}
	if e.hasDevice(victim.AccessToken, "RTODDDEV01") {
		t.Fatal("a device for the victim")
	}
	rt.set(func(rt *rtHS) { rt.repeatDummy = true })
	r2 := c.oauthCreate(page, "rtodd2", good, good)
	rt.set(func(rt *rtHS) { rt.repeatDummy = false })
	if r2.Header.Get("Location") != "" || r2.Status == 200 {
		t.Fatalf("dummy again: %d %q\n%s", r2.Status, r2.Header.Get("Location"), r2.Body)
	}
	if r.Status == 500 || r2.Status == 500 {
		t.Fatalf("a misbehaving homeserver is a 500 on the page (another user ID: %d %q; dummy again: %d %q); want 502",
			r.Status, rtErrorText(r), r2.Status, rtErrorText(r2))
	}
}

// TestRedTeamCreatePolicyNoGrace: under a policy requiring 2FA of everyone
// without grace, a freshly registered user gets no code and no usable token
// before enrolling — neither through the create view (which leaves no login
// behind at the homeserver) nor through the homeserver's own /register
// passed through (its token is blocked), and a pattern policy catches a new
// name that matches it.
func TestRedTeamCreatePolicyNoGrace(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt, func(g *gatewayConfig, _ *accountConfig) {
		g.Policy = policy.Config{Enforce: policy.ModeAll, Exempt: []string{"@rtpolbot*"}}
	})
	client := e.registerClient(webClient())
	pk := newPKCE("rt-create-policy-")
	page := createURL(client, "RTPOLDEV01", "s", pk)
	c := e.pgClient()
	good := tesths.RandomPassword(t)
	p := c.oauthCreate(page, "rtpol1", good, good)
	noRedirect(t, p, 200, "registration under the policy")
	pgWant(t, p, 200, `id="qr"`)
	for _, step := range []string{"skip", "continue", "code"} {
		noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", step, "session", p.hidden("session"), "code", "000000"), 403, step)
	}
	// A second create of the same name with the password: taken.
	noRedirect(t, c.oauthCreate(page, "rtpol1", good, good), 400, "create again")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login, err := hs.Login(ctx, "rtpol1", good)
	if err != nil {
		t.Fatal(err)
	}
	if ids := e.deviceIDs(login.AccessToken); len(ids) != 1 {
		t.Fatalf("devices of the new user before enrolling: %v (only this test's own login expected)", ids)
	}

	// The homeserver's /register through the gateway: a token, blocked.
	r := e.gw("POST", "/_matrix/client/v3/register", "", map[string]any{"username": "rtpol2", "password": good})
	expect(t, r, 401, "")
	r = e.gw("POST", "/_matrix/client/v3/register", "", map[string]any{"username": "rtpol2", "password": good,
		"auth": map[string]any{"type": "m.login.dummy", "session": r.str("session")}})
	expect(t, r, 200, "")
	if at := r.str("access_token"); at != "" {
		expect(t, e.gw("GET", polSync, at, nil), 403, "M_FORBIDDEN")
	}
	// A name matching an exemption pattern: the registrant picks it, so the
	// new account is exempt from the policy (reported, not a failure: the
	// account is the registrant's own). A non-exempt look-alike is not.
	if r := c.oauthCreate(page, "rtpolbot1", good, good); r.Status == 302 {
		t.Logf("self-registered %q is exempt from the policy: a code without 2FA", "@rtpolbot1:localhost")
	}
	noRedirect(t, c.oauthCreate(page, "rtpo1bot", good, good), 200, "not exempt")
}

// TestRedTeamCreatePolicyGrace: with a grace period a freshly registered
// user's grace starts at registration ("Not now" gives a code, as for any
// user first seen now); once it is over their token is blocked.
func TestRedTeamCreatePolicyGrace(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt, func(g *gatewayConfig, _ *accountConfig) {
		g.Policy = policy.Config{Enforce: policy.ModeAll, Grace: time.Hour}
	})
	client := e.registerClient(webClient())
	pk := newPKCE("rt-create-grace-")
	page := createURL(client, "RTGRACEDV1", "s", pk)
	c := e.pgClient()
	good := tesths.RandomPassword(t)
	p := c.oauthCreate(page, "rtgrace1", good, good)
	pgWant(t, p, 200, `id="qr"`, `id="skip"`)
	v := redirectParams(t, c.post(page, "csrf", p.hidden("csrf"), "step", "skip", "session", p.hidden("session")), oauthCB+"?")
	tok := e.exchange(client, v.Get("code"), oauthCB, pk.verifier)
	expect(t, tok, 200, "")
	at := tok.str("access_token")
	expect(t, e.gw("GET", polSync, at, nil), 200, "")
	e.clock.Add(2 * time.Hour)
	expect(t, e.gw("GET", polSync, at, nil), 403, "M_FORBIDDEN")
	p = c.oauthSignIn(authorizeURL(client, oauthCB, "RTGRACEDV1", "s", pk, ""), "rtgrace1", good)
	noRedirect(t, p, 200, "sign-in after the grace")
	if p.has(`id="skip"`) {
		t.Fatal("\"Not now\" after the grace")
	}
}

// TestRedTeamCreateRateLimitIPv6: the create step's per-address rate limit
// (which bounds username enumeration and mass registration) must bound one
// client, and an IPv6 client holds a whole /64: addresses of one /64 share
// one budget.
func TestRedTeamCreateRateLimitIPv6(t *testing.T) {
	hs := tesths.Dendrite(t)
	rt := newRTHS(t, hs)
	e := newEnvRT(t, hs, rt, func(g *gatewayConfig, _ *accountConfig) {
		g.RateBurst, g.RateEvery = 3, time.Hour
		g.TrustedProxies, _ = ratelimit.ParseProxies([]string{"127.0.0.0/8", "::1"})
	})
	client := e.registerClient(webClient())
	p := newPKCE("rt-create-ipv6-")
	page := createURL(client, "RTIPV6DEV1", "s", p)
	c := e.pgClient()
	csrf := c.get(page).hidden("csrf")
	good := tesths.RandomPassword(t)
	post := func(from, user string) int {
		t.Helper()
		form := url.Values{"csrf": {csrf}, "step": {"create"}, "username": {user}, "password": {good}, "password2": {good}}
		req, err := http.NewRequest("POST", e.srv.URL+page, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		res, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := 0; ; i++ {
		if i == 4 {
			t.Fatal("no rate limit for one address")
		}
		if post("2001:db8:1:2::1", fmt.Sprintf("rtsix%d", i)) == 429 {
			break
		}
	}
	registered := 0
	for i := 2; i < 40; i++ {
		if post(fmt.Sprintf("2001:db8:1:2::%x", i), fmt.Sprintf("rtsixmore%d", i)) == 302 {
			registered++
		}
	}
	if registered > 0 {
		t.Fatalf("after the limit of 2001:db8:1:2::1, %d more accounts from other addresses of its /64 (each address has its own burst)", registered)
	}
}
