// Package provider is the provider API (/_matrix2fa/provider/v1/…) for other
// login paths (homeserver modules, other front ends): "is 2FA on for this
// user?" and "verify this code for this user", authorised by a shared secret.
package provider
