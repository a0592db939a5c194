package canonical

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Errors. The gateway maps them to Matrix errors in its one error table.
var (
	// ErrBadField: a field has the wrong JSON type, or a required one is missing.
	ErrBadField = errors.New("canonical: field missing or of the wrong type")
	// ErrMissingField: a field that must name something (KindDeviceIDs) is
	// missing, null or empty.
	ErrMissingField = errors.New("canonical: a required field is missing or empty")
	// ErrAmbiguousUser: the body names its user in more than one place (the
	// identifier and the legacy user, medium or address fields) and they do
	// not agree, or it gives half of a legacy third-party identifier.
	ErrAmbiguousUser = errors.New("canonical: the user is named in more than one way")
	// ErrNoIdentifierType: an identifier without "type" (homeservers read it
	// differently: one refuses it, another falls back to the legacy "user").
	ErrNoIdentifierType = errors.New("canonical: identifier without type")
	// ErrUnknownIdentifier: an identifier type the gateway does not know.
	ErrUnknownIdentifier = errors.New("canonical: unknown identifier type")
	// ErrUnknownLoginType: a login type the gateway does not know.
	ErrUnknownLoginType = errors.New("canonical: unknown login type")
	// ErrOtherUser: an auth dict names someone other than the access token's owner.
	ErrOtherUser = errors.New("canonical: the auth dict names another user")
	// ErrNotAUserID: an auth dict identifies its user by a third-party ID,
	// which the gateway cannot tie to the access token's owner.
	ErrNotAUserID = errors.New("canonical: the auth dict does not name a Matrix user ID")
)

// Identifier types (client-server API, "Identifier types").
const (
	IDUser       = "m.id.user"
	IDThirdParty = "m.id.thirdparty"
	IDPhone      = "m.id.phone"
)

// Identifier is the one user a body names.
type Identifier struct {
	Type    string
	User    string // m.id.user: a localpart or a full user ID, as given
	Medium  string // m.id.thirdparty
	Address string // m.id.thirdparty
	Country string // m.id.phone
	Phone   string // m.id.phone
}

// MarshalJSON writes the identifier with only its type's fields.
func (i Identifier) MarshalJSON() ([]byte, error) {
	switch i.Type {
	case IDUser:
		return json.Marshal(struct {
			Type string `json:"type"`
			User string `json:"user"`
		}{i.Type, i.User})
	case IDThirdParty:
		return json.Marshal(struct {
			Type    string `json:"type"`
			Medium  string `json:"medium"`
			Address string `json:"address"`
		}{i.Type, i.Medium, i.Address})
	case IDPhone:
		return json.Marshal(struct {
			Type    string `json:"type"`
			Country string `json:"country"`
			Phone   string `json:"phone"`
		}{i.Type, i.Country, i.Phone})
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownIdentifier, i.Type)
}

// Object is a JSON object as the gateway parsed it (member names checked
// elsewhere: no duplicates, no case variants of the names read here).
type Object map[string]json.RawMessage

// String returns o[key] as a string; ok is false when absent or null.
// ErrBadField when present with another type.
func (o Object) String(key string) (s string, ok bool, err error) {
	raw, present := o[key]
	if !present || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("%w: %s must be a string", ErrBadField, key)
	}
	return s, true, nil
}

// Bool returns o[key] as a bool; ok is false when absent or null.
func (o Object) Bool(key string) (b bool, ok bool, err error) {
	raw, present := o[key]
	if !present || string(raw) == "null" {
		return false, false, nil
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, false, fmt.Errorf("%w: %s must be a boolean", ErrBadField, key)
	}
	return b, true, nil
}

// Object returns o[key] as an object; ok is false when absent or null.
func (o Object) Object(key string) (obj Object, ok bool, err error) {
	raw, present := o[key]
	if !present || string(raw) == "null" {
		return nil, false, nil
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, false, fmt.Errorf("%w: %s must be an object", ErrBadField, key)
	}
	return obj, true, nil
}

// required returns o[key] as a non-empty string or ErrBadField.
func (o Object) required(key string) (string, error) {
	s, ok, err := o.String(key)
	if err == nil && (!ok || s == "") {
		err = fmt.Errorf("%w: %s is required", ErrBadField, key)
	}
	return s, err
}

// Identify returns the one user o names, from its "identifier" and the
// deprecated top-level "user", "medium" and "address" fields, or nil when it
// names none. Homeservers disagree on which of these wins (Synapse takes the
// legacy fields over the identifier, Dendrite the identifier's user only when
// its type is m.id.user, else the legacy user), so every place that names a
// user must name the same one: ErrAmbiguousUser otherwise. Other errors:
// ErrNoIdentifierType, ErrUnknownIdentifier, ErrBadField.
func Identify(o Object) (*Identifier, error) {
	var found []Identifier
	if ident, ok, err := o.Object("identifier"); err != nil {
		return nil, err
	} else if ok {
		id, err := parseIdentifier(ident)
		if err != nil {
			return nil, err
		}
		found = append(found, id)
	}
	user, _, err := o.String("user")
	if err != nil {
		return nil, err
	}
	if user != "" {
		found = append(found, Identifier{Type: IDUser, User: user})
	}
	medium, _, err := o.String("medium")
	if err != nil {
		return nil, err
	}
	address, _, err := o.String("address")
	if err != nil {
		return nil, err
	}
	switch {
	case medium != "" && address != "":
		found = append(found, Identifier{Type: IDThirdParty, Medium: medium, Address: address})
	case medium != "" || address != "":
		return nil, fmt.Errorf("%w: medium and address go together", ErrAmbiguousUser)
	}
	if len(found) == 0 {
		return nil, nil
	}
	for _, other := range found[1:] {
		if other != found[0] {
			return nil, ErrAmbiguousUser
		}
	}
	return &found[0], nil
}

func parseIdentifier(o Object) (Identifier, error) {
	typ, ok, err := o.String("type")
	if err != nil {
		return Identifier{}, err
	}
	if !ok || typ == "" {
		return Identifier{}, ErrNoIdentifierType
	}
	id := Identifier{Type: typ}
	switch typ {
	case IDUser:
		id.User, err = o.required("user")
	case IDThirdParty:
		if id.Medium, err = o.required("medium"); err == nil {
			id.Address, err = o.required("address")
		}
	case IDPhone:
		if id.Country, err = o.required("country"); err == nil {
			id.Phone, err = o.required("phone")
		}
	default:
		return Identifier{}, fmt.Errorf("%w: %q", ErrUnknownIdentifier, typ)
	}
	return id, err
}

// Qualify returns the full user ID for user (a localpart or a full user ID)
// on serverName, the way homeservers qualify a login's user: a name starting
// with "@" is taken as a full ID; anything else is a localpart of serverName.
// ok is false when user cannot be one user ID: a full ID without a server
// name, a localpart with a colon, or serverName unknown ("").
func Qualify(user, serverName string) (userID string, ok bool) {
	if strings.HasPrefix(user, "@") {
		local, server, found := strings.Cut(user[1:], ":")
		return user, found && local != "" && server != ""
	}
	if user == "" || serverName == "" || strings.ContainsRune(user, ':') {
		return "", false
	}
	return "@" + user + ":" + serverName, true
}

// SameUser reports whether given (a localpart or a full user ID) may name
// owner, a full user ID, as a homeserver would resolve it: localparts compare
// without regard to case (homeservers fold them), server names exactly.
func SameUser(given, owner string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(owner, "@"), ":")
	if !ok {
		return false
	}
	if strings.HasPrefix(given, "@") {
		gl, gs, ok := strings.Cut(given[1:], ":")
		return ok && gs == server && strings.EqualFold(gl, local)
	}
	return strings.EqualFold(given, local)
}

// PlainUserID reports whether userID is "@localpart:server" in plain ASCII:
// a localpart of the characters user IDs are made of today (letters of either
// case, digits, ._=-/+) and a server name of letters, digits, dots, dashes, a
// port or an IPv6 literal. Nothing in it can be trimmed, folded or
// normalised by a homeserver into a different name except letter case.
func PlainUserID(userID string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	if !ok || !strings.HasPrefix(userID, "@") || local == "" || server == "" {
		return false
	}
	for _, c := range local {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._=-/+", c)) {
			return false
		}
	}
	for _, c := range server {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return true
}
