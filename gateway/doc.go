// Package gateway is the HTTP front placed before a homeserver's client API: it
// routes, streams every other request through, intercepts /login and the UIA
// endpoints to add the second factor, and serves the 2FA pages.
package gateway
