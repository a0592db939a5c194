// Package admin is the operators' part of the gateway: the admin HTTP API
// (/_matrix2fa/admin/v1/…) and the admin page (/_matrix2fa/admin/), both
// authorised as a homeserver admin, a configured (possibly scoped) admin or
// the configured admin token, with every action audited under the admin's name.
package admin
