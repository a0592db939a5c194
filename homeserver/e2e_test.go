package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// End-to-end tests against a real Dendrite (built once per process by the
// tesths harness). One server is shared by the subtests; each uses its own
// users.

func e2eCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type deviceInfo struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name"`
}

// listDevices returns the sorted device IDs of the token's user, asked of
// Dendrite directly.
func listDevices(t *testing.T, srv *dendrite.Server, token string) []string {
	t.Helper()
	status, body, err := srv.Do(e2eCtx(t), http.MethodGet, "/_matrix/client/v3/devices", token, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /devices: HTTP %d %s %v", status, body, err)
	}
	var resp struct {
		Devices []deviceInfo `json:"devices"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("GET /devices: %q: %v", body, err)
	}
	ids := make([]string, 0, len(resp.Devices))
	for _, d := range resp.Devices {
		ids = append(ids, d.DeviceID)
	}
	slices.Sort(ids)
	return ids
}

// upstreamWhoAmI asks Dendrite directly, bypassing any cache.
func upstreamWhoAmI(t *testing.T, srv *dendrite.Server, token string) (int, mautrix.RespError) {
	t.Helper()
	status, body, err := srv.Do(e2eCtx(t), http.MethodGet, "/_matrix/client/v3/account/whoami", token, nil)
	if err != nil {
		t.Fatal(err)
	}
	var re mautrix.RespError
	_ = json.Unmarshal(body, &re)
	return status, re
}

func respErr(err error) (mautrix.RespError, bool) {
	var re mautrix.RespError
	ok := errors.As(err, &re)
	return re, ok
}

func TestDendrite(t *testing.T) {
	srv := tesths.Dendrite(t)
	c := newClient(t, srv.URL, homeserver.Options{})

	t.Run("WhoAmI", func(t *testing.T) {
		alice := tesths.RegisterUser(t, srv, "whoami-alice")
		tests := []struct {
			name        string
			token       string
			want        homeserver.WhoAmI
			wantErrCode string
		}{
			{name: "registered user", token: alice.AccessToken,
				want: homeserver.WhoAmI{UserID: id.UserID(alice.UserID), DeviceID: id.DeviceID(alice.DeviceID)}},
			{name: "same token again, from cache", token: alice.AccessToken,
				want: homeserver.WhoAmI{UserID: id.UserID(alice.UserID), DeviceID: id.DeviceID(alice.DeviceID)}},
			{name: "unknown token", token: "syt_not_a_token", wantErrCode: "M_UNKNOWN_TOKEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := c.WhoAmI(e2eCtx(t), tt.token)
				if tt.wantErrCode != "" {
					re, ok := respErr(err)
					if !ok || re.ErrCode != tt.wantErrCode || re.StatusCode != http.StatusUnauthorized {
						t.Errorf("WhoAmI error = %v, want 401 %s", err, tt.wantErrCode)
					}
					return
				}
				if err != nil || got != tt.want {
					t.Errorf("WhoAmI = %+v, %v; want %+v", got, err, tt.want)
				}
			})
		}
	})

	// Dendrite has no refresh tokens: a login asking for one succeeds (the
	// field is ignored) and carries none, and /refresh is not served.
	t.Run("RefreshTokens", func(t *testing.T) {
		carol := tesths.RegisterUser(t, srv, "refresh-carol")
		login, err := c.PasswordLoginRefresh(e2eCtx(t), carol.Localpart, carol.Password, "", "refresh test", true)
		if err != nil {
			t.Fatalf("login asking for a refresh token: %v", err)
		}
		if login.RefreshToken != "" || login.ExpiresInMS != 0 {
			t.Errorf("Dendrite answered refresh_token %q, expires_in_ms %d", login.RefreshToken, login.ExpiresInMS)
		}
		if _, err := c.WhoAmI(e2eCtx(t), login.AccessToken); err != nil {
			t.Errorf("the login's token: %v", err)
		}
		_, err = c.Refresh(e2eCtx(t), "not-a-refresh-token")
		if re, ok := respErr(err); !ok || re.StatusCode < 400 || re.StatusCode >= 500 {
			var ue *homeserver.UnexpectedStatusError
			if !errors.As(err, &ue) || ue.StatusCode != http.StatusNotFound {
				t.Errorf("POST /refresh at Dendrite: %v", err)
			}
		}
		c.Logout(e2eCtx(t), login.AccessToken)
	})

	t.Run("PasswordLogin", func(t *testing.T) {
		bob := tesths.RegisterUser(t, srv, "login-bob")
		tests := []struct {
			name        string
			user        string
			password    string
			deviceID    id.DeviceID
			wantErrCode string
		}{
			{name: "localpart", user: bob.Localpart, password: bob.Password},
			{name: "full user ID", user: bob.UserID, password: bob.Password},
			{name: "chosen device ID", user: bob.Localpart, password: bob.Password, deviceID: "BOBCHOSEN"},
			{name: "wrong password", user: bob.Localpart, password: bob.Password + "x", wantErrCode: "M_FORBIDDEN"},
			{name: "unknown user", user: "login-nobody", password: bob.Password, wantErrCode: "M_FORBIDDEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := listDevices(t, srv, bob.AccessToken)
				login, err := c.PasswordLogin(e2eCtx(t), tt.user, tt.password, tt.deviceID, "e2e "+tt.name)
				if tt.wantErrCode != "" {
					re, ok := respErr(err)
					if !ok || re.ErrCode != tt.wantErrCode || re.StatusCode != http.StatusForbidden {
						t.Fatalf("PasswordLogin error = %v, want 403 %s", err, tt.wantErrCode)
					}
					if after := listDevices(t, srv, bob.AccessToken); !slices.Equal(before, after) {
						t.Errorf("devices changed by a failed login: %v -> %v", before, after)
					}
					return
				}
				if err != nil {
					t.Fatalf("PasswordLogin: %v", err)
				}
				if string(login.UserID) != bob.UserID || login.AccessToken == "" || login.DeviceID == "" {
					t.Errorf("PasswordLogin = %+v, want a login for %s", login, bob.UserID)
				}
				if tt.deviceID != "" && login.DeviceID != tt.deviceID {
					t.Errorf("device ID %s, want the chosen %s", login.DeviceID, tt.deviceID)
				}
				who, err := c.WhoAmI(e2eCtx(t), login.AccessToken)
				if err != nil || who.DeviceID != login.DeviceID {
					t.Errorf("WhoAmI(new token) = %+v, %v; want device %s", who, err, login.DeviceID)
				}
				if err := c.Logout(e2eCtx(t), login.AccessToken); err != nil {
					t.Errorf("Logout: %v", err)
				}
			})
		}
	})

	t.Run("CheckPassword", func(t *testing.T) {
		carol := tesths.RegisterUser(t, srv, "check-carol")
		// A second device, so that deleting "every other" or "every" device
		// would show.
		if _, err := srv.Login(e2eCtx(t), carol.Localpart, carol.Password); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name     string
			userID   id.UserID
			password string
			want     bool
		}{
			{name: "right password", userID: id.UserID(carol.UserID), password: carol.Password, want: true},
			{name: "right password again", userID: id.UserID(carol.UserID), password: carol.Password, want: true},
			{name: "wrong password", userID: id.UserID(carol.UserID), password: "not-" + carol.Password, want: false},
			{name: "empty password", userID: id.UserID(carol.UserID), password: "", want: false},
			{name: "unknown user", userID: id.UserID(srv.UserID("check-nobody")), password: carol.Password, want: false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := listDevices(t, srv, carol.AccessToken)
				if len(before) != 2 {
					t.Fatalf("carol has devices %v, want 2", before)
				}
				got, err := c.CheckPassword(e2eCtx(t), tt.userID, tt.password)
				if err != nil || got != tt.want {
					t.Errorf("CheckPassword = %v, %v; want %v, nil", got, err, tt.want)
				}
				if after := listDevices(t, srv, carol.AccessToken); !slices.Equal(before, after) {
					t.Errorf("devices changed by CheckPassword: %v -> %v", before, after)
				}
				if status, re := upstreamWhoAmI(t, srv, carol.AccessToken); status != http.StatusOK {
					t.Errorf("carol's token stopped working: HTTP %d %s", status, re.ErrCode)
				}
			})
		}
	})

	t.Run("Logout", func(t *testing.T) {
		dave := tesths.RegisterUser(t, srv, "logout-dave")
		login, err := c.PasswordLogin(e2eCtx(t), dave.Localpart, dave.Password, "", "to be logged out")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WhoAmI(e2eCtx(t), login.AccessToken); err != nil { // now cached
			t.Fatal(err)
		}
		steps := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"logout succeeds", func(t *testing.T) {
				if err := c.Logout(e2eCtx(t), login.AccessToken); err != nil {
					t.Fatalf("Logout: %v", err)
				}
			}},
			{"whoami fails upstream", func(t *testing.T) {
				if status, re := upstreamWhoAmI(t, srv, login.AccessToken); status != http.StatusUnauthorized || re.ErrCode != "M_UNKNOWN_TOKEN" {
					t.Errorf("upstream whoami = HTTP %d %s, want 401 M_UNKNOWN_TOKEN", status, re.ErrCode)
				}
			}},
			{"whoami fails through the client (cache forgotten)", func(t *testing.T) {
				_, err := c.WhoAmI(e2eCtx(t), login.AccessToken)
				if re, ok := respErr(err); !ok || re.ErrCode != "M_UNKNOWN_TOKEN" {
					t.Errorf("WhoAmI after Logout = %v, want M_UNKNOWN_TOKEN", err)
				}
			}},
			{"second logout counts as success", func(t *testing.T) {
				if err := c.Logout(e2eCtx(t), login.AccessToken); err != nil {
					t.Errorf("Logout again: %v", err)
				}
			}},
			{"other device still logged in", func(t *testing.T) {
				if got := listDevices(t, srv, dave.AccessToken); !slices.Equal(got, []string{dave.DeviceID}) {
					t.Errorf("devices %v, want only %s", got, dave.DeviceID)
				}
			}},
		}
		for _, s := range steps {
			t.Run(s.name, s.run)
		}
	})

	t.Run("SetDeviceDisplayName", func(t *testing.T) {
		erin := tesths.RegisterUser(t, srv, "rename-erin")
		tests := []struct {
			name        string
			deviceID    id.DeviceID
			display     string
			wantErrCode string
		}{
			{name: "own device", deviceID: id.DeviceID(erin.DeviceID), display: "Element Web (Firefox)"},
			{name: "unicode name", deviceID: id.DeviceID(erin.DeviceID), display: "Téléphone 📱"},
			// Dendrite answers 403 M_FORBIDDEN "device does not exist" (Synapse: 404 M_NOT_FOUND).
			{name: "unknown device", deviceID: "NOSUCHDEVICE", display: "x", wantErrCode: "M_FORBIDDEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := c.SetDeviceDisplayName(e2eCtx(t), erin.AccessToken, tt.deviceID, tt.display)
				if tt.wantErrCode != "" {
					if re, ok := respErr(err); !ok || re.ErrCode != tt.wantErrCode {
						t.Errorf("SetDeviceDisplayName error = %v, want %s", err, tt.wantErrCode)
					}
					return
				}
				if err != nil {
					t.Fatalf("SetDeviceDisplayName: %v", err)
				}
				status, body, err := srv.Do(e2eCtx(t), http.MethodGet, "/_matrix/client/v3/devices/"+string(tt.deviceID), erin.AccessToken, nil)
				var d deviceInfo
				if err != nil || status != http.StatusOK || json.Unmarshal(body, &d) != nil || d.DisplayName != tt.display {
					t.Errorf("GET device = HTTP %d %s %v; want display_name %q", status, body, err, tt.display)
				}
			})
		}
	})

	t.Run("ParseUIA on Dendrite's delete_devices", func(t *testing.T) {
		frank := tesths.RegisterUser(t, srv, "uia-frank")
		before := listDevices(t, srv, frank.AccessToken)
		wrongAuth := `{"devices":["NOSUCHDEVICE"],"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":"uia-frank"},"password":"wrong"}}`
		tests := []struct {
			name          string
			body          string
			wantSession   bool
			wantErrCode   string
			wantCompleted string // the raw JSON of "completed"
		}{
			{name: "no auth: a challenge with a session", body: `{"devices":["NOSUCHDEVICE"]}`, wantSession: true, wantCompleted: `[]`},
			{name: "wrong password: completed null, empty session", body: wrongAuth, wantErrCode: "M_FORBIDDEN", wantCompleted: `null`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := c.Do(e2eCtx(t), http.MethodPost, "/_matrix/client/v3/delete_devices",
					http.Header{"Authorization": {"Bearer " + frank.AccessToken}}, []byte(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != http.StatusUnauthorized {
					t.Fatalf("HTTP %d %s, want 401", resp.Status, resp.Body)
				}
				var raw map[string]json.RawMessage
				if err := json.Unmarshal(resp.Body, &raw); err != nil {
					t.Fatal(err)
				}
				if string(raw["completed"]) != tt.wantCompleted {
					t.Errorf("Dendrite's completed = %s, want %s (quirk changed?)", raw["completed"], tt.wantCompleted)
				}
				uia, ok := homeserver.ParseUIA(resp.Body)
				if !ok {
					t.Fatalf("ParseUIA(%s) not ok", resp.Body)
				}
				if !uia.HasSingleStageFlow(mautrix.AuthTypePassword) {
					t.Errorf("flows %+v, want a single m.login.password stage", uia.Flows)
				}
				if (uia.Session != "") != tt.wantSession || uia.ErrCode != tt.wantErrCode || uia.Completed == nil {
					t.Errorf("ParseUIA = session %q errcode %q completed %#v; want session: %v, errcode %q", uia.Session, uia.ErrCode, uia.Completed, tt.wantSession, tt.wantErrCode)
				}
			})
		}
		if after := listDevices(t, srv, frank.AccessToken); !slices.Equal(before, after) {
			t.Errorf("devices changed: %v -> %v", before, after)
		}
	})

	t.Run("Proxy", func(t *testing.T) {
		grace := tesths.RegisterUser(t, srv, "proxy-grace")
		front := httptest.NewServer(c.Proxy())
		t.Cleanup(front.Close)
		tests := []struct {
			name  string
			path  string
			token string
		}{
			{name: "versions", path: "/_matrix/client/versions"},
			{name: "login flows", path: "/_matrix/client/v3/login"},
			{name: "whoami with token", path: "/_matrix/client/v3/account/whoami", token: grace.AccessToken},
			{name: "whoami without token", path: "/_matrix/client/v3/account/whoami"},
			{name: "unknown endpoint", path: "/_matrix/client/v3/no/such/endpoint?x=1"},
		}
		get := func(t *testing.T, base, path, token string) (int, string, []byte) {
			t.Helper()
			req, _ := http.NewRequestWithContext(e2eCtx(t), http.MethodGet, base+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, resp.Header.Get("Content-Type"), body
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ds, dct, dbody := get(t, srv.URL, tt.path, tt.token)
				ps, pct, pbody := get(t, front.URL, tt.path, tt.token)
				if ds != ps || dct != pct || string(dbody) != string(pbody) {
					t.Errorf("through the proxy: %d %q %s\ndirect: %d %q %s", ps, pct, pbody, ds, dct, dbody)
				}
			})
		}
	})
}
