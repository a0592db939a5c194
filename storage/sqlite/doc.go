// Package sqlite is the embedded SQLite engine of storage.Store: WAL, foreign
// keys and a busy timeout set in the DSN, and embedded ordered migrations run in
// a transaction and recorded in schema_migrations.
package sqlite
