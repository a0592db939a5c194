// Package dendrite builds and runs a real Dendrite homeserver for end-to-end
// tests and the demo, and offers a minimal client (register, log in, raw calls).
//
// Dendrite (AGPL-3.0) is never imported: it is built from the separate tools
// module in internal/tools/dendrite into internal/tools/dendrite/bin and run
// as a child process. This package does not import "testing"; test helpers
// that fail a test live in internal/tesths.
package dendrite
