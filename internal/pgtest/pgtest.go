// Package pgtest gives tests a PostgreSQL database of their own on the
// throwaway server scripts/test.sh starts (MATRIX2FA_TEST_PG): created with a
// random name, dropped when the test ends; a missing server fails the test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// NoServer says how to get a server when MATRIX2FA_TEST_PG is not set.
const NoServer = "MATRIX2FA_TEST_PG is not set: run the tests with scripts/test.sh, or start a server with " +
	"scripts/pg.sh start and export MATRIX2FA_TEST_PG=<the URL it prints>"

// ServerURL is the test server's URL from MATRIX2FA_TEST_PG. The tests fail,
// never skip, without one: an engine that is not tested is not known to work.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("MATRIX2FA_TEST_PG")
	if u == "" {
		tb.Fatal(NoServer)
	}
	return u
}

// FreshDatabase creates an empty database with a random name on the test
// server, drops it when the test ends, and returns its URL.
func FreshDatabase(tb testing.TB) string {
	tb.Helper()
	return freshDatabase(tb, ServerURL(tb))
}

// freshDatabase creates an empty database with a random name on the server
// at base, drops it when the test ends, and returns its URL.
func freshDatabase(tb testing.TB, base string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("cannot reach the PostgreSQL server in MATRIX2FA_TEST_PG (start it with scripts/pg.sh start): %v", err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	name := "m2fa_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		tb.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			tb.Errorf("DROP DATABASE %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("MATRIX2FA_TEST_PG must be a postgres:// URL, not %q", base)
	}
	u.Path = "/" + name
	return u.String()
}
