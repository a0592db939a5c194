package canonical

import (
	"encoding/json"
	"fmt"
)

// Login types the gateway forwards.
const (
	LoginPassword    = "m.login.password"
	LoginToken       = "m.login.token"
	LoginAppservice  = "m.login.application_service"
	loginFieldDevice = "device_id"
)

// Login is a POST /login request as the gateway read it. Pointer fields are
// nil when the client left them out.
type Login struct {
	Type string
	// ID is the user a password or appservice login names (nil: none).
	ID           *Identifier
	Password     *string
	Token        *string
	DeviceID     *string
	DisplayName  *string
	RefreshToken *bool
}

// ParseLogin reads a password, token or appservice login. Errors:
// ErrUnknownLoginType, ErrBadField, and those of Identify.
func ParseLogin(o Object) (*Login, error) {
	typ, _, err := o.String("type")
	if err != nil {
		return nil, err
	}
	l := &Login{Type: typ}
	switch typ {
	case LoginPassword, LoginAppservice:
		if l.ID, err = Identify(o); err != nil {
			return nil, err
		}
		if typ == LoginPassword {
			l.Password, err = optString(o, "password")
		}
	case LoginToken:
		l.Token, err = optString(o, "token")
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownLoginType, typ)
	}
	if err != nil {
		return nil, err
	}
	if l.DeviceID, err = optString(o, loginFieldDevice); err != nil {
		return nil, err
	}
	if l.DisplayName, err = optString(o, "initial_device_display_name"); err != nil {
		return nil, err
	}
	if b, ok, err := o.Bool("refresh_token"); err != nil {
		return nil, err
	} else if ok {
		l.RefreshToken = &b
	}
	return l, nil
}

func optString(o Object, key string) (*string, error) {
	s, ok, err := o.String(key)
	if err != nil || !ok {
		return nil, err
	}
	return &s, nil
}

// Body is the login to send upstream: exactly the fields read, the user only
// in "identifier".
func (l *Login) Body() ([]byte, error) {
	return json.Marshal(struct {
		Type         string      `json:"type"`
		Identifier   *Identifier `json:"identifier,omitempty"`
		Password     *string     `json:"password,omitempty"`
		Token        *string     `json:"token,omitempty"`
		DeviceID     *string     `json:"device_id,omitempty"`
		DisplayName  *string     `json:"initial_device_display_name,omitempty"`
		RefreshToken *bool       `json:"refresh_token,omitempty"`
	}{l.Type, l.ID, l.Password, l.Token, l.DeviceID, l.DisplayName, l.RefreshToken})
}
