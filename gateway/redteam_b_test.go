package gateway_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/policy"
)

// Red team B: remember this browser, bot tokens, the account page's
// management actions and the m.oauth stage.

// TestRedTeamBBotTokenLimitRace: max_per_user (MaxBotTokens) is a
// check-then-insert in selfBotCreate with a slow homeserver login in
// between, so concurrent creations from one full session all pass the check.
func TestRedTeamBBotTokenLimitRace(t *testing.T) {
	e := rememberEnv(t) // MaxBotTokens = 2
	u := e.enrol("botrace")
	b := e.accountPage(u)
	csrf := b.last.csrf(t)

	const n = 8
	var wg sync.WaitGroup
	made := make([]bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{"action": {"bot-create"}, "name": {"race"}, "password": {u.Password}, "csrf": {csrf}}
			req, _ := http.NewRequest("POST", e.srv.URL+selfPath, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			hr, err := b.c.Do(req)
			if err != nil {
				return
			}
			raw, _ := io.ReadAll(hr.Body)
			hr.Body.Close()
			made[i] = hr.StatusCode == 200 && strings.Contains(string(raw), "Copy it now")
		}()
	}
	wg.Wait()
	shown := 0
	for _, ok := range made {
		if ok {
			shown++
		}
	}
	stored, err := e.db.BotTokens(context.Background(), string(u.UserID))
	if err != nil {
		t.Fatal(err)
	}
	if shown > 2 || len(stored) > 2 {
		t.Fatalf("max_per_user is 2, but %d concurrent creations succeeded (%d stored)", shown, len(stored))
	}
}

// TestRedTeamBBotTokenRevokeOther: another user's token ID cannot be
// revoked; a CSRF-less creation is refused.
func TestRedTeamBBotTokenRevokeOther(t *testing.T) {
	e := rememberEnv(t)
	alice, mallory := e.enrol("botalice"), e.enrol("botmallory")
	a := e.accountPage(alice)
	p := a.post("action", "bot-create", "name", "a", "password", alice.Password)
	wantPage(t, p, 200, "Copy it now")
	token := html.UnescapeString(reNewToken.FindStringSubmatch(p.Body)[1])
	id := html.UnescapeString(reRevokeID.FindStringSubmatch(a.get().Body)[1])

	m := e.accountPage(mallory)
	wantPage(t, m.post("action", "bot-revoke", "id", id), 404)
	wantPage(t, m.post("action", "bot-create", "name", "x", "password", mallory.Password, "csrf", "x"), 403)
	if r := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", token, nil); r.Status != 200 {
		t.Fatalf("alice's bot token after mallory's revoke: %d %s", r.Status, r.Raw)
	}
}

// TestRedTeamBRememberNeedsRightCode: the one-form path with a wrong code
// and "remember" sets no cookie; a remembered login does not renew it; a
// cookie of one user does not skip the code for another.
func TestRedTeamBRememberNeedsRightCode(t *testing.T) {
	e := rememberEnv(t)
	u, v := e.enrol("rememberu"), e.enrol("rememberv")
	page := ssoPage(ssoAllowed)

	c := e.pgClient()
	get := c.get(page)
	p := c.post(page, "csrf", get.hidden("csrf"), "step", "credentials", "confirm", get.hidden("confirm"),
		"username", u.Localpart, "password", u.Password, "code", e.wrongCode(u), "remember", "1")
	if strings.Contains(strings.Join(p.Header["Set-Cookie"], "\n"), rememberCookieName) {
		t.Fatalf("a wrong code in the one-form path set the remember cookie: %v", p.Header["Set-Cookie"])
	}
	if !e.ssoAsksCode(c, u) {
		t.Fatal("remembered after a wrong code")
	}

	c = e.pgClient()
	e.ssoRemember(c, u)
	get = c.get(page)
	p = c.post(page, "csrf", get.hidden("csrf"), "step", "credentials", "confirm", get.hidden("confirm"),
		"username", u.Localpart, "password", u.Password, "remember", "1")
	if strings.Contains(strings.Join(p.Header["Set-Cookie"], "\n"), rememberCookieName) {
		t.Fatalf("a remembered login renewed the cookie: %v", p.Header["Set-Cookie"])
	}
	e.ssoSignedIn(p)
	if !e.ssoAsksCode(c, v) {
		t.Fatal("u's remember cookie skipped v's code")
	}
	// /login with the cookie still needs the code.
	r := e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	if r.Status == 200 && r.str("access_token") != "" {
		t.Fatalf("/login without a code: %d %s", r.Status, r.Raw)
	}
}

// TestRedTeamBXSignApproveOtherUser: a signed-in user cannot approve
// another user's m.oauth session (nor with a wrong code their own).
func TestRedTeamBXSignApproveOtherUser(t *testing.T) {
	e := oauthEnv(t)
	victim, mallory := e.enrol("xsvictim"), e.enrol("xsmallory")
	at := e.oauthToken(victim, "XSVICTIM01")
	expect(t, e.gw("POST", xsignUpload, at, map[string]any{"master_key": masterKey(victim.UserID)}), 200, "")
	body := map[string]any{"master_key": masterKey(victim.UserID)}
	ch := e.gw("POST", xsignUpload, at, body)
	expect(t, ch, 401, "")
	session := ch.str("session")

	m := e.accountPage(mallory)
	m.getQuery(url.Values{"action": {"org.matrix.cross_signing_reset"}, "session": {session}}.Encode())
	wantPage(t, m.post("action", "xsign_approve", "session", session, "password", mallory.Password, "code", e.code(mallory)), 400)
	body["auth"] = map[string]any{"session": session}
	expect(t, e.gw("POST", xsignUpload, at, body), 401, "")
}

// redteamEnv is rememberEnv with the gateway logging to out at trace level
// and its homeserver behind a proxy that records every Cookie header it is
// sent.
func redteamEnv(t *testing.T, out io.Writer) (*env, func() []string) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(logrus.TraceLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	real := tesths.Dendrite(t)
	target, _ := url.Parse(real.URL)
	var mu sync.Mutex
	var cookies []string
	rp := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Values("Cookie"); len(c) > 0 {
			mu.Lock()
			cookies = append(cookies, r.URL.Path+": "+strings.Join(c, "; "))
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	e := newEnvLogged(t, &dendrite.Server{URL: front.URL, ServerName: real.ServerName}, log, func(g *gatewayConfig, _ *accountConfig) {
		g.RedirectAllowlist = []string{ssoAllowed}
		g.RememberTTL = 720 * time.Hour
		g.MaxBotTokens = 2
	})
	e.hs = real
	return e, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), cookies...) }
}

// TestRedTeamBRememberCookieNotUpstream: the remember cookie (Path
// /_matrix/client/) is a 30-day stand-in for the second factor; the gateway
// must not hand it to the homeserver with every proxied client request.
func TestRedTeamBRememberCookieNotUpstream(t *testing.T) {
	e, upstream := redteamEnv(t, io.Discard)
	u := e.enrol("cookieup")
	c := e.pgClient()
	cookie := e.ssoRemember(c, u)
	c.get("/_matrix/client/v3/capabilities")
	c.get("/_matrix/client/versions")
	for _, h := range upstream() {
		if strings.Contains(h, cookie.Value) {
			t.Fatalf("the homeserver was sent the remember cookie: %s", h)
		}
	}
}

// TestRedTeamBSecretsNotLogged: the bot token and the remember cookie are
// not in the gateway's log (trace level).
func TestRedTeamBSecretsNotLogged(t *testing.T) {
	out := &lockedBuffer{}
	e, _ := redteamEnv(t, out)
	u := e.enrol("logsecrets")
	cookie := e.ssoRemember(e.pgClient(), u)
	b := e.accountPage(u)
	p := b.post("action", "bot-create", "name", "logged", "password", u.Password)
	wantPage(t, p, 200, "Copy it now")
	token := html.UnescapeString(reNewToken.FindStringSubmatch(p.Body)[1])
	id := html.UnescapeString(reRevokeID.FindStringSubmatch(b.get().Body)[1])
	wantPage(t, b.post("action", "bot-revoke", "id", id), 200, "was revoked")
	log := out.String()
	for name, s := range map[string]string{"bot token": token, "remember cookie": cookie.Value, "password": u.Password} {
		if strings.Contains(log, s) {
			t.Errorf("the log holds the %s", name)
		}
	}
	if p.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the page with the new token is cacheable: %q", p.Header.Get("Cache-Control"))
	}
}

// TestRedTeamBEnrolContinueWithoutCode: under an enforced policy, a sign-in
// held at the enrolment step is released by "continue" as soon as the user
// has 2FA on, whoever turned it on: an attacker with the password alone
// parks a sign-in at the enrolment step, the user enrols (anywhere), and the
// attacker's "continue" yields a login for a 2FA user without any code.
func TestRedTeamBEnrolContinueWithoutCode(t *testing.T) {
	ctx := context.Background()
	e := policyEnv(t, policy.Config{Enforce: policy.ModeAll})
	page := ssoPage(ssoAllowed)
	for i, c := range []struct {
		step       string
		afterGrace bool
	}{{"continue", true}, {"skip", true}, {"continue", false}, {"skip", false}} {
		victim := tesths.RegisterUser(t, e.hs, fmt.Sprintf("polvictim%d", i))
		pgWant(t, e.pgClient().ssoCredentials(page, victim.UserID, victim.Password), 200, `id="skip"`) // the grace period starts
		if c.afterGrace {
			e.clock.Add(polGrace + time.Hour)
		}
		// The attacker, with the password only, parks a sign-in at enrolment.
		attacker := e.pgClient()
		held := attacker.ssoCredentials(page, victim.Localpart, victim.Password)
		pgWant(t, held, 200, `id="qr"`)

		// The victim turns 2FA on (here through the account service, as the
		// self-service page or their own sign-in page would).
		uid := string(victim.UserID)
		if _, err := e.acc.Enrol(ctx, uid); err != nil {
			t.Fatal(err)
		}
		p, _ := e.db.Pending(ctx, uid)
		secret, _ := e.opts.Box.Open(uid, p.KeyID, p.Secret)
		if _, err := e.acc.Confirm(ctx, uid, e.code(&enrolled{secret: secret})); err != nil {
			t.Fatal(err)
		}

		done := attacker.post(page, "csrf", held.hidden("csrf"), "step", c.step, "session", held.hidden("session"))
		if done.Status == http.StatusFound {
			r := e.ssoRedeem(ssoToken(t, done, ssoAllowed), "")
			t.Errorf("%q (after the grace: %v) on a sign-in that never enrolled nor gave a code released the login (%d): %s",
				c.step, c.afterGrace, r.Status, r.Raw)
		}
		if c.afterGrace {
			e.clock.Add(-(polGrace + time.Hour))
		}
	}
}

// TestRedTeamBStepUpCodeReuse: the code that signed the account page in
// does not also deactivate the account; a legacy token's cross-signing UIA
// session (2FA stage in front) cannot be approved on the page.
func TestRedTeamBStepUpCodeReuse(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("reusecode")
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	used := e.code(u)
	wantPage(t, b.post("action", "code", "code", used), 200, `id="status"`)
	const view = "action=org.matrix.account_deactivate"
	b.getQuery(view)
	wantPage(t, b.post("action", "deactivate", "password", u.Password, "code", used), 403)
	if _, err := e.hs.Login(context.Background(), u.Localpart, u.Password); err != nil {
		t.Fatalf("deactivated with a reused code: %v", err)
	}

	expect(t, e.gw("POST", xsignUpload, u.AccessToken, map[string]any{"master_key": masterKey(u.UserID)}), 200, "")
	ch := e.gw("POST", xsignUpload, u.AccessToken, map[string]any{"master_key": masterKey(u.UserID)})
	expect(t, ch, 401, "")
	b.getQuery(url.Values{"action": {"org.matrix.cross_signing_reset"}, "session": {ch.str("session")}}.Encode())
	wantPage(t, b.post("action", "xsign_approve", "session", ch.str("session"), "password", u.Password, "code", e.code(u)), 400)
}
