// Package tesths holds test helpers for end-to-end tests: a real Dendrite
// homeserver per test (built once per process) and registered users. Every
// helper fails the test on error; none of them skips it.
package tesths
