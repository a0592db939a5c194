package tesths_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

const (
	whoamiPath        = "/_matrix/client/v3/account/whoami"
	deleteDevicesPath = "/_matrix/client/v3/delete_devices"
)

type whoami struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	IsGuest  bool   `json:"is_guest"`
}

type matrixError struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

type uiaResponse struct {
	Session   string   `json:"session"`
	Completed []string `json:"completed"`
	Flows     []struct {
		Stages []string `json:"stages"`
	} `json:"flows"`
	matrixError
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func doJSON(t *testing.T, s *dendrite.Server, method, path, token string, body, out any) int {
	t.Helper()
	status, raw, err := s.Do(ctx(t), method, path, token, body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: HTTP %d, decoding %q: %v", method, path, status, raw, err)
		}
	}
	return status
}

func TestDendriteRegisterLoginWhoami(t *testing.T) {
	t.Parallel()
	s := tesths.Dendrite(t)
	if s.ServerName != "localhost" {
		t.Errorf("ServerName = %q, want localhost", s.ServerName)
	}

	alice := tesths.RegisterUser(t, s, "alice")
	bob := tesths.RegisterUser(t, s, "bob")
	aliceLogin, err := s.Login(ctx(t), "alice", alice.Password)
	if err != nil {
		t.Fatalf("Login(alice): %v", err)
	}
	if aliceLogin.DeviceID == alice.DeviceID {
		t.Errorf("login reused the registration device %q", alice.DeviceID)
	}
	if aliceLogin.AccessToken == alice.AccessToken {
		t.Error("login returned the registration access token")
	}

	for _, tc := range []struct {
		name       string
		user       *dendrite.User
		wantUserID string
	}{
		{"alice registered", alice, "@alice:localhost"},
		{"bob registered", bob, "@bob:localhost"},
		{"alice logged in", aliceLogin, "@alice:localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.user.UserID != tc.wantUserID || tc.user.UserID != s.UserID(tc.user.Localpart) {
				t.Errorf("User.UserID = %q, want %q", tc.user.UserID, tc.wantUserID)
			}
			if tc.user.DeviceID == "" {
				t.Error("User.DeviceID is empty")
			}
			var got whoami
			if status := doJSON(t, s, http.MethodGet, whoamiPath, tc.user.AccessToken, nil, &got); status != http.StatusOK {
				t.Fatalf("whoami: HTTP %d %+v", status, got)
			}
			want := whoami{UserID: tc.wantUserID, DeviceID: tc.user.DeviceID}
			if got != want {
				t.Errorf("whoami = %+v, want %+v", got, want)
			}
		})
	}

	t.Run("bad credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name, localpart, password string
			wantStatus                int
			wantErrCode               string
		}{
			{"wrong password", "alice", bob.Password, http.StatusForbidden, "M_FORBIDDEN"},
			{"unknown user", "carol", alice.Password, http.StatusForbidden, "M_FORBIDDEN"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, err := s.Login(ctx(t), tc.localpart, tc.password)
				var he *dendrite.HTTPError
				if !errors.As(err, &he) {
					t.Fatalf("Login = %+v, %v; want *HTTPError", u, err)
				}
				if he.StatusCode != tc.wantStatus || he.ErrCode != tc.wantErrCode {
					t.Errorf("Login error = HTTP %d %s, want %d %s", he.StatusCode, he.ErrCode, tc.wantStatus, tc.wantErrCode)
				}
			})
		}
	})

	t.Run("register taken localpart", func(t *testing.T) {
		_, err := s.Register(ctx(t), "bob", tesths.RandomPassword(t))
		var he *dendrite.HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || he.ErrCode != "M_USER_IN_USE" {
			t.Errorf("Register(bob again) error = %v, want HTTP 400 M_USER_IN_USE", err)
		}
	})

	t.Run("invalid token", func(t *testing.T) {
		var got matrixError
		status := doJSON(t, s, http.MethodGet, whoamiPath, "not-a-token", nil, &got)
		if status != http.StatusUnauthorized || got.ErrCode != "M_UNKNOWN_TOKEN" {
			t.Errorf("whoami with a bad token = HTTP %d %+v, want 401 M_UNKNOWN_TOKEN", status, got)
		}
	})
}

// TestDendriteDeleteDevicesUIA documents the homeserver behaviour the gateway
// relies on: /delete_devices is guarded by a single-stage m.login.password
// UIA, and a password submitted without a session completes it in one request.
func TestDendriteDeleteDevicesUIA(t *testing.T) {
	t.Parallel()
	s := tesths.Dendrite(t)
	alice := tesths.RegisterUser(t, s, "alice")
	second, err := s.Login(ctx(t), "alice", alice.Password)
	if err != nil {
		t.Fatalf("Login(alice): %v", err)
	}
	devices := map[string]any{"devices": []string{second.DeviceID}}
	passwordAuth := func(password string) map[string]any {
		return map[string]any{
			"devices": []string{second.DeviceID},
			"auth": map[string]any{
				"type":       "m.login.password",
				"identifier": map[string]string{"type": "m.id.user", "user": "alice"},
				"password":   password,
			},
		}
	}

	for _, tc := range []struct {
		name        string
		token       string
		body        any
		wantStatus  int
		wantErrCode string
		wantSession bool
	}{
		{name: "no access token", body: devices, wantStatus: http.StatusUnauthorized, wantErrCode: "M_MISSING_TOKEN"},
		{name: "no auth starts UIA", token: alice.AccessToken, body: devices, wantStatus: http.StatusUnauthorized, wantSession: true},
		{name: "wrong password", token: alice.AccessToken, body: passwordAuth("wrong"), wantStatus: http.StatusUnauthorized, wantErrCode: "M_FORBIDDEN"},
		{name: "unknown auth type", token: alice.AccessToken, body: map[string]any{
			"devices": []string{second.DeviceID},
			"auth":    map[string]any{"type": "m.login.2fa.totp", "code": "123456"},
		}, wantStatus: http.StatusBadRequest, wantErrCode: "M_BAD_JSON"},
		// Must stay last: it deletes the second device.
		{name: "password without session", token: alice.AccessToken, body: passwordAuth(alice.Password), wantStatus: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got uiaResponse
			status := doJSON(t, s, http.MethodPost, deleteDevicesPath, tc.token, tc.body, &got)
			if status != tc.wantStatus || got.ErrCode != tc.wantErrCode {
				t.Fatalf("delete_devices = HTTP %d %+v, want %d %q", status, got, tc.wantStatus, tc.wantErrCode)
			}
			if !tc.wantSession {
				return
			}
			if got.Session == "" {
				t.Errorf("no UIA session in %+v", got)
			}
			if len(got.Completed) != 0 {
				t.Errorf("completed = %v, want none", got.Completed)
			}
			if len(got.Flows) != 1 || len(got.Flows[0].Stages) != 1 || got.Flows[0].Stages[0] != "m.login.password" {
				t.Errorf("flows = %+v, want [[m.login.password]]", got.Flows)
			}
		})
	}

	// The deleted device's token is gone; the first device still works.
	var gone matrixError
	if status := doJSON(t, s, http.MethodGet, whoamiPath, second.AccessToken, nil, &gone); status != http.StatusUnauthorized || gone.ErrCode != "M_UNKNOWN_TOKEN" {
		t.Errorf("whoami on deleted device = HTTP %d %+v, want 401 M_UNKNOWN_TOKEN", status, gone)
	}
	var me whoami
	if status := doJSON(t, s, http.MethodGet, whoamiPath, alice.AccessToken, nil, &me); status != http.StatusOK || me.UserID != alice.UserID {
		t.Errorf("whoami on remaining device = HTTP %d %+v, want 200 %s", status, me, alice.UserID)
	}
}
