// Package flows holds the UIA stages (m.login.2fa.totp, m.login.2fa.recovery and
// the homeserver-checked m.login.password) behind one Stage interface, the flow
// policy that says which flows each request needs, and the fallback pages.
package flows
