// Package storage defines the one Store interface that holds all persistent 2FA
// state and the lockout arithmetic its engines share; the engines (sqlite, postgres)
// and the conformance suite every engine must pass (storagetest) are its subpackages.
package storage
