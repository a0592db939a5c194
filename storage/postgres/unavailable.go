package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// classify wraps *errp in storage.ErrUnavailable when it says the database
// could not be reached (see unreachable); every exported method defers it, so
// the gateway answers 503 instead of 500 during an outage. Other errors, nil
// and errors already wrapping storage.ErrUnavailable are left alone.
//
// A connection lost while a statement was in flight leaves its outcome
// unknown: a conditional UPDATE may have committed although the caller saw
// ErrUnavailable. Every security state change errs on the safe side then (a
// code consumed, a failure counted), never the other way.
func classify(errp *error) {
	err := *errp
	if err == nil || errors.Is(err, storage.ErrUnavailable) || !unreachable(err) {
		return
	}
	*errp = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
}

// unreachable reports whether err says the server could not be reached or
// went away: a failed connection attempt (refused, reset, the server starting
// up or shutting down), a connection that broke or was closed under a
// statement, a closed pool, or a server error of class 08 (connection
// exception) or 57P01–57P03 (admin or crash shutdown, cannot connect now).
// The caller's own cancellation or deadline is not an outage.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, "08"), code == "57P01", code == "57P02", code == "57P03":
			return true
		}
		// Any other server error inside a failed connection attempt (a
		// dropped database, a refused role) still means no connection.
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.SafeToRetry(err) {
		return true
	}
	if pgErr != nil {
		return false // the server answered: a real statement error
	}
	var netErr *net.OpError
	return errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, puddle.ErrClosedPool) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
