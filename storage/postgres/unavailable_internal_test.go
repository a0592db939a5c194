package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"nil", nil, false},
		{"no rows", pgx.ErrNoRows, false},
		{"not found", storage.ErrNotFound, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"query canceled", &pgconn.PgError{Code: "57014"}, false},
		{"connection refused", fmt.Errorf("x: %w", refused), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"eof", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"conn closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		{"closed pool", puddle.ErrClosedPool, true},
		{"caller cancelled", fmt.Errorf("x: %w", errors.Join(context.Canceled, refused)), false},
		{"caller deadline", context.DeadlineExceeded, false},
		{"already wrapped", fmt.Errorf("%w: %w", storage.ErrUnavailable, io.EOF), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			classify(&err)
			if got := errors.Is(err, storage.ErrUnavailable); got != tc.unavailable {
				t.Fatalf("classify(%v) = %v: unavailable %v; want %v", tc.err, err, got, tc.unavailable)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("classify(%v) = %v lost the original error", tc.err, err)
			}
			if tc.unavailable && tc.err != nil && errors.Is(tc.err, storage.ErrUnavailable) && err != tc.err {
				t.Fatalf("classify wrapped %v twice: %v", tc.err, err)
			}
		})
	}
}
