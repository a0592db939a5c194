// Package policy decides whom the gateway requires two-factor authentication
// of (none, all, or selected users, with exemptions), when each user's grace
// period ends, and whether a user is blocked until they enrol.
package policy
