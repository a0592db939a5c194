package oauth

import (
	"crypto/rand"
	"regexp"
	"slices"
	"strings"
)

// Scopes of the Matrix OAuth 2.0 API, stable and MSC2967's unstable names.
const (
	ScopeAPI                = "urn:matrix:client:api:*"
	scopeAPIUnstable        = "urn:matrix:org.matrix.msc2967.client:api:*"
	ScopeDevicePrefix       = "urn:matrix:client:device:"
	scopeDeviceUnstablePref = "urn:matrix:org.matrix.msc2967.client:device:"
	// scopeOpenID is accepted and ignored: the gateway issues no ID token.
	scopeOpenID = "openid"
)

// deviceIDChars are the characters a device ID in a scope may use (the
// unreserved URI characters).
var deviceIDChars = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,255}$`)

// scope is a parsed scope: the device it names, and the granted scope string.
type scope struct {
	DeviceID string
	Granted  string
}

// parseScope parses a requested scope. The API scope is required; at most
// one device ID may be named (under both names alike); with none, a new
// device ID is made and added to the granted scope. Errors are invalid_scope.
func parseScope(requested string) (scope, error) {
	fields := strings.Fields(requested)
	var device string
	api := false
	for _, f := range fields {
		var id string
		switch {
		case f == ScopeAPI || f == scopeAPIUnstable:
			api = true
			continue
		case f == scopeOpenID:
			continue
		case strings.HasPrefix(f, ScopeDevicePrefix):
			id = strings.TrimPrefix(f, ScopeDevicePrefix)
		case strings.HasPrefix(f, scopeDeviceUnstablePref):
			id = strings.TrimPrefix(f, scopeDeviceUnstablePref)
		default:
			return scope{}, oauthErr("invalid_scope", "unknown scope "+f)
		}
		if !deviceIDChars.MatchString(id) || (device != "" && device != id) {
			return scope{}, oauthErr("invalid_scope", "one device ID of unreserved URI characters, please")
		}
		device = id
	}
	if !api {
		return scope{}, oauthErr("invalid_scope", "the scope must include "+ScopeAPI)
	}
	if device == "" {
		device = newDeviceID()
		fields = append(fields, ScopeDevicePrefix+device)
	}
	return scope{DeviceID: device, Granted: strings.Join(slices.Compact(fields), " ")}, nil
}

// newDeviceID is a random device ID of 10 capital letters (like homeservers').
func newDeviceID() string {
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = 'A' + b[i]%26
	}
	return string(b)
}
