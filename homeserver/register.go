package homeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix"
)

const pathRegister = "/_matrix/client/v3/register"

// RegisterRequest is a POST /_matrix/client/v3/register body (kind user) the
// gateway built from its own parse: nothing else is ever sent. The zero
// value asks for the flows only.
type RegisterRequest struct {
	Username     string        `json:"username,omitempty"`
	Password     string        `json:"password,omitempty"`
	Auth         *RegisterAuth `json:"auth,omitempty"`
	InhibitLogin bool          `json:"inhibit_login,omitempty"`
	// InitialDeviceDisplayName names the device of a registration that
	// logs in (never with InhibitLogin).
	InitialDeviceDisplayName string `json:"initial_device_display_name,omitempty"`
}

// RegisterAuth is the auth dict of a registration stage.
type RegisterAuth struct {
	Type    string `json:"type"`
	Session string `json:"session,omitempty"`
	Token   string `json:"token,omitempty"`
}

// RegisterResult is the homeserver's answer to a registration request:
// UserID once the account exists (AccessToken when the homeserver logged
// it in despite inhibit_login), else the UIA challenge (its errcode set
// when the last stage was refused).
type RegisterResult struct {
	UserID      string
	AccessToken string
	UIA         *mautrix.RespUserInteractive
}

// Register posts req to POST /_matrix/client/v3/register. A 200 gives the
// registered user ID; a 401 UIA challenge gives the flows, the session and
// what is completed. Errors: a mautrix.RespError with StatusCode for another
// 4xx Matrix error (403 M_FORBIDDEN when registration is off, 400
// M_USER_IN_USE, M_INVALID_USERNAME, M_WEAK_PASSWORD, M_EXCLUSIVE, 429 …);
// an *UnexpectedStatusError for other statuses; wrapped errors for transport
// failures and a 200 without user_id.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (*RegisterResult, error) {
	resp, err := c.send(ctx, http.MethodPost, pathRegister, "", &req)
	if err != nil {
		return nil, err
	}
	switch resp.Status {
	case http.StatusOK:
		var ok struct {
			UserID      string `json:"user_id"`
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(resp.Body, &ok) != nil || ok.UserID == "" {
			return nil, fmt.Errorf("homeserver: POST %s: answer has no user_id", pathRegister)
		}
		return &RegisterResult{UserID: ok.UserID, AccessToken: ok.AccessToken}, nil
	case http.StatusUnauthorized:
		if uia, ok := ParseUIA(resp.Body); ok {
			return &RegisterResult{UIA: uia}, nil
		}
	}
	return nil, statusError("POST "+pathRegister, resp)
}
