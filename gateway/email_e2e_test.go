package gateway_test

import (
	"database/sql"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/notify"
)

// addVerifiedEmail gives a Dendrite user a verified e-mail 3PID, written into
// Dendrite's own database (the test homeserver sends no mail itself).
func addVerifiedEmail(t *testing.T, hs *dendrite.Server, localpart, address string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(hs.Dir, "dendrite_userapi.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO userapi_threepids (threepid, medium, localpart, server_name) VALUES (?, 'email', ?, ?)`,
		address, localpart, hs.ServerName); err != nil {
		t.Fatalf("adding %s to Dendrite: %v", address, err)
	}
}

var mailedCode = regexp.MustCompile(`\b[0-9]{6}\b`)

// TestEmailCodeLogin: a user with a verified address gets the e-mail stage
// on /login; asking for a code mails one (read from the real SMTP server);
// the code logs in once; a second code within the minute is refused; wrong
// codes count toward the same lockout as TOTP (that only a MAC of the code is
// stored is checked in account's tests, on the raw database file).
func TestEmailCodeLogin(t *testing.T) {
	smtp := smtptest.Start(t)
	mailer, err := notify.NewMailer(notify.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: notify.TLSNone, From: "2fa@localhost"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.withMailer(mailer)
	u := e.enrol("mailed")
	addVerifiedEmail(t, e.hs, u.Localpart, "mailed@example.org")

	login := func() resp {
		t.Helper()
		r := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password))
		expect(t, r, 401, "")
		return r
	}
	r := login()
	if !slices.ContainsFunc(r.flows(), func(f []string) bool { return slices.Equal(f, []string{"m.login.password", "m.login.2fa.email"}) }) {
		t.Fatalf("no e-mail flow for a user with a verified address: %s", r.Raw)
	}
	s := r.str("session")
	ask := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s}})
	expect(t, ask, 401, "M_UNAUTHORIZED")
	if !strings.Contains(ask.str("error"), "m***@example.org") {
		t.Fatalf("the answer does not say where the code went: %s", ask.Raw)
	}
	mail := smtp.WaitFor(t, "mailed@example.org", 10*time.Second)
	code := mailedCode.FindString(mail.Text)
	if code == "" {
		t.Fatalf("no code in the mail: %q", mail.Text)
	}
	if again := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s}}); again.str("errcode") != "M_LIMIT_EXCEEDED" {
		t.Fatalf("a second code within the minute: %s", again.Raw)
	}
	wrong := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s, "code": "000000"}})
	expect(t, wrong, 401, "M_FORBIDDEN")
	ok := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s, "code": code}})
	expect(t, ok, 200, "")
	if ok.str("access_token") == "" {
		t.Fatalf("login with the e-mail code: %s", ok.Raw)
	}
	// The code is used up: a new login cannot use it again.
	s2 := login().str("session")
	replay := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s2, "code": code}})
	expect(t, replay, 401, "M_FORBIDDEN")
	// Lockout shared with TOTP: the failures so far plus wrong TOTP codes
	// reach the limit, and then even a right TOTP code is refused.
	for i := 0; i < 5; i++ {
		e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": s2, "code": e.wrongCode(u)}})
	}
	s3 := login().str("session") // the locked-out login was dropped
	locked := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": s3, "code": e.code(u)}})
	if locked.Status != 429 || locked.str("errcode") != "M_LIMIT_EXCEEDED" {
		t.Fatalf("after wrong e-mail and TOTP codes: %s", locked.Raw)
	}
}

// TestEmailCodeNotOffered: without SMTP, or without a verified address, no
// e-mail flow is offered and asking for a code is refused.
func TestEmailCodeNotOffered(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("unmailed")
	r := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password))
	for _, f := range r.flows() {
		if slices.Contains(f, "m.login.2fa.email") {
			t.Fatalf("e-mail flow offered without SMTP: %s", r.Raw)
		}
	}
	ask := e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": r.str("session")}})
	if ask.Status == 200 || ask.str("access_token") != "" {
		t.Fatalf("e-mail stage without a flow: %s", ask.Raw)
	}
}

// TestEmailCodeFallbackPage: a client that does not know the e-mail stage
// opens its fallback page: "E-mail me a code" mails one, the code completes
// the stage, and the client's resumed request with the password deletes the
// device.
func TestEmailCodeFallbackPage(t *testing.T) {
	smtp := smtptest.Start(t)
	mailer, err := notify.NewMailer(notify.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: notify.TLSNone, From: "2fa@localhost"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.withMailer(mailer)
	u := e.enrol("mailpage")
	addVerifiedEmail(t, e.hs, u.Localpart, "mailpage@example.org")
	dev := e.newDevice(u)
	body := map[string]any{"devices": []string{dev}}
	ch := e.gw("POST", pgDeleteDevices, u.AccessToken, body)
	expect(t, ch, 401, "")
	s := ch.str("session")
	page := pgSession("/_matrix/client/v3/auth/m.login.2fa.email/fallback/web", s)
	c := e.pgClient()
	get := c.get(page)
	pgWant(t, get, 200, "E-mail me a code", `name="code"`)
	sent := c.post(page, "csrf", get.hidden("csrf"), "send", "1")
	pgWant(t, sent, 200, "A code was sent to m***@example.org")
	code := mailedCode.FindString(smtp.WaitFor(t, "mailpage@example.org", 10*time.Second).Text)
	if code == "" {
		t.Fatal("no code in the mail")
	}
	pgWant(t, c.post(page, "csrf", get.hidden("csrf"), "code", "000000"), 403, "Invalid code")
	pgCheckDone(t, c.post(page, "csrf", get.hidden("csrf"), "code", code))
	body["auth"] = passwordAuth(u.User, s)
	expect(t, e.gw("POST", pgDeleteDevices, u.AccessToken, body), 200, "")
	if slices.Contains(e.deviceIDs(u.AccessToken), dev) {
		t.Fatal("device still there")
	}
}

// TestEmailCodeSignInPage: on "Sign in with 2FA", a user with a verified
// address can have a code mailed instead of using the authenticator; that
// code signs in (once) and the login token works.
func TestEmailCodeSignInPage(t *testing.T) {
	smtp := smtptest.Start(t)
	mailer, err := notify.NewMailer(notify.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: notify.TLSNone, From: "2fa@localhost"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	e := ssoEnv(t)
	e.withMailer(mailer)
	u := e.enrol("mailsignin")
	addVerifiedEmail(t, e.hs, u.Localpart, "mailsignin@example.org")
	page := ssoPage(ssoAllowed)
	c := e.pgClient()
	codePage := c.ssoCredentials(page, u.Localpart, u.Password)
	pgWant(t, codePage, 200, "E-mail me a code instead")
	sent := c.post(page, "csrf", codePage.hidden("csrf"), "step", "code", "session", codePage.hidden("session"),
		"confirm", codePage.hidden("confirm"), "send", "1")
	pgWant(t, sent, 200, "A code was sent to m***@example.org", `name="method" value="email"`)
	code := mailedCode.FindString(smtp.WaitFor(t, "mailsignin@example.org", 10*time.Second).Text)
	if code == "" {
		t.Fatal("no code in the mail")
	}
	done := c.post(page, "csrf", sent.hidden("csrf"), "step", "code", "session", sent.hidden("session"),
		"confirm", sent.hidden("confirm"), "method", "email", "code", code)
	tok := ssoToken(t, done, ssoAllowed+"?loginToken=")
	if r := e.ssoRedeem(tok, "Phone"); r.Status != 200 || r.str("user_id") != u.UserID {
		t.Fatalf("redeeming the login token: %d %s", r.Status, r.Raw)
	}
}

// TestEmailCodeNotInLogs: with everything logging at trace level, an e-mail
// code that is sent, refused and then used never appears in the log (nor the
// address in full).
func TestEmailCodeNotInLogs(t *testing.T) {
	smtp := smtptest.Start(t)
	mailer, err := notify.NewMailer(notify.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: notify.TLSNone, From: "2fa@localhost"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(logrus.TraceLevel)
	e := newEnvLogged(t, tesths.Dendrite(t), log)
	e.withMailer(mailer)
	u := e.enrol("mailedquiet")
	addVerifiedEmail(t, e.hs, u.Localpart, "mailedquiet@example.org")
	s := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password)).str("session")
	e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s}})
	code := mailedCode.FindString(smtp.WaitFor(t, "mailedquiet@example.org", 10*time.Second).Text)
	if code == "" {
		t.Fatal("no code in the mail")
	}
	e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s, "code": "000000"}})
	expect(t, e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s, "code": code}}), 200, "")
	logged := out.String()
	if !strings.Contains(logged, u.UserID) {
		t.Fatal("the log was not captured")
	}
	if strings.Contains(logged, code) || strings.Contains(logged, "mailedquiet@example.org") {
		t.Fatal("the e-mail code or the address is in the log")
	}
}
