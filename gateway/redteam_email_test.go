package gateway_test

import (
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
	"github.com/matrix-2fa/matrix-2fa/notify"
)

// Red team: the remembered e-mail address goes stale, and a stolen access
// token (no password, no authenticator) turns the stale address into new
// recovery codes.
//
// The victim once had old@example.org (now in the attacker's hands: an
// expired domain, a compromised mailbox) and removed it from the account at
// the homeserver (POST /account/3pid/delete passes through the gateway, which
// does not re-read the addresses). The gateway reads addresses only on a held
// login, a guarded request and enrolment confirmation; the two-factor
// endpoints for regenerating recovery codes (and the fallback pages of their
// sessions) use the remembered list. An attacker holding the victim's access
// token asks POST /account/two-factor/recovery with the e-mail stage: the code
// goes to the removed address, and the attacker gets a fresh set of recovery
// codes, i.e. a permanent second factor.
func TestRedteamEmailCodeToRemovedAddress(t *testing.T) {
	smtp := smtptest.Start(t)
	mailer, err := notify.NewMailer(notify.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: notify.TLSNone, From: "2fa@localhost"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.withMailer(mailer)
	u := e.enrol("rtstale")
	const oldAddr, newAddr = "old-rtstale@example.org", "new-rtstale@example.org"
	addVerifiedEmail(t, e.hs, u.Localpart, oldAddr)

	// The victim signs in once (the gateway reads and remembers old@).
	ch := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password))
	expect(t, ch, 401, "")
	expect(t, e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": e.code(u)}}), 200, "")

	// The victim removes old@ at the homeserver (through the gateway, which
	// passes 3pid/delete through) and adds new@.
	del := e.gw("POST", "/_matrix/client/v3/account/3pid/delete", u.AccessToken, map[string]any{"medium": "email", "address": oldAddr})
	if del.Status != 200 {
		t.Fatalf("3pid/delete: %d %s", del.Status, del.Raw)
	}
	addVerifiedEmail(t, e.hs, u.Localpart, newAddr)
	list := e.direct("GET", "/_matrix/client/v3/account/3pid", u.AccessToken, nil)
	t.Logf("the homeserver now lists: %s", list.Raw)

	// The attacker, with the stolen access token only.
	const path = "/_matrix/client/v3/account/two-factor/recovery"
	r := e.gw("POST", path, u.AccessToken, map[string]any{})
	expect(t, r, 401, "")
	if !slices.ContainsFunc(r.flows(), func(f []string) bool { return slices.Equal(f, []string{"m.login.2fa.email"}) }) {
		t.Fatalf("no e-mail flow on regenerate: %s", r.Raw)
	}
	s := r.str("session")
	ask := e.gw("POST", path, u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s}})
	t.Logf("asking for a code: %d %s", ask.Status, ask.Raw)
	time.Sleep(500 * time.Millisecond)
	if got := smtp.Received(oldAddr); len(got) > 0 {
		code := mailedCode.FindString(got[len(got)-1].Text)
		done := e.gw("POST", path, u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.email", "session": s, "code": code}})
		t.Errorf("a 2FA code went to %s, removed from the account at the homeserver; with it the token holder got: %d %s",
			oldAddr, done.Status, done.Raw)
	}
}
