package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/pages"
)

// The account page (the OAuth server's account_management_uri): each
// action the metadata advertises opens its view, after signing in when
// needed; devices come from the homeserver; a device is signed out only
// after the password and the second factor.

// getQuery opens the page with query (the account management actions).
func (b *webUser) getQuery(query string) webPage {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+selfPath+"?"+query, nil)
	return b.do(req)
}

func TestAccountActionsAdvertised(t *testing.T) {
	e := oauthEnv(t)
	r := e.gw("GET", "/_matrix/client/v1/auth_metadata", "", nil)
	if got := strings.Join(r.strings("account_management_actions_supported"), " "); got != strings.Join(pages.AccountActions, " ") {
		t.Fatalf("account_management_actions_supported = %q", got)
	}
}

func TestAccountActionViews(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("acctviews")
	b := e.browser()
	// Signed out: the sign-in form keeps the action, and after the
	// password and the code the browser lands on its view.
	p := b.getQuery("action=org.matrix.device_view&device_id=DEVX")
	wantPage(t, p, 200, `name="next" value="action=org.matrix.device_view&amp;device_id=DEVX"`)
	p = b.post("action", "signin", "username", u.Localpart, "password", u.Password, "next", "action=org.matrix.device_view&device_id=DEVX")
	wantPage(t, p, 200, `name="code"`)
	p = b.post("action", "code", "code", e.code(u))
	wantPage(t, p, 200, `id="view-device"`, "Device DEVX", `name="device_id" value="DEVX"`)

	for action, want := range map[string]string{
		"org.matrix.profile":                        `id="status"`,
		"org.matrix.devices_list":                   `id="view-devices"`,
		"org.matrix.sessions_list":                  `id="view-devices"`,
		"org.matrix.device_view&device_id=D1":       `Device D1`,
		"org.matrix.session_view&device_id=D2":      `Device D2`,
		"org.matrix.device_delete&device_id=D3":     `Device D3`,
		"org.matrix.session_end&device_id=D4":       `Device D4`,
		"org.matrix.account_deactivate":             `id="view-deactivate"`,
		"org.matrix.cross_signing_reset":            `id="view-xsign"`,
		"org.matrix.device_view":                    `id="view-devices"`,
		"org.matrix.unknown":                        `id="status"`,
		"org.matrix.profile&device_id=%22%3E%3Cbad": `id="status"`,
	} {
		wantPage(t, b.getQuery("action="+action), 200, want)
	}
	// A forged next never leaves the page.
	b2 := e.browser()
	b2.get()
	p = b2.post("action", "signin", "username", u.Localpart, "password", u.Password, "next", "//evil.example/")
	if loc := p.Header.Get("Location"); strings.Contains(p.Body, "evil") || loc != "" {
		t.Fatalf("forged next: %d %q", p.Status, loc)
	}
}

func TestAccountDevicesAndDelete(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("acctdevs")
	other, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	wantPage(t, b.post("action", "code", "code", e.code(u)), 200, `id="status"`)

	wantPage(t, b.getQuery("action=org.matrix.devices_list"), 200, `name="password"`)
	wantPage(t, b.post("action", "devices", "password", "wrong"), 403, "Wrong password or code.")
	p := b.post("action", "devices", "password", u.Password)
	wantPage(t, p, 200, `id="devices"`, "device_id="+other.DeviceID, "device_id="+u.DeviceID)

	alive := func() bool {
		return e.direct("GET", pgWhoAmI, other.AccessToken, nil).Status == 200
	}
	view := "action=org.matrix.session_end&device_id=" + other.DeviceID
	wantPage(t, b.getQuery(view), 200, `name="code"`)
	wantPage(t, b.post("action", "device_delete", "device_id", other.DeviceID, "password", u.Password), 400, "Enter your password and a code.")
	b.getQuery(view)
	wantPage(t, b.post("action", "device_delete", "device_id", other.DeviceID, "password", u.Password, "code", e.wrongCode(u)), 403)
	b.getQuery(view)
	wantPage(t, b.post("action", "device_delete", "device_id", other.DeviceID, "password", "wrong", "code", e.peekCode(u, 0)), 403)
	if !alive() {
		t.Fatal("the device was signed out without the second factor")
	}
	b.getQuery(view)
	p = b.post("action", "device_delete", "device_id", other.DeviceID, "password", u.Password, "code", e.code(u))
	wantPage(t, p, 200, "is signed out")
	if alive() {
		t.Fatal("the device still works after the delete")
	}
	// The page's own throw-away logins left nothing behind.
	devs := e.direct("GET", "/_matrix/client/v3/devices", u.AccessToken, nil)
	if list, _ := devs.Body["devices"].([]any); len(list) != 1 {
		t.Errorf("devices after the account page: %s", devs.Raw)
	}
}

func TestAccountDeactivateNeedsCode(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("acctgone")
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	b.post("action", "code", "code", e.code(u))
	const view = "action=org.matrix.account_deactivate"
	wantPage(t, b.getQuery(view), 200, `id="view-deactivate"`, `name="code"`)
	wantPage(t, b.post("action", "deactivate", "password", u.Password), 400, "Enter your password and a code.")
	b.getQuery(view)
	wantPage(t, b.post("action", "deactivate", "password", u.Password, "code", e.wrongCode(u)), 403)
	if _, err := e.hs.Login(context.Background(), u.Localpart, u.Password); err != nil {
		t.Fatalf("the account is gone without the code: %v", err)
	}
	b.getQuery(view)
	wantPage(t, b.post("action", "deactivate", "password", u.Password, "code", e.code(u)), 200, "Your account is deactivated.")
	if _, err := e.hs.Login(context.Background(), u.Localpart, u.Password); err == nil {
		t.Fatal("the deactivated account can still log in")
	}
}

// TestAccountPasswordChange: the account page changes the password only
// after the current password and the code; other devices are signed out
// when asked; the old password stops working.
func TestAccountPasswordChange(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("acctpw")
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	b.post("action", "code", "code", e.code(u))
	const view = "action=org.matrix2fa.password_change"
	wantPage(t, b.getQuery(view), 200, `id="view-password"`, `name="code"`)
	const next = "a new pass phrase 42"
	for _, c := range []struct {
		form   []string
		status int
	}{
		{[]string{"password", u.Password, "new_password", next, "new_password_again", next}, 400},                         // no code
		{[]string{"password", u.Password, "new_password", next, "new_password_again", next + "x", "code", "1"}, 400},      // mismatch
		{[]string{"password", u.Password, "new_password", next, "new_password_again", next, "code", e.wrongCode(u)}, 403}, // wrong code
		{[]string{"password", "wrong", "new_password", next, "new_password_again", next, "code", "000000"}, 403},          // wrong password
	} {
		b.getQuery(view)
		wantPage(t, b.post(append([]string{"action", "password_change"}, c.form...)...), c.status)
		if _, err := e.hs.Login(context.Background(), u.Localpart, u.Password); err != nil {
			t.Fatalf("the password changed after a refused form %v: %v", c.form, err)
		}
	}
	b.getQuery(view)
	wantPage(t, b.post("action", "password_change", "password", u.Password, "new_password", next, "new_password_again", next,
		"logout_devices", "1", "code", e.code(u)), 200, "Your password is changed.")
	if _, err := e.hs.Login(context.Background(), u.Localpart, u.Password); err == nil {
		t.Fatal("the old password still logs in")
	}
	if _, err := e.hs.Login(context.Background(), u.Localpart, next); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	if r := e.direct("GET", "/_matrix/client/v3/account/whoami", u.AccessToken, nil); r.Status != 401 {
		t.Errorf("another device survived logout_devices: %d %s", r.Status, r.Raw)
	}
}
