// Package flows holds the UIA stages (m.login.2fa.totp, m.login.2fa.recovery and
// the homeserver-checked m.login.password) behind uia's Stage interface, and the
// flow policy that says which flows each request needs.
package flows
