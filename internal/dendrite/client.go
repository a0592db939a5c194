package dendrite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"maunium.net/go/mautrix"
)

// User is an account on a Server with one logged-in device.
type User struct {
	UserID      string // @localpart:server
	Localpart   string
	Password    string
	AccessToken string
	DeviceID    string
}

// HTTPError is returned by Register and Login when the homeserver answers with
// an unexpected status. ErrCode and Message come from a Matrix error body.
type HTTPError struct {
	Op         string // e.g. "POST /_matrix/client/v3/login"
	StatusCode int
	ErrCode    string
	Message    string
	Body       string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("dendrite: %s: HTTP %d %s %s: %s", e.Op, e.StatusCode, e.ErrCode, e.Message, e.Body)
}

func newHTTPError(method, path string, status int, body []byte) *HTTPError {
	e := &HTTPError{Op: method + " " + path, StatusCode: status, Body: string(body)}
	var m struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		e.ErrCode, e.Message = m.ErrCode, m.Error
	}
	return e
}

// UserID returns the full Matrix user ID for localpart on this server.
func (s *Server) UserID(localpart string) string {
	return "@" + localpart + ":" + s.ServerName
}

// Do sends one request to the server: path is absolute (e.g.
// "/_matrix/client/v3/account/whoami"), body is JSON-encoded unless nil, and
// accessToken is sent as a bearer token unless empty. It returns the status and
// the raw response body whatever the status; err is only for transport
// failures.
func (s *Server) Do(ctx context.Context, method, path, accessToken string, body any) (status int, respBody []byte, err error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("dendrite: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("dendrite: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("dendrite: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("dendrite: %s %s: read body: %w", method, path, err)
	}
	return resp.StatusCode, respBody, nil
}

// Register creates the account localpart with password through the client
// API's two-step m.login.dummy registration and returns it logged in. An
// existing localpart gives an *HTTPError (400 M_USER_IN_USE).
func (s *Server) Register(ctx context.Context, localpart, password string) (*User, error) {
	const path = "/_matrix/client/v3/register"
	req := map[string]any{
		"username":                    localpart,
		"password":                    password,
		"initial_device_display_name": "matrix-2fa harness",
	}
	status, body, err := s.Do(ctx, http.MethodPost, path, "", req)
	if err != nil {
		return nil, err
	}
	if status == http.StatusUnauthorized {
		var uia mautrix.RespUserInteractive
		if err := json.Unmarshal(body, &uia); err != nil {
			return nil, fmt.Errorf("dendrite: POST %s: decode UIA response %q: %w", path, body, err)
		}
		if uia.Session == "" || !slices.ContainsFunc(uia.Flows, func(f mautrix.UIAFlow) bool {
			return len(f.Stages) == 1 && f.Stages[0] == mautrix.AuthTypeDummy
		}) {
			return nil, fmt.Errorf("dendrite: POST %s: no m.login.dummy flow with a session in %s", path, body)
		}
		req["auth"] = map[string]string{"type": string(mautrix.AuthTypeDummy), "session": uia.Session}
		if status, body, err = s.Do(ctx, http.MethodPost, path, "", req); err != nil {
			return nil, err
		}
	}
	if status != http.StatusOK {
		return nil, newHTTPError(http.MethodPost, path, status, body)
	}
	return userFrom(path, body, localpart, password)
}

// Login logs localpart in with m.login.password, creating a new device. A
// wrong password gives an *HTTPError (403 M_FORBIDDEN).
func (s *Server) Login(ctx context.Context, localpart, password string) (*User, error) {
	const path = "/_matrix/client/v3/login"
	req := map[string]any{
		"type":                        mautrix.AuthTypePassword,
		"identifier":                  map[string]string{"type": "m.id.user", "user": localpart},
		"password":                    password,
		"initial_device_display_name": "matrix-2fa harness",
	}
	status, body, err := s.Do(ctx, http.MethodPost, path, "", req)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, newHTTPError(http.MethodPost, path, status, body)
	}
	return userFrom(path, body, localpart, password)
}

// userFrom reads the user_id, access_token and device_id that /register and
// /login both answer with.
func userFrom(path string, body []byte, localpart, password string) (*User, error) {
	var r mautrix.RespLogin
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("dendrite: POST %s: decode %q: %w", path, body, err)
	}
	if r.AccessToken == "" || r.UserID == "" {
		return nil, fmt.Errorf("dendrite: POST %s: no access token or user ID in %s", path, body)
	}
	return &User{
		UserID:      string(r.UserID),
		Localpart:   localpart,
		Password:    password,
		AccessToken: r.AccessToken,
		DeviceID:    string(r.DeviceID),
	}, nil
}
