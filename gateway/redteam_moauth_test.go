package gateway_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
)

// Red team of the m.oauth stage on every guarded operation, the account
// page's device details and the tokens behind them, against Dendrite. Each
// test fails when its attack succeeds. Failing at the time of writing
// (findings): TestRTMOAuthEmptyDeviceList (the page says "sign out no
// device" and Dendrite signs out every device), TestRTMOAuthOtherTokenOwnUIA
// (a legacy token spends the OAuth client's approval on POST /account/3pid),
// TestRTMOAuthSentenceCannotLie (bidi controls, line breaks and closing
// quotes of device IDs reach the sentence raw).

// rtGrant is an OAuth grant of the code flow: its client, tokens.
type rtGrant struct{ client, access, refresh string }

// rtOAuthGrant runs the code flow for u with device and returns the grant.
func (e *env) rtOAuthGrant(u *enrolled, device string) rtGrant {
	e.t.Helper()
	client := e.registerClient(webClient())
	p := newPKCE("rt-moauth-verifier-")
	page := authorizeURL(client, "https://app.example/cb", device, "s", p, "")
	c := e.pgClient()
	params := redirectParams(e.t, c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u)), "https://app.example/cb?")
	tok := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier)
	if tok.Status != 200 {
		e.t.Fatalf("token: %d %s", tok.Status, tok.Raw)
	}
	return rtGrant{client: client, access: tok.str("access_token"), refresh: tok.str("refresh_token")}
}

// rtWith is body with auth {session}.
func rtWith(body map[string]any, session string) map[string]any {
	out := map[string]any{"auth": map[string]any{"session": session}}
	for k, v := range body {
		out[k] = v
	}
	return out
}

// rtApprove approves session (url link) for u in a fresh browser.
func (e *env) rtApprove(t *testing.T, u *enrolled, link, session string) {
	t.Helper()
	b := e.browser()
	_, p := e.approvePage(b, u, link)
	wantPage(t, p, 200, `name="session" value="`+session+`"`)
	wantPage(t, b.post("action", "approve", "session", session, "password", u.Password, "code", e.code(u)), 200, "Approved")
}

// TestRTMOAuthConcurrentRetries: of many concurrent retries of an approved
// session exactly one is forwarded.
func TestRTMOAuthConcurrentRetries(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtrace")
	g := e.rtOAuthGrant(u, "RTRACEDEV")
	victims := []string{e.newDevice(u), e.newDevice(u)}
	body := map[string]any{"devices": victims}
	const path = "/_matrix/client/v3/delete_devices"
	ch := e.gw("POST", path, g.access, body)
	expect(t, ch, 401, "")
	session := ch.str("session")
	e.rtApprove(t, u, stageURL(t, ch), session)

	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, e.srv.URL, "POST", path, g.access, rtWith(body, session))
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1 {
		t.Fatalf("concurrent approved retries: %v (want exactly one 200)", statuses)
	}
}

// TestRTMOAuthOtherTokenOwnUIA: the approval of an OAuth client's request
// is spent by no other client of the same user: not by a legacy token on
// an endpoint the gateway guards with its own UIA (POST /account/3pid),
// where an approved m.oauth session is "done" for ownUIA, nor with a
// password stage on an in-front endpoint.
func TestRTMOAuthOtherTokenOwnUIA(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtownuia")
	g := e.rtOAuthGrant(u, "RTOWNUIADEV")
	const path = "/_matrix/client/v3/account/3pid"
	body := map[string]any{"three_pid_creds": map[string]any{"sid": "s", "client_secret": "c"}}
	ch := e.gw("POST", path, g.access, body)
	expect(t, ch, 401, "")
	session := ch.str("session")
	e.rtApprove(t, u, stageURL(t, ch), session)

	// The legacy token of the same user (another device) with the session ID.
	legacy := e.gw("POST", path, u.AccessToken, rtWith(body, session))
	// The OAuth client's own retry must still be the one the approval is for.
	own := e.gw("POST", path, g.access, rtWith(body, session))
	if legacy.Status != 401 && legacy.Status != 403 {
		t.Errorf("a legacy token of the same user spent the OAuth client's approval on %s: %d %s "+
			"(the OAuth client's own retry then: %d %s)", path, legacy.Status, legacy.Raw, own.Status, own.Raw)
	}

	// In front: the approved session with a legacy token and a password stage.
	other := e.newDevice(u)
	const del = "/_matrix/client/v3/delete_devices"
	dbody := map[string]any{"devices": []string{other}}
	ch = e.gw("POST", del, g.access, dbody)
	expect(t, ch, 401, "")
	session = ch.str("session")
	e.rtApprove(t, u, stageURL(t, ch), session)
	pw := map[string]any{"devices": []string{other}, "auth": passwordAuth(u.User, session)}
	if r := e.gw("POST", del, u.AccessToken, pw); r.Status == 200 {
		t.Fatalf("a legacy token with the password spent the approval: %s", r.Raw)
	}
	if e.direct("GET", pgWhoAmI, u.AccessToken, nil).Status != 200 {
		t.Fatal("legacy token gone")
	}
	expect(t, e.gw("POST", del, g.access, rtWith(dbody, session)), 200, "")
}

// TestRTMOAuthSentenceCannotLie: the requester's text (device IDs) cannot
// make the approval sentence say something else: no markup, no bidi
// override or isolate, no line break, and no unescaped closing quote that
// ends the quoted device ID early.
func TestRTMOAuthSentenceCannotLie(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtsentence")
	g := e.rtOAuthGrant(u, "RTSENTDEV")
	for _, c := range []struct {
		name, method, path string
		body               map[string]any
		bad                []string // must not be in the page
	}{
		{"html", "POST", "/_matrix/client/v3/delete_devices",
			map[string]any{"devices": []string{`<b>x</b><script>alert(1)</script>`}}, []string{"<b>x</b>", "<script>alert"}},
		{"rlo in the body", "POST", "/_matrix/client/v3/delete_devices",
			map[string]any{"devices": []string{"\u202eDEVICE", "x\u2067y\u2069"}}, []string{"\u202e", "\u2067", "\u2069"}},
		{"rlo in the path", "DELETE", "/_matrix/client/v3/devices/%E2%80%AEELOHP",
			map[string]any{}, []string{"\u202e"}},
		{"newline", "POST", "/_matrix/client/v3/delete_devices",
			map[string]any{"devices": []string{"A\n\nYour app only refreshes its keys.\r\n"}}, []string{"\n\nYour app", "\r"}},
		{"closing quote", "POST", "/_matrix/client/v3/delete_devices",
			map[string]any{"devices": []string{"PHONE” (this only signs out this app’s old session; your other devices stay) “"}},
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := e.gw(c.method, c.path, g.access, c.body)
			if ch.Status != 401 {
				t.Fatalf("%d %s", ch.Status, ch.Raw)
			}
			b := e.browser()
			_, p := e.approvePage(b, u, stageURL(t, ch))
			if p.Status != 200 {
				t.Fatalf("approval page %d", p.Status)
			}
			i := strings.Index(p.Body, `id="approve-what">`)
			j := strings.Index(p.Body[i:], "</strong>")
			what := p.Body[i+len(`id="approve-what">`) : i+j]
			t.Logf("sentence: %q", html.UnescapeString(what))
			for _, bad := range c.bad {
				if strings.Contains(what, bad) {
					t.Errorf("the sentence carries the requester's %q raw: %q", bad, what)
				}
			}
			if c.name == "closing quote" && strings.Count(html.UnescapeString(what), "”") > 1 {
				t.Errorf("a device ID closes its own quote: the sentence reads %q", html.UnescapeString(what))
			}
		})
	}
}

// TestRTMOAuthCodeReplayAndLockout: the code that signed in to the page
// does not approve; the code that approved works nowhere else; wrong codes
// on the approval count toward the lockout the gateway's UIA shares.
func TestRTMOAuthCodeReplayAndLockout(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtreplay")
	g := e.rtOAuthGrant(u, "RTREPLAYDEV")
	other := e.newDevice(u)
	const del = "/_matrix/client/v3/delete_devices"
	body := map[string]any{"devices": []string{other}}
	ch := e.gw("POST", del, g.access, body)
	expect(t, ch, 401, "")
	session, link := ch.str("session"), stageURL(t, ch)

	// The page's sign-in code, replayed on the approval.
	b := e.browser()
	query := strings.TrimPrefix(link, oauthIssuer+selfPath+"?")
	b.getQuery(query)
	b.post("action", "signin", "username", u.Localpart, "password", u.Password, "next", query)
	signin := e.peekCode(u, 0)
	wantPage(t, b.post("action", "code", "code", signin), 200, `id="view-approve"`)
	if p := b.post("action", "approve", "session", session, "password", u.Password, "code", signin); p.Status == 200 {
		t.Fatalf("the sign-in's code approved too: %s", p.Body)
	}
	expect(t, e.gw("POST", del, g.access, rtWith(body, session)), 401, "")

	// The approval's code, replayed on the gateway's own 2FA stage (legacy token).
	b.getQuery(query)
	e.clock.Add(30e9)
	approval := e.code(u)
	wantPage(t, b.post("action", "approve", "session", session, "password", u.Password, "code", approval), 200, "Approved")
	lch := e.gw("POST", del, u.AccessToken, map[string]any{"devices": []string{e.newDevice(u)}})
	expect(t, lch, 401, "")
	r := e.gw("POST", del, u.AccessToken, map[string]any{"devices": []string{"X"},
		"auth": map[string]any{"type": "m.login.2fa.totp", "session": lch.str("session"), "code": approval}})
	if strings.Contains(string(r.Raw), `"completed":["m.login.2fa.totp"`) {
		t.Fatalf("the approval's code completed the 2FA stage again: %s", r.Raw)
	}
	expect(t, e.gw("POST", del, g.access, rtWith(body, session)), 200, "")

	// Lockout: wrong codes on the approval lock the gateway's stage too.
	ch = e.gw("POST", del, g.access, map[string]any{"devices": []string{"NOSUCH"}})
	expect(t, ch, 401, "")
	session, link = ch.str("session"), stageURL(t, ch)
	lb := e.browser()
	lq, _ := e.approvePage(lb, u, link)
	locked := false
	for i := 0; i < 30 && !locked; i++ {
		lb.getQuery(lq)
		p := lb.post("action", "approve", "session", session, "password", u.Password, "code", e.wrongCode(u))
		locked = p.Status == http.StatusTooManyRequests
		if i == 0 || i > 27 {
			t.Logf("wrong code %d: %d %s", i, p.Status, firstError(p.Body))
		}
		if p.Status == 200 {
			t.Fatal("a wrong code approved")
		}
	}
	if !locked {
		t.Fatal("30 wrong codes on the approval and no lockout")
	}
	lch = e.gw("POST", del, u.AccessToken, map[string]any{"devices": []string{"Y"}})
	r = e.gw("POST", del, u.AccessToken, map[string]any{"devices": []string{"Y"},
		"auth": map[string]any{"type": "m.login.2fa.totp", "session": lch.str("session"), "code": e.code(u)}})
	if strings.Contains(string(r.Raw), `"completed":["m.login.2fa.totp"`) {
		t.Fatalf("the lockout of the approval page is not shared with the gateway's stage: %s", r.Raw)
	}
}

// TestRTMOAuthTokens: a revoked token's approved session does nothing; a
// refreshed token (the same device) completes it; a user without 2FA gets
// the homeserver's UIA with an OAuth token (no m.oauth).
func TestRTMOAuthTokens(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rttokens")
	const del = "/_matrix/client/v3/delete_devices"

	// Revoked after the approval.
	g := e.rtOAuthGrant(u, "RTREVOKEDEV")
	other := e.newDevice(u)
	body := map[string]any{"devices": []string{other}}
	ch := e.gw("POST", del, g.access, body)
	expect(t, ch, 401, "")
	e.rtApprove(t, u, stageURL(t, ch), ch.str("session"))
	expect(t, e.oauthPost(oauth.RevokePath, url.Values{"client_id": {g.client}, "token": {g.refresh}}, nil), 200, "")
	if r := e.gw("POST", del, g.access, rtWith(body, ch.str("session"))); r.Status == 200 {
		t.Fatalf("a revoked token's approved session completed: %s", r.Raw)
	}
	if e.direct("GET", pgWhoAmI, mustLogin(t, e, u), nil).Status != 200 {
		t.Fatal("login broken")
	}

	// Refreshed between the challenge and the retry.
	g = e.rtOAuthGrant(u, "RTREFRESHDEV")
	other = e.newDevice(u)
	body = map[string]any{"devices": []string{other}}
	ch = e.gw("POST", del, g.access, body)
	expect(t, ch, 401, "")
	ref := e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {g.client}, "refresh_token": {g.refresh}}, nil)
	expect(t, ref, 200, "")
	e.rtApprove(t, u, stageURL(t, ch), ch.str("session"))
	expect(t, e.gw("POST", del, ref.str("access_token"), rtWith(body, ch.str("session"))), 200, "")

	// A user without 2FA: the homeserver's own UIA, no m.oauth.
	plain := tesths.RegisterUser(t, e.hs, "rtplain")
	client := e.registerClient(webClient())
	p := newPKCE("rt-plain-verifier-")
	page := authorizeURL(client, "https://app.example/cb", "RTPLAINDEV", "s", p, "")
	params := redirectParams(t, e.pgClient().oauthSignIn(page, plain.Localpart, plain.Password), "https://app.example/cb?")
	tok := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier)
	expect(t, tok, 200, "")
	r := e.gw("POST", del, tok.str("access_token"), map[string]any{"devices": []string{"NOSUCH"}})
	if r.Status != 401 || strings.Contains(string(r.Raw), "m.oauth") || !strings.Contains(string(r.Raw), "m.login.password") {
		t.Fatalf("user without 2FA, OAuth token: %d %s", r.Status, r.Raw)
	}
	r = e.gw("POST", del, tok.str("access_token"), map[string]any{"devices": []string{"NOSUCH"}, "auth": passwordAuth(plain, r.str("session"))})
	expect(t, r, 200, "")
}

func mustLogin(t *testing.T, e *env, u *enrolled) string {
	t.Helper()
	l, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	return l.AccessToken
}

// TestRTAccountDeviceDetailsOdd: odd device IDs on the device view (dot
// segments, escapes) get a readable page, never a 500 or another user's or
// endpoint's data, and every throw-away login is logged out, on error
// paths too.
func TestRTAccountDeviceDetailsOdd(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtdetails")
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	wantPage(t, b.post("action", "code", "code", e.code(u)), 200, `id="status"`)
	before := e.deviceIDs(u.AccessToken)
	for _, device := range []string{".", "..", "./", "../..", "%2E%2E", "a%2F..%2F..", "../../account/whoami", "..%2F..%2Faccount%2Fwhoami",
		"?", "#", "%", " ", "\x00", strings.Repeat("A", 255), "A/B", u.DeviceID + "/..", u.DeviceID + "?x=1"} {
		t.Run(fmt.Sprintf("%q", device), func(t *testing.T) {
			b.getQuery("action=org.matrix.device_view&device_id=" + url.QueryEscape(device))
			p := b.post("action", "device_details", "device_id", device, "password", u.Password)
			if p.Status >= 500 || !strings.Contains(p.Body, "<html") {
				t.Errorf("device %q: %d\n%s", device, p.Status, p.Body)
			}
			if strings.Contains(p.Body, `id="device-details"`) && device != u.DeviceID {
				t.Errorf("device %q: details of something shown:\n%s", device, p.Body)
			}
			b.getQuery("action=org.matrix.device_view&device_id=" + url.QueryEscape(device))
			p = b.post("action", "device_delete", "device_id", device, "password", u.Password, "code", e.code(u))
			if p.Status >= 500 {
				t.Errorf("delete %q: %d\n%s", device, p.Status, p.Body)
			}
		})
	}
	if after := e.deviceIDs(u.AccessToken); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("devices before %v, after %v", before, after)
	}
}

// TestRTMOAuthBadInput: the approval view and the guarded endpoints never
// answer 500 to odd input, and the page routes answer a page.
func TestRTMOAuthBadInput(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtbadinput")
	g := e.rtOAuthGrant(u, "RTBADDEV")
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	wantPage(t, b.post("action", "code", "code", e.code(u)), 200, `id="status"`)
	for _, s := range []string{"", "x", strings.Repeat("s", 300), strings.Repeat("s", 5000), "%00", "\x00", "../", "<x>"} {
		for _, action := range []string{oauth.ActionApprove, oauth.ActionCrossSigningReset} {
			p := b.getQuery("action=" + action + "&session=" + url.QueryEscape(s))
			if p.Status >= 500 || !strings.Contains(p.Body, "<html") {
				t.Errorf("GET %s session %q: %d", action, s, p.Status)
			}
			b.get()
			p = b.post("action", "approve", "session", s, "password", u.Password, "code", e.code(u))
			if p.Status >= 500 || p.Status == 200 || !strings.Contains(p.Body, "<html") {
				t.Errorf("POST approve session %q: %d", s, p.Status)
			}
		}
	}
	// The page's own web session ID or another session kind is not an m.oauth session.
	if c := b.cookie("matrix2fa_self"); c != nil {
		p := b.getQuery("action=" + oauth.ActionApprove + "&session=" + url.QueryEscape(c.Value))
		if p.Status == 200 {
			t.Errorf("the web session's ID opened an approval")
		}
	}
	for _, raw := range []string{`{"devices":[1,2]}`, `{"devices":"x"}`, `{"devices":null}`, `{"devices":[null]}`, `[]`, `{`, `{"devices":["a"],"auth":"x"}`,
		`{"devices":["a"],"auth":{"session":5}}`, `{"devices":["a"],"auth":{"session":"nope"}}`, `{"devices":["a"],"auth":{"type":"m.oauth","session":"nope"}}`} {
		r := e.gw("POST", "/_matrix/client/v3/delete_devices", g.access, raw)
		if r.Status >= 500 {
			t.Errorf("delete_devices %s: %d %s", raw, r.Status, r.Raw)
		}
	}
	for _, body := range []string{`{"erase":"true"}`, `{"erase":1}`, `{"erase":null}`} {
		r := e.gw("POST", "/_matrix/client/v3/account/deactivate", g.access, body)
		if r.Status >= 500 || (r.Status == 401 && strings.Contains(string(r.Raw), "m.oauth")) && body != `{"erase":null}` {
			t.Errorf("deactivate %s: %d %s", body, r.Status, r.Raw)
		}
	}
}

// TestRTMOAuthPathSpellings: an OAuth token with the password in its own
// auth dict gets nothing done through another spelling of a guarded path.
func TestRTMOAuthPathSpellings(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtspell")
	g := e.rtOAuthGrant(u, "RTSPELLDEV")
	for _, spell := range []string{"/_matrix/client/v3//devices/%s", "/_matrix/client/v3/devices/%s/", "/_matrix/client/v3/devices//%s",
		"/_matrix/client/v3/./devices/%s", "/_matrix/client/v3/DEVICES/%s", "/_matrix/client/v3/devices/%s%%2F", "/_matrix/client/v3%%2Fdevices%%2F%s",
		"/_matrix/client/v3/devices/%s;x", "/_matrix/client/unstable/devices/%s", "/_matrix/client/api/v1/devices/%s", "/_matrix//client/v3/devices/%s",
		"/_matrix/client/v3/devices/%s#x", "/_matrix/client/v3/devices/%s?x=1"} {
		dev := e.newDevice(u)
		path := fmt.Sprintf(spell, dev)
		r := e.gw("DELETE", path, g.access, map[string]any{"auth": passwordAuth(u.User, "")})
		if r.Status == 401 && r.str("session") != "" {
			r = e.gw("DELETE", path, g.access, map[string]any{"auth": passwordAuth(u.User, r.str("session"))})
		}
		if !contains(e.deviceIDs(u.AccessToken), dev) {
			t.Errorf("%s: the password alone signed the device out (%d %s)", path, r.Status, r.Raw)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// firstError is the page's error paragraph, if any.
func firstError(body string) string {
	i := strings.Index(body, `class="error"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</p>")
	if j < 0 {
		return body[i:]
	}
	return body[i : i+j]
}

// TestRTMOAuthConcurrentApprovals: two tabs of the same user approve the
// same session at once (a double submit): one approval, and the other gets
// a readable page, never a 500.
func TestRTMOAuthConcurrentApprovals(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtdouble")
	g := e.rtOAuthGrant(u, "RTDOUBLEDEV")
	const del = "/_matrix/client/v3/delete_devices"
	for trial := range 4 {
		body := map[string]any{"devices": []string{fmt.Sprintf("NOSUCH%d", trial)}}
		ch := e.gw("POST", del, g.access, body)
		expect(t, ch, 401, "")
		session, link := ch.str("session"), stageURL(t, ch)
		b1, b2 := e.browser(), e.browser()
		q1, _ := e.approvePage(b1, u, link)
		q2, _ := e.approvePage(b2, u, link)
		b1.getQuery(q1)
		b2.getQuery(q2)
		// Two codes both inside the window: the current step's and the next.
		c1, c2 := e.peekCode(u, 0), e.peekCode(u, 1)
		var wg sync.WaitGroup
		pages := make([]webPage, 2)
		for i, b := range []*webUser{b1, b2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code := c1
				if i == 1 {
					code = c2
				}
				pages[i] = b.post("action", "approve", "session", session, "password", u.Password, "code", code)
			}()
		}
		wg.Wait()
		for i, p := range pages {
			if p.Status >= 500 {
				t.Fatalf("trial %d: concurrent approval %d answered %d: %s", trial, i, p.Status, firstError(p.Body))
			}
		}
		t.Logf("trial %d: %d %s / %d %s", trial, pages[0].Status, firstError(pages[0].Body), pages[1].Status, firstError(pages[1].Body))
		e.gw("POST", del, g.access, rtWith(body, session))
		e.clock.Add(90e9)
	}
}

// TestRTMOAuthEmptyDeviceList: Dendrite's delete_devices with an empty (or
// missing, or null) list signs out every device of the user (its
// PerformDeviceDeletion with no IDs removes them all), Synapse none: the
// gateway refuses such a body for every token (400 M_MISSING_PARAM), never
// asks to approve "no device", and no device is signed out.
func TestRTMOAuthEmptyDeviceList(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("rtempty")
	plain := tesths.RegisterUser(t, e.hs, "rtemptyplain")
	const del = "/_matrix/client/v3/delete_devices"
	g := e.rtOAuthGrant(u, "RTEMPTYDEV")
	phone := e.newDevice(u)
	for _, body := range []map[string]any{{"devices": []string{}}, {}, {"devices": nil}, {"devices": []string{""}}} {
		for who, token := range map[string]string{"OAuth token, 2FA": g.access, "legacy token, 2FA": u.AccessToken, "no 2FA": plain.AccessToken} {
			r := e.gw("POST", del, token, body)
			if r.Status != 400 || (r.str("errcode") != "M_MISSING_PARAM" && r.str("errcode") != "M_BAD_JSON") {
				t.Errorf("%s, body %v: %d %s; want 400 M_MISSING_PARAM (or M_BAD_JSON for an empty ID)", who, body, r.Status, r.Raw)
			}
		}
	}
	if after := e.deviceIDsOr(u); e.direct("GET", pgWhoAmI, u.AccessToken, nil).Status != 200 || !slices.Contains(after, phone) {
		t.Fatalf("devices were signed out: %v", after)
	}
}

// deviceIDsOr lists u's devices with a fresh direct login (nil when none).
func (e *env) deviceIDsOr(u *enrolled) []string {
	e.t.Helper()
	l, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		return nil
	}
	defer e.direct("POST", "/_matrix/client/v3/logout", l.AccessToken, map[string]any{})
	return e.deviceIDs(l.AccessToken)
}

// TestRTMOAuthPasswordSentence: what the page says of the other devices on
// a password change is what Dendrite does (logout_devices true, false,
// missing).
func TestRTMOAuthPasswordSentence(t *testing.T) {
	e := oauthEnv(t)
	const path = "/_matrix/client/v3/account/password"
	for i, c := range []struct {
		body     map[string]any
		signsOut bool
	}{
		{map[string]any{"new_password": "next pass phrase 1", "logout_devices": true}, true},
		{map[string]any{"new_password": "next pass phrase 2", "logout_devices": false}, false},
		{map[string]any{"new_password": "next pass phrase 3"}, true},
	} {
		u := e.enrol(fmt.Sprintf("rtpwsent%d", i))
		g := e.rtOAuthGrant(u, "RTPWDEV")
		phone := mustLogin(t, e, u)
		ch := e.gw("POST", path, g.access, c.body)
		expect(t, ch, 401, "")
		session, link := ch.str("session"), stageURL(t, ch)
		b := e.browser()
		_, p := e.approvePage(b, u, link)
		says := strings.Contains(p.Body, "and sign out your other devices")
		wantPage(t, b.post("action", "approve", "session", session, "password", u.Password, "code", e.code(u)), 200, "Approved")
		expect(t, e.gw("POST", path, g.access, rtWith(c.body, session)), 200, "")
		out := e.direct("GET", pgWhoAmI, phone, nil).Status == 401
		if says != out {
			t.Errorf("body %v: the page says other devices are signed out: %v; the phone was signed out: %v", c.body, says, out)
		}
		if e.direct("GET", pgWhoAmI, g.access, nil).Status != 200 {
			t.Errorf("body %v: the requesting OAuth device itself was signed out", c.body)
		}
	}
}

// TestRTAccountDeviceDetailsSharedID: two users with a device of the same
// ID: each sees only the details of their own.
func TestRTAccountDeviceDetailsSharedID(t *testing.T) {
	e := oauthEnv(t)
	alice, mallory := e.enrol("rtsharea"), e.enrol("rtsharem")
	for _, c := range []struct {
		u    *enrolled
		name string
	}{{alice, "alice-own-phone"}, {mallory, "mallory-secret-laptop"}} {
		r := e.direct("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": c.u.Localpart}, "password": c.u.Password,
			"device_id": "SHAREDDEV", "initial_device_display_name": c.name})
		expect(t, r, 200, "")
	}
	b := e.browser()
	wantPage(t, b.signIn(alice.User), 200, `name="code"`)
	wantPage(t, b.post("action", "code", "code", e.code(alice)), 200, `id="status"`)
	b.getQuery("action=org.matrix.device_view&device_id=SHAREDDEV")
	p := b.post("action", "device_details", "device_id", "SHAREDDEV", "password", alice.Password)
	wantPage(t, p, 200, "alice-own-phone")
	if strings.Contains(p.Body, "mallory-secret-laptop") {
		t.Fatal("Alice sees Mallory's device")
	}
}
