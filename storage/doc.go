// Package storage defines the one Store interface that holds all persistent 2FA
// state, its SQLite engine with embedded ordered migrations, and a conformance
// suite (storagetest) that every engine must pass.
package storage
