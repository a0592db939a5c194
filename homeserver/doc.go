// Package homeserver is the upstream client: whoami (cached), password login,
// logout, a side-effect-free password check and request forwarding, tolerant of
// homeserver quirks such as "completed": null.
package homeserver
