// Package account is the two-factor domain: enrolment and confirmation, replay-safe
// TOTP verification, single-use recovery codes, lockout, secret encryption at rest,
// and the /account/two-factor HTTP handlers.
package account
