package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestNoSecretsInLogs runs the flows that handle every kind of secret with
// the whole gateway logging at trace level, then searches the log for each
// password, access token, TOTP secret and code, and recovery code used.
func TestNoSecretsInLogs(t *testing.T) {
	out := &lockedBuffer{}
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(logrus.TraceLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	e := newEnvLogged(t, tesths.Dendrite(t), log, func(_ *gatewayConfig, a *accountConfig) { a.LockoutLimit = 3 })
	ctx := context.Background()

	u := e.enrol("logged")
	secrets := map[string]string{"password": u.Password, "access token": u.AccessToken, "base32 secret": base32NoPad(u.secret)}
	for i, c := range u.recovery {
		secrets["recovery code "+c] = c
		if i == 0 {
			secrets["recovery code without hyphens"] = strings.ReplaceAll(c, "-", "")
		}
	}
	useCode := func() string {
		c := e.code(u)
		secrets["totp code "+c] = c
		return c
	}

	// Login: password, a wrong code, the right code.
	ch := e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	expect(t, ch, 401, "")
	expect(t, e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": "000000"}}), 401, "M_FORBIDDEN")
	ok := e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": useCode()}})
	expect(t, ok, 200, "")
	secrets["login access token"] = ok.str("access_token")
	secrets["login session"] = ch.str("session")

	// A protected operation: delete the login's device with 2FA and the password.
	d := e.gw("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{ok.str("device_id")}})
	expect(t, d, 401, "")
	expect(t, e.gw("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{ok.str("device_id")},
		"auth": map[string]any{"type": "m.login.2fa.recovery", "session": d.str("session"), "code": u.recovery[1]}}), 401, "")
	expect(t, e.gw("POST", "/_matrix/client/v3/delete_devices", u.AccessToken, map[string]any{"devices": []string{ok.str("device_id")},
		"auth": passwordAuth(u.User, d.str("session"))}), 200, "")

	// The fallback page with a code, and a token in the query string.
	r := e.gw("POST", "/_matrix/client/v3/account/two-factor/recovery?access_token="+url.QueryEscape(u.AccessToken), "", map[string]any{})
	expect(t, r, 401, "")
	page := e.srv.URL + "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web?session=" + url.QueryEscape(r.str("session"))
	form, err := e.srv.Client().Get(page)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(form.Body)
	form.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(html)
	if csrf == nil {
		t.Fatalf("no csrf field on the fallback page:\n%s", html)
	}
	resp, err := e.srv.Client().PostForm(page, url.Values{"code": {useCode()}, "csrf": {string(csrf[1])}})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(done), "authDone") {
		t.Fatalf("fallback POST = %d:\n%s", resp.StatusCode, done)
	}
	// Regenerate (new codes in a response body), then a replayed code and a lockout.
	regen := e.gw("POST", "/_matrix/client/v3/account/two-factor/recovery", u.AccessToken,
		map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "code": useCode()}})
	expect(t, regen, 200, "")
	for _, c := range regen.strings("recovery_codes") {
		secrets["regenerated code "+c] = c
	}
	for i := 0; i < 4; i++ {
		e.gw("POST", "/_matrix/client/v3/account/two-factor/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "code": u.recovery[2]}})
	}
	e.gate.Sweep(ctx)

	logged := out.String()
	if !strings.Contains(logged, u.UserID) || !strings.Contains(logged, "request_id") || strings.Count(logged, "\n") < 20 {
		t.Fatalf("the check is blind: the log has %d lines and does not name the user or requests:\n%s", strings.Count(logged, "\n"), logged)
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(logged, s) {
			t.Errorf("the log contains the %s", what)
		}
	}
}
