// Package account is the two-factor domain: enrolment and confirmation, replay-safe
// TOTP verification, single-use recovery codes, lockout, and the master key: secret
// encryption at rest, derived keys, and the key file's rotation protocol.
package account
