// Package gateway is the HTTP front placed before a homeserver's client API: one
// table of every route it serves, the JSON interception (/login, the guarded UIA
// endpoints, /account/two-factor), and everything else streamed through untouched.
package gateway
