package homeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"maunium.net/go/mautrix/id"
)

// Device is one entry of GET /_matrix/client/v3/devices.
type Device struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

// Devices lists the devices of accessToken's owner. Errors are as for WhoAmI.
func (c *Client) Devices(ctx context.Context, accessToken string) ([]Device, error) {
	resp, err := c.call(ctx, http.MethodGet, "/_matrix/client/v3/devices", accessToken, nil)
	if err != nil {
		return nil, err
	}
	var body struct {
		Devices []Device `json:"devices"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("homeserver: devices: %w", err)
	}
	return body.Devices, nil
}

// Device reads one device of accessToken's owner (GET
// /_matrix/client/v3/devices/{deviceId}). An unknown device (or another
// user's) is the homeserver's 404 M_NOT_FOUND as a mautrix.RespError;
// other errors are as for WhoAmI.
func (c *Client) Device(ctx context.Context, accessToken, deviceID string) (Device, error) {
	var d Device
	resp, err := c.call(ctx, http.MethodGet, pathDevices+url.PathEscape(deviceID), accessToken, nil)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(resp.Body, &d); err != nil {
		return d, fmt.Errorf("homeserver: device: %w", err)
	}
	return d, nil
}

// DeleteDevice signs deviceID out (DELETE /_matrix/client/v3/devices/{id})
// with accessToken, completing the homeserver's UIA with userID's password.
func (c *Client) DeleteDevice(ctx context.Context, accessToken string, userID id.UserID, password string, deviceID string) error {
	return c.WithPassword(ctx, accessToken, http.MethodDelete, pathDevices+url.PathEscape(deviceID), userID, password, map[string]any{})
}

// WithPassword sends body to path with accessToken; when the homeserver
// answers with UIA, it retries once with an m.login.password stage for
// userID in the homeserver's session. A homeserver that asks for more than
// the password gives the 401 as a mautrix.RespError.
func (c *Client) WithPassword(ctx context.Context, accessToken, method, path string, userID id.UserID, password string, body map[string]any) error {
	resp, err := c.send(ctx, method, path, accessToken, body)
	if err != nil {
		return err
	}
	uia, ok := ParseUIA(resp.Body)
	if resp.Status != http.StatusUnauthorized || !ok {
		if resp.Status != http.StatusOK {
			return statusError(method+" "+path, resp)
		}
		return nil
	}
	retry := make(map[string]any, len(body)+1)
	for k, v := range body {
		retry[k] = v
	}
	retry["auth"] = map[string]any{"type": "m.login.password", "session": uia.Session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": string(userID)}}
	_, err = c.call(ctx, method, path, accessToken, retry)
	return err
}
