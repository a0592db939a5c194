// Package oauth is the gateway's OAuth 2.0 authorization server for the Matrix
// OAuth 2.0 API (client-server API v1.15+): server metadata, dynamic client
// registration, the authorization code grant with PKCE, refresh and revocation.
//
// The access token a client gets is the homeserver's own, obtained by the
// gateway after the password and the second factor (the authorization page
// lives in package pages); the gateway adds only its own rotating refresh
// token, which hands that same homeserver token back while it is valid.
package oauth
