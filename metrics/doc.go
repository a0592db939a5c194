// Package metrics counts what the gateway does for Prometheus: second-factor attempts, lockouts,
// held logins, UIA challenges, enrolment changes, homeserver calls, HTTP requests and failed
// notifications, on a registry of its own, with bounded labels and never a user ID.
package metrics
