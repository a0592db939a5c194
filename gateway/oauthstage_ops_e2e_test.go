package gateway_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/oauth"
)

// The m.oauth stage on every guarded operation (not only the reset): a 2FA
// user's OAuth token gets the one m.oauth flow; the account page says what
// is approved and approves it with the password and a code; the retry
// completes exactly once, and only for the very request the session began
// with.

// stageURL is the m.oauth url of challenge ch.
func stageURL(t *testing.T, ch resp) string {
	t.Helper()
	if !strings.Contains(string(ch.Raw), `"flows":[{"stages":["m.oauth"]}]`) {
		t.Fatalf("challenge: %s", ch.Raw)
	}
	params, _ := ch.Body["params"].(map[string]any)
	stage, _ := params[oauth.StageOAuth].(map[string]any)
	link, _ := stage["url"].(string)
	return link
}

// approvePage signs b in on the approval page of link and returns the
// query to come back to.
func (e *env) approvePage(b *webUser, u *enrolled, link string) (query string, p webPage) {
	e.t.Helper()
	query = strings.TrimPrefix(link, oauthIssuer+selfPath+"?")
	wantPage(e.t, b.getQuery(query), 200, `name="next"`)
	b.post("action", "signin", "username", u.Localpart, "password", u.Password, "next", query)
	return query, b.post("action", "code", "code", e.code(u))
}

type oauthOp struct {
	name         string
	method, path string
	body         map[string]any
	// otherPath, otherBody: a request the approved session must not complete.
	otherPath string
	otherBody map[string]any
	sentence  string
	done      func() bool
}

func TestOAuthStageOperations(t *testing.T) {
	e := oauthEnv(t)
	ctx := context.Background()
	cases := []func(u *enrolled) oauthOp{
		func(u *enrolled) oauthOp {
			other, err := e.hs.Login(ctx, u.Localpart, u.Password)
			if err != nil {
				t.Fatal(err)
			}
			return oauthOp{name: "delete_devices", method: "POST", path: "/_matrix/client/v3/delete_devices",
				body: map[string]any{"devices": []string{other.DeviceID}}, otherBody: map[string]any{"devices": []string{u.DeviceID}},
				sentence: "sign out the device “" + other.DeviceID + "”",
				done:     func() bool { return e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status == 401 }}
		},
		func(u *enrolled) oauthOp {
			other, err := e.hs.Login(ctx, u.Localpart, u.Password)
			if err != nil {
				t.Fatal(err)
			}
			return oauthOp{name: "delete_device", method: "DELETE", path: "/_matrix/client/v3/devices/" + other.DeviceID,
				body: map[string]any{}, otherPath: "/_matrix/client/v3/devices/" + u.DeviceID, otherBody: map[string]any{},
				sentence: "sign out the device “" + other.DeviceID + "”",
				done:     func() bool { return e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status == 401 }}
		},
		func(u *enrolled) oauthOp {
			return oauthOp{name: "deactivate", method: "POST", path: "/_matrix/client/v3/account/deactivate",
				body: map[string]any{"erase": false}, otherBody: map[string]any{"erase": true},
				sentence: "deactivate your account, for good",
				done: func() bool {
					_, err := e.hs.Login(ctx, u.Localpart, u.Password)
					return err != nil
				}}
		},
		func(u *enrolled) oauthOp {
			const next = "the new pass phrase 7"
			return oauthOp{name: "password", method: "POST", path: "/_matrix/client/v3/account/password",
				body:      map[string]any{"new_password": next, "logout_devices": false},
				otherBody: map[string]any{"new_password": "another pass phrase", "logout_devices": false},
				sentence:  "change your password (your other devices stay signed in)",
				done: func() bool {
					_, err := e.hs.Login(ctx, u.Localpart, next)
					return err == nil
				}}
		},
	}
	for i, mk := range cases {
		u := e.enrol("oauthop" + string(rune('a'+i)))
		at := e.oauthToken(u, "OAUTHOPDEV"+string(rune('A'+i)))
		op := mk(u)
		t.Run(op.name, func(t *testing.T) { e.runOAuthOp(t, u, at, op) })
	}
}

func (e *env) runOAuthOp(t *testing.T, u *enrolled, at string, op oauthOp) {
	ch := e.gw(op.method, op.path, at, op.body)
	expect(t, ch, 401, "")
	session := ch.str("session")
	link := stageURL(t, ch)
	want := oauthIssuer + "/_matrix2fa/?action=org.matrix2fa.approve&session=" + url.QueryEscape(session)
	if link != want {
		t.Fatalf("m.oauth url %q; want %q", link, want)
	}
	withAuth := func(body, auth map[string]any) map[string]any {
		out := map[string]any{"auth": auth}
		for k, v := range body {
			out[k] = v
		}
		return out
	}
	withSession := func(body map[string]any) map[string]any { return withAuth(body, map[string]any{"session": session}) }
	retry := func() resp { return e.gw(op.method, op.path, at, withSession(op.body)) }
	expect(t, retry(), 401, "")
	// A password stage sent by the client itself does not get past m.oauth.
	expect(t, e.gw(op.method, op.path, at, withAuth(op.body, passwordAuth(u.User, session))), 401, "")

	b := e.browser()
	query, p := e.approvePage(b, u, link)
	wantPage(t, p, 200, `id="view-approve"`, `id="approve-what">`+op.sentence+`<`, `name="session" value="`+session+`"`)
	for _, bad := range [][]string{
		{"password", u.Password},                         // no code: 400
		{"password", u.Password, "code", e.wrongCode(u)}, // wrong code
		{"password", "wrong", "code", e.peekCode(u, 0)},  // wrong password
	} {
		b.getQuery(query)
		form := append([]string{"action", "approve", "session", session}, bad...)
		if p := b.post(form...); p.Status == 200 {
			t.Fatalf("approval %v: %d", bad, p.Status)
		}
	}
	b.getQuery(query)
	wantPage(t, b.post("action", "approve", "session", "unknown"+session, "password", u.Password, "code", e.peekCode(u, 0)), 400, "unknown")
	expect(t, retry(), 401, "")
	if op.done() {
		t.Fatal("done without the approval")
	}
	b.getQuery(query)
	wantPage(t, b.post("action", "approve", "session", session, "password", u.Password, "code", e.code(u)), 200, "Approved: "+op.sentence)

	otherPath := op.otherPath
	if otherPath == "" {
		otherPath = op.path
	}
	other := e.gw(op.method, otherPath, at, withSession(op.otherBody))
	if other.Status != 403 {
		t.Fatalf("another request with the approved session: %d %s", other.Status, other.Raw)
	}
	expect(t, retry(), 200, "")
	if !op.done() {
		t.Fatal("not done after the approved retry")
	}
	if r := retry(); r.Status == 200 {
		t.Fatal("the approved session worked twice")
	}
	// A token not from the OAuth API keeps the 2FA stage in front.
	if op.name == "deactivate" {
		return
	}
	legacy := e.gw(op.method, op.path, u.AccessToken, op.body)
	if legacy.Status != 401 || strings.Contains(string(legacy.Raw), "m.oauth") {
		t.Fatalf("legacy token: %d %s", legacy.Status, legacy.Raw)
	}
}

// TestOAuthStageRedTeam: an approval is for one operation of one client of
// one user. The page refuses another user's session; an approved session
// completes no other endpoint, no other user's request and no other
// client's (even the same user's); the password alone approves nothing.
func TestOAuthStageRedTeam(t *testing.T) {
	e := oauthEnv(t)
	ctx := context.Background()
	alice, mallory := e.enrol("rtalice"), e.enrol("rtmallory")
	aliceAT, malloryAT := e.oauthToken(alice, "RTALICEDEV"), e.oauthToken(mallory, "RTMALDEV")
	aliceOtherAT := e.oauthToken(alice, "RTALICEDEV2") // another OAuth client of Alice's
	other, err := e.hs.Login(ctx, alice.Localpart, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	const deletePath = "/_matrix/client/v3/delete_devices"
	body := map[string]any{"devices": []string{other.DeviceID}}
	ch := e.gw("POST", deletePath, aliceAT, body)
	expect(t, ch, 401, "")
	session, link := ch.str("session"), stageURL(t, ch)
	query := strings.TrimPrefix(link, oauthIssuer+selfPath+"?")

	// Mallory, signed in on the page with her own password and code, can
	// neither see nor approve Alice's session.
	mb := e.browser()
	_, p := e.approvePage(mb, mallory, link)
	wantPage(t, p, 400, "unknown")
	wantPage(t, mb.post("action", "approve", "session", session, "password", mallory.Password, "code", e.code(mallory)), 400, "unknown")

	// Someone with Alice's password but no code is stuck at the page's sign-in.
	pb := e.browser()
	pb.getQuery(query)
	p = pb.post("action", "signin", "username", alice.Localpart, "password", alice.Password, "next", query)
	wantPage(t, p, 200, `name="code"`)
	for _, code := range []string{"", e.wrongCode(alice)} {
		if p := pb.post("action", "approve", "session", session, "password", alice.Password, "code", code); p.Status == 200 {
			t.Fatalf("approved before the page's code (code %q): %s", code, p.Body)
		}
	}
	expect(t, e.gw("POST", deletePath, aliceAT, map[string]any{"devices": []string{other.DeviceID}, "auth": map[string]any{"session": session}}), 401, "")

	// Alice approves.
	ab := e.browser()
	_, p = e.approvePage(ab, alice, link)
	wantPage(t, p, 200, `id="view-approve"`)
	wantPage(t, ab.post("action", "approve", "session", session, "password", alice.Password, "code", e.code(alice)), 200, "Approved")

	withSession := map[string]any{"auth": map[string]any{"session": session}}
	// The approved session on another endpoint (deactivate, the reset, the
	// single-device delete) and with Mallory's token: refused, nothing done.
	for _, c := range []struct {
		name, method, path, token string
		body                      map[string]any
	}{
		{"deactivate", "POST", "/_matrix/client/v3/account/deactivate", aliceAT, map[string]any{"erase": false}},
		{"password", "POST", "/_matrix/client/v3/account/password", aliceAT, map[string]any{"new_password": "x"}},
		{"device", "DELETE", "/_matrix/client/v3/devices/" + other.DeviceID, aliceAT, map[string]any{}},
		{"other prefix", "POST", "/_matrix/client/r0/delete_devices", aliceAT, body},
		{"mallory", "POST", deletePath, malloryAT, body},
		{"another client of the same user", "POST", deletePath, aliceOtherAT, body},
		{"a legacy token of the same user", "POST", deletePath, alice.AccessToken, body},
	} {
		b := map[string]any{}
		for k, v := range c.body {
			b[k] = v
		}
		b["auth"] = withSession["auth"]
		if r := e.gw(c.method, c.path, c.token, b); r.Status == 200 {
			t.Fatalf("%s: the approved session completed %s %s: %s", c.name, c.method, c.path, r.Raw)
		}
	}
	if _, err := e.hs.Login(ctx, alice.Localpart, alice.Password); err != nil {
		t.Fatalf("Alice's account changed: %v", err)
	}
	if e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status != 200 {
		t.Fatal("the device went before the approved request")
	}
	// The approved request itself still completes, once.
	body["auth"] = withSession["auth"]
	expect(t, e.gw("POST", deletePath, aliceAT, body), 200, "")
	if e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status != 401 {
		t.Fatal("the device survived the approved request")
	}
}

// TestBrowserOAuthApproval runs tests/browser/approve.mjs: a device sign-out
// asked with an OAuth token, its m.oauth url opened in headless Chromium,
// the device's details shown, the sentence read and the operation approved
// with the password and a code; the client's retry then signs the device out.
func TestBrowserOAuthApproval(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("approvebrowser")
	at := e.oauthToken(u, "APPROVEDEV1")
	other, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"devices": []string{other.DeviceID}}
	ch := e.gw("POST", "/_matrix/client/v3/delete_devices", at, body)
	expect(t, ch, 401, "")
	runBrowser(t, "approve.mjs", e.browserVars(nil, map[string]string{
		"ISSUER": oauthIssuer, "APPROVE_URL": stageURL(t, ch), "APPROVE_WHAT": "sign out the device “" + other.DeviceID + "”",
		"USERNAME": u.Localpart, "PASSWORD": u.Password, "DEVICE_ID": other.DeviceID, "DEVICE_NAME": "matrix-2fa harness",
		"CODE_SIGNIN": e.peekCode(u, 0), "CODE_APPROVE": e.peekCode(u, 1),
	}))
	body["auth"] = map[string]any{"session": ch.str("session")}
	expect(t, e.gw("POST", "/_matrix/client/v3/delete_devices", at, body), 200, "")
	if e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status != 401 {
		t.Fatal("the device survived the approved request")
	}
}

// TestOAuthStageOwnUIAAndTokens: the deprecated POST /account/3pid (which
// the gateway guards with its own UIA) gets m.oauth without reaching the
// homeserver before the approval, and after it goes once without auth; the
// 3PID and login-token requests name themselves on the page.
func TestOAuthStageOwnUIAAndTokens(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("ownuiaop")
	at := e.oauthToken(u, "OWNUIADEV1")
	const path = "/_matrix/client/v3/account/3pid"
	body := map[string]any{"three_pid_creds": map[string]any{"sid": "s", "client_secret": "c"}}
	ch := e.gw("POST", path, at, body)
	expect(t, ch, 401, "")
	session, link := ch.str("session"), stageURL(t, ch)
	if !strings.Contains(link, "action=org.matrix2fa.approve&") {
		t.Fatalf("m.oauth url %q", link)
	}
	b := e.browser()
	_, p := e.approvePage(b, u, link)
	wantPage(t, p, 200, `id="approve-what">add an email address or phone number to your account<`)
	wantPage(t, b.post("action", "approve", "session", session, "password", u.Password, "code", e.code(u)), 200, "Approved")
	body["auth"] = map[string]any{"session": session}
	first := e.gw("POST", path, at, body)
	if first.Status == 401 && strings.Contains(string(first.Raw), "m.oauth") {
		t.Fatalf("after the approval: %d %s", first.Status, first.Raw)
	}
	if again := e.gw("POST", path, at, body); again.Status == 200 || strings.Contains(string(again.Raw), `"completed":["m.oauth"]`) {
		t.Fatalf("the approved session again: %d %s", again.Status, again.Raw)
	}

	// 3pid/add asks the homeserver first; the login token, where the homeserver serves it.
	for _, c := range []struct{ path, what string }{
		{"/_matrix/client/v3/account/3pid/add", "add an email address or phone number to your account"},
		{"/_matrix/client/v1/login/get_token", "sign in another device with a one-time login token"},
	} {
		r := e.gw("POST", c.path, at, map[string]any{"sid": "s", "client_secret": "c"})
		if r.Status != 401 {
			t.Logf("%s: the homeserver answered %d without UIA (%s): passed on", c.path, r.Status, r.Raw)
			continue
		}
		b := e.browser()
		_, p := e.approvePage(b, u, stageURL(t, r))
		wantPage(t, p, 200, `id="approve-what">`+c.what)
	}
}
