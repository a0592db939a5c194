package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache holds the statements of one pool prepared once (database/sql
// prepares a statement again on each connection that first runs it), so a
// hot statement is not compiled by SQLite on every call.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
	// wanted: statements first run inside a transaction of the writer, to
	// prepare once the writer's one connection is free again (preparing on
	// the pool while a transaction holds it would wait forever).
	wanted map[string]bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// get returns query prepared on the cache's pool, preparing it first.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok { // prepared meanwhile
		st.Close()
		return old, nil
	}
	c.m[query] = st
	return st, nil
}

// cached returns query if it is prepared, and otherwise notes it as wanted.
func (c *stmtCache) cached(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[query]
	if !ok {
		c.wanted[query] = true
	}
	return st
}

// prepareWanted prepares the wanted statements; call it holding no
// connection of the pool. A statement that fails to prepare stays unprepared.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	c.mu.Lock()
	var queries []string
	for q := range c.wanted {
		queries = append(queries, q)
	}
	clear(c.wanted)
	c.mu.Unlock()
	for _, q := range queries {
		c.get(ctx, q) //nolint:errcheck // it runs unprepared then
	}
}

// close closes every cached statement.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m = map[string]*sql.Stmt{}
	return errors.Join(errs...)
}

// scanner is a row to scan: *sql.Row, or errRow.
type scanner interface{ Scan(dest ...any) error }

// errRow is a row whose Scan fails with err (its statement did not prepare).
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// queryRow runs a one-row query through the cache.
func (c *stmtCache) queryRow(ctx context.Context, query string, args ...any) scanner {
	st, err := c.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// ptx is a write transaction whose statements come from the writer's cache
// (the writer is one connection, so they are prepared once).
type ptx struct {
	tx *sql.Tx
	c  *stmtCache
}

// ExecContext runs a statement in the transaction.
func (t ptx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.c.cached(query); st != nil {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t ptx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.c.cached(query); st != nil {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a one-row query in the transaction.
func (t ptx) QueryRowContext(ctx context.Context, query string, args ...any) scanner {
	if st := t.c.cached(query); st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// ptx runs fn in a write transaction (as tx) whose statements are cached;
// the statements it ran for the first time are prepared afterwards.
func (d *DB) ptx(ctx context.Context, fn func(ptx) error) error {
	err := d.tx(ctx, func(tx *sql.Tx) error { return fn(ptx{tx: tx, c: d.ws}) })
	d.ws.prepareWanted(ctx)
	return err
}
