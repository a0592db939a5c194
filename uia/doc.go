// Package uia is the user-interactive authentication engine: sessions bound to
// one request (method, path, user), flows, completed stages and the 401 body of
// the Matrix spec. It knows nothing of TOTP or of upstream homeservers.
package uia
