package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// unavailable wraps err in storage.ErrUnavailable when it says the file
// cannot be used just now — locked by another process past the busy timeout
// (the sqlite3 shell, a backup, a second gateway on the file), an I/O error,
// a file that cannot be opened or written, a full disk — so the gateway
// answers 503, not 500. Nothing was written then: a transaction either
// commits or leaves no trace. Other errors (sql.ErrNoRows too), nil and
// errors already wrapping storage.ErrUnavailable are left alone. The pools
// (pool), transactions (tx, ptx) and the prepared reads (notFound) apply it.
func unavailable(err error) error {
	var se sqlite3.Error
	if err == nil || errors.Is(err, storage.ErrUnavailable) || !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrIoErr, sqlite3.ErrCantOpen, sqlite3.ErrReadonly, sqlite3.ErrFull:
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// pool is a connection pool whose errors say, through unavailable, when the
// file cannot be used just now: every statement the store runs outside a
// transaction goes through one.
type pool struct{ *sql.DB }

func (p pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := p.DB.ExecContext(ctx, query, args...)
	return res, unavailable(err)
}

func (p pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := p.DB.QueryContext(ctx, query, args...)
	return rows, unavailable(err)
}

func (p pool) QueryRowContext(ctx context.Context, query string, args ...any) scanner {
	return unavailableRow{p.DB.QueryRowContext(ctx, query, args...)}
}

func (p pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	tx, err := p.DB.BeginTx(ctx, opts)
	return tx, unavailable(err)
}

// unavailableRow is a row whose Scan error goes through unavailable.
type unavailableRow struct{ row *sql.Row }

func (r unavailableRow) Scan(dest ...any) error { return unavailable(r.row.Scan(dest...)) }
