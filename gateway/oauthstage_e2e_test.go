package gateway_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/oauth"
)

// The m.oauth UIA stage (MSC4312): a 2FA user's cross-signing reset from a
// client with an OAuth token completes through the account page's approval
// (password and code), and never without the code.

const xsignUpload = "/_matrix/client/v3/keys/device_signing/upload"

// oauthToken runs the code flow for an enrolled user and returns the
// access token.
func (e *env) oauthToken(u *enrolled, device string) string {
	e.t.Helper()
	client := e.registerClient(webClient())
	p := newPKCE("xsign-verifier-")
	page := authorizeURL(client, "https://app.example/cb", device, "s", p, "")
	c := e.pgClient()
	params := redirectParams(e.t, c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u)), "https://app.example/cb?")
	tok := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier)
	if tok.Status != 200 {
		e.t.Fatalf("token: %d %s", tok.Status, tok.Raw)
	}
	return tok.str("access_token")
}

func TestOAuthStageCrossSigningReset(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("xsignuser")
	at := e.oauthToken(u, "XSIGNDEV01")
	first := masterKey(u.UserID)
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": first}), 200, "")

	second := masterKey(u.UserID)
	body := map[string]any{"master_key": second}
	ch := e.gw("POST", xsignUpload, at, body)
	expect(t, ch, 401, "")
	session := ch.str("session")
	if !strings.Contains(string(ch.Raw), `"flows":[{"stages":["m.oauth"]}]`) {
		t.Fatalf("challenge: %s", ch.Raw)
	}
	params, _ := ch.Body["params"].(map[string]any)
	stage, _ := params[oauth.StageOAuth].(map[string]any)
	link, _ := stage["url"].(string)
	want := oauthIssuer + "/_matrix2fa/?action=org.matrix.cross_signing_reset&session=" + url.QueryEscape(session)
	if link != want {
		t.Fatalf("m.oauth url %q; want %q", link, want)
	}
	retry := func() resp {
		return e.gw("POST", xsignUpload, at, map[string]any{"master_key": second, "auth": map[string]any{"session": session}})
	}
	expect(t, retry(), 401, "")
	// A password stage sent by the client itself does not get past m.oauth.
	pw := map[string]any{"type": "m.login.password", "session": session, "password": u.Password,
		"identifier": map[string]any{"type": "m.id.user", "user": u.UserID}}
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": second, "auth": pw}), 401, "")

	// The approval page: signing in keeps the action and the session.
	b := e.browser()
	query := strings.TrimPrefix(link, oauthIssuer+selfPath+"?")
	wantPage(t, b.getQuery(query), 200, `name="next"`)
	b.post("action", "signin", "username", u.Localpart, "password", u.Password, "next", query)
	p := b.post("action", "code", "code", e.code(u))
	wantPage(t, p, 200, `id="view-xsign"`, `name="session" value="`+session+`"`)
	wantPage(t, b.post("action", "xsign_approve", "session", session, "password", u.Password), 400)
	b.getQuery(query)
	wantPage(t, b.post("action", "xsign_approve", "session", session, "password", u.Password, "code", e.wrongCode(u)), 403)
	b.getQuery(query)
	wantPage(t, b.post("action", "xsign_approve", "session", session, "password", "wrong", "code", e.peekCode(u, 0)), 403)
	expect(t, retry(), 401, "")
	if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(first) {
		t.Fatalf("the keys changed without the code: %s", got)
	}
	b.getQuery(query)
	wantPage(t, b.post("action", "xsign_approve", "session", session, "password", u.Password, "code", e.code(u)), 200, "Reset allowed")

	// Another body with the approved session is refused; the same one completes, once.
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": masterKey(u.UserID), "auth": map[string]any{"session": session}}), 403, "M_FORBIDDEN")
	expect(t, retry(), 200, "")
	if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(second) {
		t.Fatalf("master key after the approved reset: %s", got)
	}
	if r := retry(); r.Status == 200 {
		t.Fatal("the approved session worked twice")
	}
	// A token not from the OAuth API keeps the 2FA stage in front of the password.
	legacy := e.gw("POST", xsignUpload, u.AccessToken, map[string]any{"master_key": masterKey(u.UserID)})
	if legacy.Status != 401 || strings.Contains(string(legacy.Raw), "m.oauth") {
		t.Fatalf("legacy token: %d %s", legacy.Status, legacy.Raw)
	}
}

// TestBrowserOAuthStage runs tests/browser/xsign.mjs: the m.oauth stage's
// URL opened in headless Chromium, signed in and approved with the password
// and a code; the client's retry then completes the reset.
func TestBrowserOAuthStage(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("xsignbrowser")
	at := e.oauthToken(u, "XSIGNDEV02")
	first, second := masterKey(u.UserID), masterKey(u.UserID)
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": first}), 200, "")
	ch := e.gw("POST", xsignUpload, at, map[string]any{"master_key": second})
	expect(t, ch, 401, "")
	session := ch.str("session")
	params, _ := ch.Body["params"].(map[string]any)
	stage, _ := params[oauth.StageOAuth].(map[string]any)
	link, _ := stage["url"].(string)
	runBrowser(t, "xsign.mjs", e.browserVars(nil, map[string]string{
		"ISSUER": oauthIssuer, "XSIGN_URL": link, "USERNAME": u.Localpart, "PASSWORD": u.Password,
		"CODE_SIGNIN": e.peekCode(u, 0), "CODE_APPROVE": e.peekCode(u, 1),
	}))
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": second, "auth": map[string]any{"session": session}}), 200, "")
	if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(second) {
		t.Fatalf("master key after the approved reset: %s", got)
	}
}
