package homeserver_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

func TestLoginRaw(t *testing.T) {
	const reqBody = `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw","x-extra":[1,2]}`
	const uia = `{"flows":[{"stages":["m.login.password"]}],"session":"S"}`
	f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, http.StatusUnauthorized, uia) })
	c := newClient(t, f.URL, homeserver.Options{})
	resp, err := c.Login(t.Context(), []byte(reqBody), http.Header{"User-Agent": {"Element/1"}})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if resp.Status != http.StatusUnauthorized || string(resp.Body) != uia {
		t.Errorf("Login = %d %s, want 401 %s", resp.Status, resp.Body, uia)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/_matrix/client/v3/login" || string(r.Body) != reqBody ||
		r.Header.Get("User-Agent") != "Element/1" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("upstream saw %s %s %q UA=%q CT=%q", r.Method, r.Path, r.Body, r.Header.Get("User-Agent"), r.Header.Get("Content-Type"))
	}
}

func TestPasswordLogin(t *testing.T) {
	tests := []struct {
		name        string
		user        string
		deviceID    id.DeviceID
		displayName string
		status      int
		body        string
		want        *mautrix.RespLogin
		wantErrCode string // a RespError with this code; "-" for an ordinary error
		wantStatus  int
	}{
		{
			name: "success with given device", user: "alice", deviceID: "DEV1", displayName: "Phone",
			status: 200, body: `{"user_id":"@alice:localhost","device_id":"DEV1","access_token":"tok","home_server":"localhost"}`,
			want: &mautrix.RespLogin{UserID: "@alice:localhost", DeviceID: "DEV1", AccessToken: "tok"},
		},
		{
			name: "success with full user ID", user: "@alice:localhost",
			status: 200, body: `{"user_id":"@alice:localhost","device_id":"NEW","access_token":"tok2"}`,
			want: &mautrix.RespLogin{UserID: "@alice:localhost", DeviceID: "NEW", AccessToken: "tok2"},
		},
		{
			name: "wrong password", user: "alice", status: 403,
			body:        `{"errcode":"M_FORBIDDEN","error":"The username or password was incorrect or the account does not exist."}`,
			wantErrCode: "M_FORBIDDEN", wantStatus: 403,
		},
		{
			name: "rate limited", user: "alice", status: 429,
			body:        `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":500}`,
			wantErrCode: "M_LIMIT_EXCEEDED", wantStatus: 429,
		},
		{name: "server error", user: "alice", status: 500, body: `{"errcode":"M_UNKNOWN"}`, wantErrCode: "-"},
		{name: "200 without token", user: "alice", status: 200, body: `{"user_id":"@alice:localhost"}`, wantErrCode: "-"},
		{name: "200 garbage", user: "alice", status: 200, body: `<html>`, wantErrCode: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, tt.status, tt.body) })
			c := newClient(t, f.URL, homeserver.Options{})
			got, err := c.PasswordLogin(t.Context(), tt.user, "pw", tt.deviceID, tt.displayName)

			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/_matrix/client/v3/login" {
				t.Fatalf("upstream requests %+v, want one POST /_matrix/client/v3/login", reqs)
			}
			var sent map[string]any
			if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
				t.Fatalf("request body %q: %v", reqs[0].Body, err)
			}
			wantSent := map[string]any{
				"type":       "m.login.password",
				"identifier": map[string]any{"type": "m.id.user", "user": tt.user},
				"password":   "pw",
			}
			if tt.deviceID != "" {
				wantSent["device_id"] = string(tt.deviceID)
			}
			if tt.displayName != "" {
				wantSent["initial_device_display_name"] = tt.displayName
			}
			if a, b := mustJSON(t, sent), mustJSON(t, wantSent); a != b {
				t.Errorf("request body %s, want %s", a, b)
			}

			switch {
			case tt.want != nil:
				if err != nil {
					t.Fatalf("PasswordLogin: %v", err)
				}
				if got.UserID != tt.want.UserID || got.DeviceID != tt.want.DeviceID || got.AccessToken != tt.want.AccessToken {
					t.Errorf("PasswordLogin = %+v, want %+v", got, tt.want)
				}
			case tt.wantErrCode == "-":
				var re mautrix.RespError
				if err == nil || errors.As(err, &re) {
					t.Errorf("PasswordLogin error = %v, want an ordinary error", err)
				}
			default:
				var re mautrix.RespError
				if !errors.As(err, &re) || re.ErrCode != tt.wantErrCode || re.StatusCode != tt.wantStatus {
					t.Errorf("PasswordLogin error = %#v, want RespError %s %d", err, tt.wantErrCode, tt.wantStatus)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLogout(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr bool
	}{
		{name: "success", status: 200, body: `{}`},
		{name: "unknown token counts as success", status: 401, body: `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`},
		{name: "missing token is an error", status: 401, body: `{"errcode":"M_MISSING_TOKEN"}`, wantErr: true},
		{name: "server error", status: 500, body: `{"errcode":"M_UNKNOWN"}`, wantErr: true},
		{name: "bad gateway", status: 502, body: `oops`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if r.URL.Path == "/_matrix/client/v3/account/whoami" {
					writeRaw(w, 200, `{"user_id":"@alice:localhost"}`)
					return
				}
				writeRaw(w, tt.status, tt.body)
			})
			c := newClient(t, f.URL, homeserver.Options{WhoAmITTL: time.Hour})
			if _, err := c.WhoAmI(t.Context(), "tok"); err != nil {
				t.Fatal(err)
			}
			err := c.Logout(t.Context(), "tok")
			if (err != nil) != tt.wantErr {
				t.Errorf("Logout error = %v, want error: %v", err, tt.wantErr)
			}
			var logout *recorded
			for _, r := range f.requests() {
				if r.Path == "/_matrix/client/v3/logout" {
					logout = &r
				}
			}
			if logout == nil || logout.Method != http.MethodPost || logout.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("logout request %+v, want POST with Bearer tok", logout)
			}
			if _, err := c.WhoAmI(t.Context(), "tok"); err != nil {
				t.Fatal(err)
			}
			if n := f.count(http.MethodGet, "/_matrix/client/v3/account/whoami"); n != 2 {
				t.Errorf("%d whoami requests, want 2: Logout must forget the token", n)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	const user = id.UserID("@alice:localhost")
	const okLogin = `{"user_id":"@alice:localhost","device_id":"CHECKDEV","access_token":"check-token"}`
	tests := []struct {
		name        string
		password    string
		loginStatus int
		loginBody   string
		logout      int
		want        bool
		wantErr     bool
		wantCalls   []string
	}{
		{
			name: "right password", password: "pw", loginStatus: 200, loginBody: okLogin, logout: 200, want: true,
			wantCalls: []string{"POST /_matrix/client/v3/login", "POST /_matrix/client/v3/logout"},
		},
		{
			name: "wrong password", password: "pw", loginStatus: 403, loginBody: `{"errcode":"M_FORBIDDEN","error":"bad"}`,
			wantCalls: []string{"POST /_matrix/client/v3/login"},
		},
		{name: "empty password is wrong without asking", password: ""},
		{
			name: "deactivated user is an error", password: "pw", loginStatus: 403, loginBody: `{"errcode":"M_USER_DEACTIVATED"}`, wantErr: true,
			wantCalls: []string{"POST /_matrix/client/v3/login"},
		},
		{
			name: "rate limited is an error", password: "pw", loginStatus: 429, loginBody: `{"errcode":"M_LIMIT_EXCEEDED"}`, wantErr: true,
			wantCalls: []string{"POST /_matrix/client/v3/login"},
		},
		{
			name: "login server error", password: "pw", loginStatus: 500, loginBody: `{}`, wantErr: true,
			wantCalls: []string{"POST /_matrix/client/v3/login"},
		},
		{
			name: "logout failure is an error", password: "pw", loginStatus: 200, loginBody: okLogin, logout: 500, wantErr: true,
			wantCalls: []string{"POST /_matrix/client/v3/login", "POST /_matrix/client/v3/logout"},
		},
		{
			name: "check device already gone", password: "pw", loginStatus: 200, loginBody: okLogin, logout: 401, want: true,
			wantCalls: []string{"POST /_matrix/client/v3/login", "POST /_matrix/client/v3/logout"},
		},
		{
			name: "login for another user is an error, device still logged out", password: "pw", loginStatus: 200, logout: 200,
			loginBody: `{"user_id":"@mallory:localhost","device_id":"X","access_token":"other-token"}`, wantErr: true,
			wantCalls: []string{"POST /_matrix/client/v3/login", "POST /_matrix/client/v3/logout"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				switch r.URL.Path {
				case "/_matrix/client/v3/login":
					writeRaw(w, tt.loginStatus, tt.loginBody)
				case "/_matrix/client/v3/logout":
					if tt.logout == 401 {
						writeRaw(w, 401, `{"errcode":"M_UNKNOWN_TOKEN"}`)
						return
					}
					writeRaw(w, tt.logout, `{}`)
				default:
					writeRaw(w, 404, `{"errcode":"M_UNRECOGNIZED"}`)
				}
			})
			c := newClient(t, f.URL, homeserver.Options{})
			got, err := c.CheckPassword(t.Context(), user, tt.password)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("CheckPassword = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			reqs := f.requests()
			var calls []string
			for _, r := range reqs {
				calls = append(calls, r.Method+" "+r.Path)
			}
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("upstream calls %q, want %q (never delete_devices or anything else)", calls, tt.wantCalls)
			}
			if len(reqs) == 0 {
				return
			}
			var login struct {
				Type       string                 `json:"type"`
				Identifier mautrix.UserIdentifier `json:"identifier"`
				Password   string                 `json:"password"`
				DeviceID   *string                `json:"device_id"`
				Name       string                 `json:"initial_device_display_name"`
			}
			if err := json.Unmarshal(reqs[0].Body, &login); err != nil {
				t.Fatal(err)
			}
			if login.Type != "m.login.password" || login.Identifier.Type != "m.id.user" || login.Identifier.User != string(user) ||
				login.Password != "pw" || login.DeviceID != nil || login.Name != homeserver.PasswordCheckDeviceName {
				t.Errorf("login body %s: want a fresh device named %q for %s", reqs[0].Body, homeserver.PasswordCheckDeviceName, user)
			}
			if len(reqs) > 1 {
				var issued mautrix.RespLogin
				if err := json.Unmarshal([]byte(tt.loginBody), &issued); err != nil {
					t.Fatal(err)
				}
				if want := "Bearer " + issued.AccessToken; reqs[1].Header.Get("Authorization") != want {
					t.Errorf("logout sent %q, want the check device's token %q", reqs[1].Header.Get("Authorization"), want)
				}
			}
		})
	}
}

func TestSetDeviceDisplayName(t *testing.T) {
	tests := []struct {
		name     string
		deviceID id.DeviceID
		status   int
		body     string
		wantPath string
		wantErr  string // errcode of a RespError; "" for success
	}{
		{name: "plain device", deviceID: "ABCDEF", status: 200, body: `{}`, wantPath: "/_matrix/client/v3/devices/ABCDEF"},
		{name: "device ID escaped", deviceID: "A/B C?", status: 200, body: `{}`, wantPath: "/_matrix/client/v3/devices/A%2FB%20C%3F"},
		{name: "unknown device", deviceID: "NOPE", status: 404, body: `{"errcode":"M_NOT_FOUND"}`, wantPath: "/_matrix/client/v3/devices/NOPE", wantErr: "M_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, tt.status, tt.body) })
			c := newClient(t, f.URL, homeserver.Options{})
			err := c.SetDeviceDisplayName(t.Context(), "tok", tt.deviceID, "Element Web (Firefox)")
			var re mautrix.RespError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("SetDeviceDisplayName: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &re) || re.ErrCode != tt.wantErr):
				t.Errorf("SetDeviceDisplayName error %v, want %s", err, tt.wantErr)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPut || r.Path != tt.wantPath || r.Header.Get("Authorization") != "Bearer tok" ||
				string(r.Body) != `{"display_name":"Element Web (Firefox)"}` {
				t.Errorf("upstream saw %s %s auth=%q body=%s", r.Method, r.Path, r.Header.Get("Authorization"), r.Body)
			}
		})
	}
}
