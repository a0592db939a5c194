// Package postgres is the PostgreSQL engine of storage.Store, for gateway
// replicas that share one database: a pgx connection pool, race-safe conditional
// statements under READ COMMITTED, and embedded ordered migrations run under an advisory lock.
package postgres
