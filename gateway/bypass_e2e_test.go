package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// These tests are the regressions of an internal security review. Dendrite,
// like Go's encoding/json, matches JSON member names case-insensitively (with
// Unicode folding), so a body the gateway reads one way must never reach the
// homeserver to be read another way.

// TestBypassCaseVariantLoginType: "Type" instead of "type" must not release
// an access token for a user with 2FA on the password alone.
func TestBypassCaseVariantLoginType(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	bodies := []string{
		`{"Type":"m.login.password","identifier":{"type":"m.id.user","user":"` + u.Localpart + `"},"password":"` + u.Password + `"}`,
		`{"TYPE":"m.login.password","user":"` + u.Localpart + `","password":"` + u.Password + `"}`,
		`{"type":"x","Type":"m.login.password","user":"` + u.Localpart + `","password":"` + u.Password + `"}`,
		`{"type":"m.login.password","type":"m.login.password","user":"` + u.Localpart + `","password":"` + u.Password + `"}`,
		`{"type":"m.login.password","identifier":{"Type":"m.id.user","user":"` + u.Localpart + `"},"password":"` + u.Password + `"}`,
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"` + u.Localpart + `"},"paſſword":"` + u.Password + `"}`,
	}
	for _, b := range bodies {
		r := e.gw("POST", "/_matrix/client/v3/login", "", b)
		if r.str("access_token") != "" {
			t.Fatalf("a password-only login released an access token: %s -> %d", b, r.Status)
		}
		expect(t, r, 400, "M_BAD_JSON")
	}
}

// TestBypassCaseVariantAuthOnProtected: "AUTH" on account/password and on
// keys/device_signing/upload must not reach the homeserver, which would take
// it for auth and act on the password alone.
func TestBypassCaseVariantAuthOnProtected(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	pw := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}

	r := e.gw("POST", "/_matrix/client/v3/account/password", u.AccessToken,
		map[string]any{"new_password": "attacker-chosen-pw-123456", "logout_devices": false, "AUTH": pw})
	expect(t, r, 400, "M_BAD_JSON")
	if l := e.direct("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": "attacker-chosen-pw-123456"}); l.Status == 200 {
		t.Fatal("the password was changed without the second factor")
	}

	const upload = "/_matrix/client/v3/keys/device_signing/upload"
	first := masterKey(u.UserID)
	expect(t, e.gw("POST", upload, u.AccessToken, map[string]any{"master_key": first}), 200, "") // no key yet: no UIA
	expect(t, e.gw("POST", upload, u.AccessToken, map[string]any{"master_key": masterKey(u.UserID), "AUTH": pw}), 400, "M_BAD_JSON")
	q := e.direct("POST", "/_matrix/client/v3/keys/query", u.AccessToken, map[string]any{"device_keys": map[string]any{u.UserID: []string{}}})
	masters, _ := q.Body["master_keys"].(map[string]any)
	got, _ := json.Marshal(masters[u.UserID].(map[string]any)["keys"])
	want, _ := json.Marshal(first["keys"])
	if string(got) != string(want) {
		t.Fatalf("the master key was replaced without the second factor: %s, want %s", got, want)
	}
}

func masterKey(userID string) map[string]any {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k := base64.RawStdEncoding.EncodeToString(pub)
	return map[string]any{"user_id": userID, "usage": []string{"master"}, "keys": map[string]any{"ed25519:" + k: k}}
}

// TestBypassStaleEnrolmentSession: a session for POST /account/two-factor/totp
// begun while 2FA was off (password only) must not enrol a new authenticator
// once 2FA is on (which needs password and a second factor).
func TestBypassStaleEnrolmentSession(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "victim")
	const path = "/_matrix/client/v3/account/two-factor/totp"
	stale := e.gw("POST", path, u.AccessToken, map[string]any{})
	expect(t, stale, 401, "")
	// The user turns 2FA on.
	ch := e.gw("POST", path, u.AccessToken, map[string]any{})
	r := e.gw("POST", path, u.AccessToken, map[string]any{"auth": passwordAuth(u, ch.str("session"))})
	expect(t, r, 200, "")
	sec, _ := decodeB32(r.str("secret"))
	expect(t, e.gw("POST", path+"/confirm", u.AccessToken, map[string]any{"code": e.code(&enrolled{User: u, secret: sec})}), 200, "")
	// The old password-only session is refused.
	expect(t, e.gw("POST", path, u.AccessToken, map[string]any{"auth": passwordAuth(u, stale.str("session"))}), 403, "M_FORBIDDEN")
	if st := e.gw("GET", "/_matrix/client/v3/account/two-factor", u.AccessToken, nil); st.Body["totp"].(map[string]any)["pending"] != false {
		t.Fatalf("a new enrolment is pending after the stale session was refused: %s", st.Raw)
	}
}

// TestBypassDeviceIDSpellings: neither a case-variant device_id key nor a
// full user ID in another case lets a password-only login replace the token
// of the victim's existing device.
func TestBypassDeviceIDSpellings(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	for _, tc := range []struct {
		user, key string
		status    int
	}{
		{"@VICTIM:localhost", "device_id", 401},
		{"@Victim:localhost", "device_id", 401},
		{"VICTIM", "device_id", 401},
		{u.Localpart, "Device_ID", 400},
		{u.Localpart, "DEVICE_ID", 400},
	} {
		d, err := e.hs.Login(t.Context(), u.Localpart, u.Password)
		if err != nil {
			t.Fatal(err)
		}
		r := e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": tc.user}, "password": u.Password, tc.key: d.DeviceID})
		if r.Status != tc.status {
			t.Errorf("%s/%s: login = %d %s; want %d", tc.user, tc.key, r.Status, r.Raw, tc.status)
		}
		if w := e.direct("GET", "/_matrix/client/v3/account/whoami", d.AccessToken, nil); w.Status != 200 {
			t.Fatalf("%s/%s: the victim's device token was replaced by a password-only login (%d)", tc.user, tc.key, w.Status)
		}
	}
}

// TestNoTwoFactorOracle: a wrong password gets the same answer for a user
// with 2FA, one without, and one who does not exist, whatever device_id says.
func TestNoTwoFactorOracle(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	plain := tesths.RegisterUser(t, e.hs, "plainuser")
	for _, dev := range []string{`123`, `{"a":1}`, `"X"`, `null`} {
		var first string
		for i, who := range []string{u.UserID, plain.UserID, "@nosuchuser:localhost", u.Localpart, plain.Localpart} {
			body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"` + who + `"},"password":"wrong-password","device_id":` + dev + `}`
			r := e.gw("POST", "/_matrix/client/v3/login", "", body)
			got := string(rune('0'+r.Status/100)) + r.str("errcode") + "|" + r.str("error")
			if i == 0 {
				first = got
			} else if got != first {
				t.Errorf("device_id=%s: %s gets %q, %s got %q", dev, who, got, u.UserID, first)
			}
		}
	}
}

// TestUnguardedLoginTokenPrefix: an unstable login-token endpoint is refused,
// never passed through without the second factor.
func TestUnguardedLoginTokenPrefix(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	for _, p := range []string{"/_matrix/client/unstable/org.matrix.msc3882/login/token", "/_matrix/client/unstable/org.matrix.msc3882/login/get_token", "/_matrix/client/v3/login/get_token"} {
		expect(t, e.gw("POST", p, u.AccessToken, map[string]any{}), 404, "M_UNRECOGNIZED")
	}
}
