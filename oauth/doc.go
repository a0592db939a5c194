// Package oauth is the gateway's OAuth 2.0 authorization server for the Matrix
// OAuth 2.0 API (client-server API v1.15+): server metadata, dynamic client
// registration, the authorization code grant with PKCE, refresh and revocation,
// and whether the page may register users (prompt=create, registration.go).
//
// The access token a client gets is the homeserver's own, obtained by the
// gateway after the password and the second factor (the authorization page
// lives in package pages); the gateway adds only its own rotating refresh
// token, which hands that same homeserver token back while it is valid, or,
// where the homeserver gave its own refresh token (hsrefresh.go; Synapse,
// tested only against a fake homeserver here, never a real Synapse), renews
// it at the homeserver. The m.oauth UIA stage (approval.go) covers every
// guarded operation of a 2FA user holding such a token.
//
// Why no OAuth server library: zitadel/oidc's op package mints its own
// access tokens (the client must get the homeserver's), needs signing keys
// and a JWKS for ID tokens Matrix clients do not ask for, and has no RFC 7591
// registration; ory/fosite could carry the homeserver's token through a
// custom token strategy, but brings its session and storage model for the
// same few checks and has no RFC 7591 registration either. What is left here
// is small and checked by tests: PKCE S256 (crypto/sha256, compared in
// constant time), single-use codes and rotating refresh tokens (stored as
// SHA-256, taken atomically), redirect-URI rules and RFC 6749/7009 errors.
package oauth
