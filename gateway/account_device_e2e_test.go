package gateway_test

import (
	"context"
	"testing"
)

// TestAccountDeviceDetails: the device view shows the homeserver's details
// of the device after the password (a throw-away login, logged out at
// once); an unknown device, or another user's, is a readable 404.
func TestAccountDeviceDetails(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("acctdetail")
	stranger := e.enrol("acctstranger")
	other, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	wantPage(t, b.signIn(u.User), 200, `name="code"`)
	wantPage(t, b.post("action", "code", "code", e.code(u)), 200, `id="status"`)

	view := "action=org.matrix.device_view&device_id=" + other.DeviceID
	wantPage(t, b.getQuery(view), 200, `id="device-details-form"`, `name="device_id" value="`+other.DeviceID+`"`)
	for _, c := range []struct {
		name, device, password string
		status                 int
		want                   []string
	}{
		{"wrong password", other.DeviceID, "wrong", 403, []string{"Wrong password or code."}},
		{"no password", other.DeviceID, "", 400, nil},
		{"own device", other.DeviceID, u.Password, 200, []string{`id="device-details"`, `id="device-name">matrix-2fa harness<`,
			`id="device-seen">`, `name="action" value="device_delete"`}},
		{"unknown device", "NOSUCHDEVICE", u.Password, 404, []string{"There is no device NOSUCHDEVICE on your account"}},
		{"another user's device", stranger.DeviceID, u.Password, 404, []string{"There is no device " + stranger.DeviceID}},
		{"odd characters", `a/../"<x>`, u.Password, 404, []string{"There is no device a/../&#34;&lt;x&gt;"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b.getQuery(view)
			wantPage(t, b.post("action", "device_details", "device_id", c.device, "password", c.password), c.status, c.want...)
		})
	}
	// The throw-away logins of the details left nothing behind.
	devs := e.direct("GET", "/_matrix/client/v3/devices", u.AccessToken, nil)
	if list, _ := devs.Body["devices"].([]any); len(list) != 2 {
		t.Errorf("devices after the details: %s", devs.Raw)
	}
}
