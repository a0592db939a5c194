package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// PasswordCheckDeviceName is the display name of the throwaway device that
// CheckPassword creates and removes.
const PasswordCheckDeviceName = "matrix-2fa password check"

// cleanupTimeout bounds the logout that follows a password check, which runs
// even when the caller's context is cancelled.
const cleanupTimeout = 15 * time.Second

// Login posts body, a raw /login request as the client sent it (or rewritten),
// to POST /_matrix/client/v3/login with the headers in header (see Do) and
// returns the homeserver's answer whatever its status. Errors are those of Do.
func (c *Client) Login(ctx context.Context, body []byte, header http.Header) (*Response, error) {
	return c.Do(ctx, http.MethodPost, pathLogin, header, body)
}

// PasswordLogin logs user (a localpart or a full user ID, sent as an m.id.user
// identifier) in with password. deviceID may be empty for a new device;
// displayName, if not empty, names a new device. Errors: a mautrix.RespError
// with StatusCode for a 4xx Matrix error (403 M_FORBIDDEN for a wrong
// password, 429 M_LIMIT_EXCEEDED, …); an *UnexpectedStatusError for other
// statuses; wrapped errors for transport failures and answers without an
// access token or user ID.
func (c *Client) PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error) {
	return c.PasswordLoginRefresh(ctx, user, password, deviceID, displayName, false)
}

// PasswordLoginRefresh is PasswordLogin that, when refresh is set, asks for
// a refresh token (the spec's "refresh_token": true, v1.3). Synapse then
// answers refresh_token and expires_in_ms, but only when its
// refreshable_access_token_lifetime is configured; Dendrite (v0.15.2) reads
// the login with encoding/json into a struct without the field, so ignores
// it and answers neither. Errors are as for PasswordLogin.
func (c *Client) PasswordLoginRefresh(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string, refresh bool) (*mautrix.RespLogin, error) {
	req := mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:                 password,
		DeviceID:                 deviceID,
		InitialDeviceDisplayName: displayName,
		RefreshToken:             refresh,
	}
	resp, err := c.call(ctx, http.MethodPost, pathLogin, "", &req)
	if err != nil {
		return nil, err
	}
	var login mautrix.RespLogin
	if err := json.Unmarshal(resp.Body, &login); err != nil {
		return nil, fmt.Errorf("homeserver: POST %s: decoding answer: %w", pathLogin, err)
	}
	if login.AccessToken == "" || login.UserID == "" {
		return nil, fmt.Errorf("homeserver: POST %s: answer has no access_token or user_id", pathLogin)
	}
	return &login, nil
}

// Refreshed is the homeserver's answer to POST /_matrix/client/v3/refresh.
type Refreshed struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	// ExpiresInMS is the new access token's lifetime (0: it does not expire).
	ExpiresInMS int64 `json:"expires_in_ms,omitempty"`
}

// Refresh exchanges refreshToken for a new access token and refresh token
// (POST /_matrix/client/v3/refresh, spec v1.3; Synapse serves it only with
// refreshable_access_token_lifetime configured, Dendrite not at all).
// Errors: a mautrix.RespError with StatusCode for a 4xx Matrix error (401
// M_UNKNOWN_TOKEN for a refresh token that is unknown, used up or expired;
// 404 M_UNRECOGNIZED where the endpoint is not served); an
// *UnexpectedStatusError for other statuses; wrapped errors for transport
// failures and answers without an access or refresh token.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*Refreshed, error) {
	resp, err := c.call(ctx, http.MethodPost, pathRefresh, "", map[string]string{"refresh_token": refreshToken})
	if err != nil {
		return nil, err
	}
	var r Refreshed
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("homeserver: POST %s: decoding answer: %w", pathRefresh, err)
	}
	if r.AccessToken == "" || r.RefreshToken == "" {
		return nil, fmt.Errorf("homeserver: POST %s: answer has no access_token or refresh_token", pathRefresh)
	}
	return &r, nil
}

// Logout logs accessToken out with POST /_matrix/client/v3/logout and forgets
// it in the WhoAmI cache. A 401 M_UNKNOWN_TOKEN counts as success: the token
// is already gone. Other failures are errors as for WhoAmI.
func (c *Client) Logout(ctx context.Context, accessToken string) error {
	c.ForgetToken(accessToken)
	if accessToken == "" {
		return nil
	}
	_, err := c.call(ctx, http.MethodPost, pathLogout, accessToken, struct{}{})
	var re mautrix.RespError
	if errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized && re.ErrCode == mautrix.MUnknownToken.ErrCode {
		return nil
	}
	return err
}

// CheckPassword reports whether password is userID's current password,
// leaving nothing behind: it logs in with a fresh device named
// PasswordCheckDeviceName and logs that device out again (the logout runs even
// if ctx is cancelled meanwhile). It returns (false, nil) for the homeserver's
// 403 M_FORBIDDEN and, without asking, for an empty password. Other failures are errors, among them a mautrix.RespError
// for other 4xx Matrix errors (e.g. 429 M_LIMIT_EXCEEDED, 403
// M_USER_DEACTIVATED), a login answered for another user, and a failed
// logout of the check device (then the password was right, but the device may
// remain).
func (c *Client) CheckPassword(ctx context.Context, userID id.UserID, password string) (bool, error) {
	log := c.log.WithField("user_id", userID)
	if password == "" {
		// Never right; homeservers answer 400 M_BAD_JSON (Dendrite), not 403.
		return false, nil
	}
	login, err := c.PasswordLogin(ctx, string(userID), password, "", PasswordCheckDeviceName)
	var re mautrix.RespError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden && re.ErrCode == mautrix.MForbidden.ErrCode {
		log.Debug("password check: wrong password")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("homeserver: password check: %w", err)
	}

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	logoutErr := c.Logout(cctx, login.AccessToken)
	if logoutErr != nil {
		log.WithFields(logrus.Fields{"device_id": login.DeviceID, "error": logoutErr}).
			Error("password check: could not log the check device out")
		return false, fmt.Errorf("homeserver: password check: logging out check device %s: %w", login.DeviceID, logoutErr)
	}
	if login.UserID != userID {
		log.WithField("answered_user_id", login.UserID).Error("password check: homeserver logged in another user")
		return false, fmt.Errorf("homeserver: password check: login for %s answered for %s", userID, login.UserID)
	}
	log.Debug("password check: correct password")
	return true, nil
}

// SetDeviceDisplayName renames deviceID with PUT
// /_matrix/client/v3/devices/{deviceId} {"display_name": name}, authorised by
// accessToken. Errors are as for WhoAmI; an unknown device gives a
// mautrix.RespError (Synapse: 404 M_NOT_FOUND; Dendrite: 403 M_FORBIDDEN).
func (c *Client) SetDeviceDisplayName(ctx context.Context, accessToken string, deviceID id.DeviceID, name string) error {
	if deviceID == "" {
		return errors.New("homeserver: SetDeviceDisplayName: empty device ID")
	}
	req := struct {
		DisplayName string `json:"display_name"`
	}{name}
	_, err := c.call(ctx, http.MethodPut, pathDevices+url.PathEscape(string(deviceID)), accessToken, &req)
	return err
}

// EmailAddresses returns the verified e-mail addresses of accessToken's owner
// (GET /_matrix/client/v3/account/3pid, medium "email"). Errors are as for
// WhoAmI.
func (c *Client) EmailAddresses(ctx context.Context, accessToken string) ([]string, error) {
	resp, err := c.call(ctx, http.MethodGet, "/_matrix/client/v3/account/3pid", accessToken, nil)
	if err != nil {
		return nil, err
	}
	var body struct {
		ThreePIDs []struct {
			Medium      string `json:"medium"`
			Address     string `json:"address"`
			ValidatedAt int64  `json:"validated_at"`
		} `json:"threepids"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("homeserver: GET /account/3pid: decoding answer: %w", err)
	}
	var out []string
	for _, t := range body.ThreePIDs {
		if t.Medium == "email" && t.Address != "" {
			out = append(out, t.Address)
		}
	}
	return out, nil
}

// ServerNotice sends userID a server notice with body as its text (POST
// /_synapse/admin/v1/send_server_notice, served by Synapse and Dendrite when
// their server notices are configured), authorised by adminToken, a
// homeserver admin's access token. Errors are as for WhoAmI.
func (c *Client) ServerNotice(ctx context.Context, adminToken, userID, body string) error {
	req := map[string]any{"user_id": userID, "content": map[string]string{"msgtype": "m.text", "body": body}}
	_, err := c.call(ctx, http.MethodPost, "/_synapse/admin/v1/send_server_notice", adminToken, req)
	return err
}
