package gateway

import (
	"net/http"

	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// Version prefixes. Homeservers serve the same endpoint under several of
// them (Synapse: r0, v3 and unstable for most, api/v1 for some; Dendrite: r0
// and v3, unstable for some); the gateway guards an endpoint under every
// prefix any of them serves, and refuses it under any other (gateway.go,
// guarded).
var (
	// Prefixes are the versions of the gateway's own endpoints and pages.
	Prefixes = []string{"/_matrix/client/r0", "/_matrix/client/v3"}
	// guardPrefixes are the versions under which homeserver endpoints are guarded.
	guardPrefixes = []string{"/_matrix/client/r0", "/_matrix/client/v3", "/_matrix/client/unstable"}
	// loginPrefixes also has Synapse's legacy api/v1 (and its unstable).
	loginPrefixes = []string{"/_matrix/client/r0", "/_matrix/client/v3", "/_matrix/client/unstable", "/_matrix/client/api/v1"}
	// tokenPrefixes serve the login-token request (MSC3882, spec v1.7).
	tokenPrefixes = []string{"/_matrix/client/v1", "/_matrix/client/unstable/org.matrix.msc3882"}
)

// guardedEndpoint is a homeserver endpoint the gateway guards: its body is
// read with Body and rebuilt (auth dict bound to the access token's owner)
// for every user; for a user with 2FA, a 2FA stage comes first.
type guardedEndpoint struct {
	Method   string
	Path     string // below the prefix; mux pattern
	Prefixes []string
	// Body lists the fields forwarded besides "auth"; others are dropped.
	Body canonical.Schema
	// OwnUIA: some homeserver performs this without UIA (or may), so for a
	// user with 2FA the gateway asks the 2FA stage itself and then forwards
	// the request without an auth dict.
	OwnUIA bool
	// NoToken: a request without an access token is still forwarded (a
	// password reset proven by a third-party ID); no password stage then.
	NoToken bool
	// ChangesPassword: success revokes the owner's remembered browsers (a
	// reset without a token names no owner: see spec/protocol.md).
	ChangesPassword bool
	// Op names the operation for the trusted-client policy (trust.Operations).
	Op string
}

// guardedEndpoints are every homeserver endpoint that takes UIA or changes
// credentials, devices, cross-signing keys, 3PIDs or login tokens with a
// token and a password; spec/protocol.md lists them with the endpoints left
// to pass through, and why.
var guardedEndpoints = []guardedEndpoint{
	{Method: http.MethodPost, Path: "/delete_devices", Op: trust.DeleteDevices, Prefixes: guardPrefixes,
		Body: canonical.Schema{"devices": canonical.KindDeviceIDs}},
	{Method: http.MethodDelete, Path: "/devices/{deviceId}", Op: trust.DeleteDevice, Prefixes: guardPrefixes,
		Body: canonical.Schema{}},
	{Method: http.MethodPost, Path: "/account/password", Op: trust.ChangePassword, Prefixes: guardPrefixes, NoToken: true, ChangesPassword: true,
		Body: canonical.Schema{"new_password": canonical.KindString, "logout_devices": canonical.KindBool}},
	{Method: http.MethodPost, Path: "/account/deactivate", Op: trust.Deactivate, Prefixes: guardPrefixes,
		Body: canonical.Schema{"erase": canonical.KindBool, "id_server": canonical.KindString}},
	{Method: http.MethodPost, Path: "/account/3pid/add", Op: trust.Add3PID, Prefixes: guardPrefixes,
		Body: canonical.Schema{"client_secret": canonical.KindString, "sid": canonical.KindString}},
	{Method: http.MethodPost, Path: "/account/3pid", Op: trust.Add3PID, Prefixes: guardPrefixes, OwnUIA: true,
		Body: canonical.Schema{"three_pid_creds": canonical.KindThreepidCreds, "bind": canonical.KindBool}},
	{Method: http.MethodPost, Path: "/keys/device_signing/upload", Op: trust.CrossSigningReset, Prefixes: guardPrefixes,
		Body: canonical.Schema{"master_key": canonical.KindObject, "self_signing_key": canonical.KindObject,
			"user_signing_key": canonical.KindObject}},
	{Method: http.MethodPost, Path: "/login/get_token", Op: trust.LoginToken, Prefixes: tokenPrefixes,
		Body: canonical.Schema{}},
	{Method: http.MethodPost, Path: "/login/token", Op: trust.LoginToken, Prefixes: tokenPrefixes[1:],
		Body: canonical.Schema{}},
}
