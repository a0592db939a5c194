package gateway_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// withCode turns on the password + code option.
func withCode(g *gatewayConfig, _ *accountConfig) { g.PasswordWithCode = true }

func pwLogin(u *dendrite.User, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": password}
}

// TestPasswordWithCodeLogin: the code typed right after the password logs a
// 2FA user in with one POST /login; the same code is then a replay; a wrong
// code with the right password counts toward the lockout and gets nothing; a
// right code with a wrong password is never checked, so it still works
// afterwards; a user without 2FA never gets in with digits after a wrong
// password; a password that itself ends in digits still gets the challenge.
func TestPasswordWithCodeLogin(t *testing.T) {
	e := newEnv(t, withCode, func(_ *gatewayConfig, a *accountConfig) { a.LockoutLimit = 3 })
	u := e.enrol("pwcode")

	code := e.peekCode(u, 0)
	r := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+code))
	expect(t, r, 200, "")
	if r.str("user_id") != u.UserID || r.str("access_token") == "" {
		t.Fatalf("login with password and code: %s", r.Raw)
	}
	if w := e.gw("GET", pgWhoAmI, r.str("access_token"), nil); w.Status != 200 {
		t.Fatalf("the released token does not work: %d %s", w.Status, w.Raw)
	}
	// The same password and code again: the code was used (a replay).
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+code)), 403, "M_FORBIDDEN")

	// A right (fresh) code with a wrong password: refused as a wrong
	// password, the code not checked, so it still works afterwards.
	fresh := e.peekCode(u, 1)
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, "wrong"+fresh)), 403, "M_FORBIDDEN")
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+fresh)), 200, "")

	// Wrong codes with the right password count toward the lockout (limit
	// 3; the success above cleared the replay's count): the right code is
	// then refused too.
	e.clock.Add(60e9)
	for range 3 {
		expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+e.wrongCode(u))), 403, "M_FORBIDDEN")
	}
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+e.peekCode(u, 0))), 429, "M_LIMIT_EXCEEDED")
	// Every login that was not released was logged out: only the two
	// released ones (and the enrolment's own) remain as extra devices.
	if n := len(e.deviceIDs(u.AccessToken)); n != 3 {
		t.Fatalf("%d devices after the logins; want 3 (enrolment + two released)", n)
	}

	// No 2FA: a wrong password with digits after it is just wrong.
	plain, err := e.hs.Register(context.Background(), "pwcodeplain", "secret-password")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, e.gw("POST", pgLogin, "", pwLogin(plain, "secret-password123456")), 403, "M_FORBIDDEN")

	// A 2FA user whose password ends in six digits: the password alone gets
	// the challenge (and counts nothing); password and code log in.
	digitsUser, err := e.hs.Register(context.Background(), "pwdigits", "correct-horse-424242")
	if err != nil {
		t.Fatal(err)
	}
	d := e.enrolUser(digitsUser)
	ch := e.gw("POST", pgLogin, "", pwLogin(digitsUser, "correct-horse-424242"))
	expect(t, ch, 401, "")
	if got := ch.strings("completed"); !slices.Equal(got, []string{"m.login.password"}) {
		t.Fatalf("plain password ending in digits: %s", ch.Raw)
	}
	expect(t, e.gw("POST", pgLogin, "", pwLogin(digitsUser, "correct-horse-424242"+e.peekCode(d, 0))), 200, "")
}

// TestPasswordWithCodeOff: with the option off the code after the password
// is just a wrong password.
func TestPasswordWithCodeOff(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("pwcodeoff")
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+e.peekCode(u, 0))), 403, "M_FORBIDDEN")
}

// TestPasswordOnlyClient walks a client that knows only the password stage
// and never sends a session (as stock web clients' UIA dialogs do): deleting
// a device with the password alone never works, with the code after the
// password it does in one request; its login works the same way, and a
// client reading GET /login sees the configured flows.
func TestPasswordOnlyClient(t *testing.T) {
	e := newEnv(t, withCode, func(g *gatewayConfig, _ *accountConfig) { g.HidePasswordFlow = true })
	u := e.enrol("pwonly")
	dev := e.newDevice(u)
	path := "/_matrix/client/v3/devices/" + dev
	auth := func(password string) map[string]any {
		return map[string]any{"auth": map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": u.UserID}, "password": password}}
	}
	for range 2 {
		r := e.gw("DELETE", path, u.AccessToken, auth(u.Password))
		expect(t, r, 401, "M_FORBIDDEN")
		if !e.e2eHasDevice(u.AccessToken, dev) {
			t.Fatal("the password alone deleted the device")
		}
	}
	expect(t, e.gw("DELETE", path, u.AccessToken, auth(u.Password+e.wrongCode(u))), 401, "M_FORBIDDEN")
	if !e.e2eHasDevice(u.AccessToken, dev) {
		t.Fatal("a wrong code deleted the device")
	}
	expect(t, e.gw("DELETE", path, u.AccessToken, auth(u.Password+e.code(u))), 200, "")
	if e.e2eHasDevice(u.AccessToken, dev) {
		t.Fatal("password and code did not delete the device")
	}

	flows := e.gw("GET", pgLogin, "", nil)
	expect(t, flows, 200, "")
	var body struct {
		Flows []struct {
			Type string `json:"type"`
		} `json:"flows"`
	}
	json.Unmarshal(flows.Raw, &body)
	var types []string
	for _, f := range body.Flows {
		types = append(types, f.Type)
	}
	if slices.Contains(types, "m.login.password") || !slices.Contains(types, "m.login.sso") {
		t.Fatalf("GET /login with the password flow hidden: %v", types)
	}
	expect(t, e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password+e.code(u))), 200, "")
}
