package gateway_test

import (
	"encoding/json"
	"testing"
)

// TestEveryChallengeHasFourFields enumerates the 401 bodies the gateway writes
// itself (login challenge and failed code, the guarded endpoints' challenge,
// a homeserver stage too early, the gateway's own UIA, the two-factor
// endpoints' challenges and a failed stage there) and checks that each has
// flows, params, session and completed (never missing or null).
func TestEveryChallengeHasFourFields(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("fourfields")
	const tf = "/_matrix/client/v3/account/two-factor"
	login := e.gw("POST", pgLogin, "", pwLogin(u.User, u.Password))
	dev := e.newDevice(u)
	guarded := e.gw("DELETE", "/_matrix/client/v3/devices/"+dev, u.AccessToken, map[string]any{})
	regen := e.gw("POST", tf+"/recovery", u.AccessToken, map[string]any{})
	bodies := map[string]resp{
		"login challenge": login,
		"login, wrong code": e.gw("POST", pgLogin, "", map[string]any{"auth": map[string]any{
			"type": "m.login.2fa.totp", "session": login.str("session"), "code": e.wrongCode(u)}}),
		"guarded challenge": guarded,
		"guarded, password too early": e.gw("DELETE", "/_matrix/client/v3/devices/"+dev, u.AccessToken,
			map[string]any{"auth": passwordAuth(u.User, guarded.str("session"))}),
		"own UIA (deprecated 3pid)": e.gw("POST", "/_matrix/client/v3/account/3pid", u.AccessToken,
			map[string]any{"three_pid_creds": map[string]any{"sid": "s", "client_secret": "c"}}),
		"enrol challenge":      e.gw("POST", tf+"/totp", u.AccessToken, map[string]any{}),
		"regenerate challenge": regen,
		"regenerate, wrong code": e.gw("POST", tf+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{
			"type": "m.login.2fa.totp", "session": regen.str("session"), "code": e.wrongCode(u)}}),
	}
	for name, r := range bodies {
		if r.Status != 401 {
			t.Errorf("%s: status %d %s; want 401", name, r.Status, r.Raw)
			continue
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(r.Raw, &got); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, k := range []string{"flows", "params", "session", "completed"} {
			if v, ok := got[k]; !ok || string(v) == "null" {
				t.Errorf("%s: %q missing or null in %s", name, k, r.Raw)
			}
		}
	}
}
