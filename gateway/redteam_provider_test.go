package gateway_test

import (
	"strings"
	"testing"
)

// Red team: the provider API answers "enabled" for the exact user ID it is
// given. Homeservers fold the localpart's case at login (Dendrite logs
// "@ALICE:server" in as @alice:server), so a caller that asks about the
// name the user typed — after checking the password with the homeserver —
// hears {"enabled": false} for a user with 2FA, and a verify call says the
// user has no 2FA (400), i.e. the caller falls open. The gateway itself folds
// case for the same reason (EnabledFold for device_id).
func TestRedteamProviderEnabledCaseFold(t *testing.T) {
	e := newAdminEnv(t)
	u := e.enrol("provcase")
	typed := "@" + strings.ToUpper(u.Localpart) + ":" + e.hs.ServerName

	// The homeserver accepts the typed spelling as the same user.
	login := e.direct("POST", pgLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": typed}, "password": u.Password})
	if login.Status != 200 || login.str("user_id") != u.UserID {
		t.Fatalf("the homeserver does not fold the localpart (the case this test is about): %d %s", login.Status, login.Raw)
	}
	r := e.provider("GET", typed, "", providerSecret, nil)
	if r.Body["enabled"] != true {
		t.Errorf("provider API for %s (the homeserver logs it in as %s, who has 2FA): %d %s", typed, u.UserID, r.Status, r.Raw)
	}
	v := e.provider("POST", typed, "verify", providerSecret, map[string]any{"code": "000000"})
	if v.Status != 403 {
		t.Errorf("verify for %s: %d %s; want 403 (never 'no 2FA')", typed, v.Status, v.Raw)
	}
}
