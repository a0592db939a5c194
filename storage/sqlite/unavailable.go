package sqlite

import (
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
// commits or leaves no trace. Other errors, nil and errors already wrapping
// storage.ErrUnavailable are left alone. Transactions (tx, ptx), affected and
// notFound apply it: every write and single-row read goes through one of them.
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
