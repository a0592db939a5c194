package canonical

import (
	"encoding/json"
	"fmt"
)

// Homeserver UIA stage types whose fields the gateway forwards.
const (
	StagePassword          = "m.login.password"
	StageEmail             = "m.login.email.identity"
	StageMSISDN            = "m.login.msisdn"
	StageRecaptcha         = "m.login.recaptcha"
	StageRegistrationToken = "m.login.registration_token"
)

// ThreepidCreds are the credentials of a validated third-party ID.
type ThreepidCreds struct {
	SID           string  `json:"sid"`
	ClientSecret  string  `json:"client_secret"`
	IDServer      *string `json:"id_server,omitempty"`
	IDAccessToken *string `json:"id_access_token,omitempty"`
}

// ParseThreepidCreds reads a threepid_creds object.
func ParseThreepidCreds(o Object) (*ThreepidCreds, error) {
	var c ThreepidCreds
	var err error
	if c.SID, err = o.required("sid"); err != nil {
		return nil, err
	}
	if c.ClientSecret, err = o.required("client_secret"); err != nil {
		return nil, err
	}
	if c.IDServer, err = optString(o, "id_server"); err != nil {
		return nil, err
	}
	if c.IDAccessToken, err = optString(o, "id_access_token"); err != nil {
		return nil, err
	}
	return &c, nil
}

// Auth is a UIA auth dict for one of the homeserver's own stages, as the
// gateway read it. Type is "" for a bare {"session"} (the resume after a
// fallback page).
type Auth struct {
	Type     string
	Session  string
	ID       *Identifier
	Password *string
	Creds    *ThreepidCreds
	Response *string // m.login.recaptcha
	Token    *string // m.login.registration_token
}

// ParseAuth reads an auth dict: type, session and the fields of the stages
// the gateway knows. Fields of other stage types are not read (nor forwarded).
func ParseAuth(o Object) (*Auth, error) {
	a := &Auth{}
	var err error
	if a.Type, _, err = o.String("type"); err != nil {
		return nil, err
	}
	if a.Session, _, err = o.String("session"); err != nil {
		return nil, err
	}
	switch a.Type {
	case StagePassword:
		if a.ID, err = Identify(o); err == nil {
			a.Password, err = optString(o, "password")
		}
	case StageEmail, StageMSISDN:
		creds, ok, oerr := o.Object("threepid_creds")
		err = oerr
		if err == nil && !ok {
			err = fmt.Errorf("%w: threepid_creds is required", ErrBadField)
		}
		if err == nil {
			a.Creds, err = ParseThreepidCreds(creds)
		}
	case StageRecaptcha:
		a.Response, err = optString(o, "response")
	case StageRegistrationToken:
		a.Token, err = optString(o, "token")
	default:
		// Only type and session of other stages go upstream; a user they
		// name is still read, so that BindTo can refuse someone else.
		a.ID, err = Identify(o)
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// BindTo ties the dict to owner, the access token's owner: a user named
// anywhere in it must be owner (ErrOtherUser), a third-party identifier is
// refused (ErrNotAUserID), and a password stage names owner, by full user ID,
// whatever it named before. With owner "" (no access token: a password reset
// by e-mail) a dict naming any user, or a password stage, is refused.
func (a *Auth) BindTo(owner string) error {
	if a.ID != nil {
		switch {
		case a.ID.Type != IDUser:
			return ErrNotAUserID
		case owner == "" || !SameUser(a.ID.User, owner):
			return ErrOtherUser
		}
	}
	if a.Type == StagePassword {
		if owner == "" {
			return ErrOtherUser
		}
		a.ID = &Identifier{Type: IDUser, User: owner}
	}
	return nil
}

// Body is the dict to send upstream with the homeserver's session ID (""
// leaves session out).
func (a *Auth) Body(session string) json.RawMessage {
	id := a.ID
	if a.Type != StagePassword {
		id = nil
	}
	b, _ := json.Marshal(struct {
		Type       string         `json:"type,omitempty"`
		Session    string         `json:"session,omitempty"`
		Identifier *Identifier    `json:"identifier,omitempty"`
		Password   *string        `json:"password,omitempty"`
		Creds      *ThreepidCreds `json:"threepid_creds,omitempty"`
		Response   *string        `json:"response,omitempty"`
		Token      *string        `json:"token,omitempty"`
	}{a.Type, session, id, a.Password, a.Creds, a.Response, a.Token})
	return b
}
