package canonical

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Kind is the JSON type a body field must have.
type Kind int

// Field kinds.
const (
	KindString Kind = iota
	KindBool
	KindStrings       // an array of strings
	KindObject        // any JSON object, forwarded as read (e.g. a cross-signing key)
	KindThreepidCreds // a threepid_creds object, rebuilt field by field
	// KindDeviceIDs is a required array of one or more non-empty strings:
	// homeservers read a missing, null or empty list differently (Dendrite
	// signs out every device, Synapse none, or refuses), so the gateway
	// forwards none of them (ErrMissingField).
	KindDeviceIDs
)

// Schema lists the top-level fields of an endpoint's body besides "auth".
type Schema map[string]Kind

// Rebuild returns the fields of o that s lists, each checked for its kind
// and written anew; every other field (but "auth", which the caller reads
// with ParseAuth) is dropped. ErrBadField for a field of the wrong kind.
func (s Schema) Rebuild(o Object) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for name, kind := range s {
		raw, ok := o[name]
		if !ok || string(raw) == "null" {
			if kind == KindDeviceIDs {
				return nil, fmt.Errorf("%w: %s", ErrMissingField, name)
			}
			continue
		}
		v, err := decode(kind, raw)
		if errors.Is(err, ErrMissingField) {
			return nil, fmt.Errorf("%w: %s", ErrMissingField, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrBadField, name)
		}
		if out[name], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decode reads raw as kind and returns the value to write anew.
func decode(kind Kind, raw json.RawMessage) (any, error) {
	switch kind {
	case KindString:
		var x string
		err := json.Unmarshal(raw, &x)
		return x, err
	case KindBool:
		var x bool
		err := json.Unmarshal(raw, &x)
		return x, err
	case KindStrings:
		var x []string
		err := json.Unmarshal(raw, &x)
		return x, err
	case KindDeviceIDs:
		var x []string
		if err := json.Unmarshal(raw, &x); err != nil {
			return nil, err
		}
		if len(x) == 0 {
			return nil, ErrMissingField
		}
		if slices.Contains(x, "") {
			return nil, ErrBadField
		}
		return x, nil
	case KindObject:
		var x map[string]json.RawMessage
		if err := json.Unmarshal(raw, &x); err != nil || x == nil {
			return nil, ErrBadField
		}
		return raw, nil
	case KindThreepidCreds:
		var x Object
		if err := json.Unmarshal(raw, &x); err != nil || x == nil {
			return nil, ErrBadField
		}
		return ParseThreepidCreds(x)
	}
	return nil, ErrBadField
}
