package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/postgres"
	"github.com/matrix-2fa/matrix-2fa/storage/storagetest"
)

// TestMain fails the package at once, with one clear message, when there is no
// test server to run against.
func TestMain(m *testing.M) {
	if os.Getenv("MATRIX2FA_TEST_PG") == "" {
		fmt.Fprintln(os.Stderr, "storage/postgres: "+pgtest.NoServer)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func open(tb testing.TB, dbURL string) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) (storage.Store, func() storage.Store) {
		dbURL := pgtest.FreshDatabase(t)
		db := open(t, dbURL)
		cur := db
		t.Cleanup(func() { cur.Close() })
		return db, func() storage.Store {
			cur.Close()
			cur = open(t, dbURL)
			return cur
		}
	})
}

// migrations reads schema_migrations as version → name.
func migrations(t *testing.T, dbURL string) map[int]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT version, name FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	n := 0
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got[v] = name
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(got) {
		t.Errorf("schema_migrations has %d rows for %d versions", n, len(got))
	}
	return got
}

// wantMigrations is every embedded migration file by its version number
// (taken from the files, not written out: a new migration is expected here).
var wantMigrations = func() map[int]string {
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		panic(fmt.Sprintf("migration files: %v, %v", files, err))
	}
	out := map[int]string{}
	for _, f := range files {
		name := filepath.Base(f)
		n, err := strconv.Atoi(name[:4])
		if err != nil {
			panic(err)
		}
		out[n] = name
	}
	return out
}()

func checkMigrations(t *testing.T, dbURL string) {
	t.Helper()
	got := migrations(t, dbURL)
	if len(got) != len(wantMigrations) {
		t.Errorf("schema_migrations = %v; want %v", got, wantMigrations)
	}
	for v, name := range wantMigrations {
		if got[v] != name {
			t.Errorf("migration %d recorded as %q; want %q", v, got[v], name)
		}
	}
}

func TestReopenRecordsNoMigrationTwice(t *testing.T) {
	dbURL := pgtest.FreshDatabase(t)
	for i := 0; i < 3; i++ {
		open(t, dbURL).Close()
	}
	checkMigrations(t, dbURL)
}

// TestConcurrentOpen starts several replicas on one fresh database at once:
// the advisory lock makes their migrations run one after another.
func TestConcurrentOpen(t *testing.T) {
	dbURL := pgtest.FreshDatabase(t)
	const replicas = 8
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	dbs := make([]*postgres.DB, replicas)
	start := make(chan struct{})
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			dbs[i], errs[i] = postgres.Open(context.Background(), dbURL)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
			continue
		}
		if _, err := dbs[i].KeyIDs(context.Background()); err != nil {
			t.Errorf("replica %d: the schema is not usable: %v", i, err)
		}
		dbs[i].Close()
	}
	checkMigrations(t, dbURL)
}

// TestReplicasShareOneLimit has three replicas (three pools, as three
// processes would have) take attempts for one user at once: the row lock is
// the server's, so exactly limit attempts get through in all, and exactly one
// replica accepts a TOTP step.
func TestReplicasShareOneLimit(t *testing.T) {
	dbURL := pgtest.FreshDatabase(t)
	ctx := context.Background()
	var replicas []*postgres.DB
	for range 3 {
		db := open(t, dbURL)
		defer db.Close()
		replicas = append(replicas, db)
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	p := storage.Pending{UserID: "@u:x", Secret: []byte("s"), KeyID: "k", Algorithm: "SHA1", Digits: 6, Period: 30,
		CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	if err := replicas[0].PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := replicas[1].ConfirmEnrolment(ctx, p, 1, at, storage.RecoverySet{UserID: "@u:x", SetID: "s", Salt: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var attempts, steps atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := replicas[i%len(replicas)]
			<-start
			a, err := db.ReserveAttempt(ctx, "@u:x", at, 15*time.Minute, 5)
			if err != nil {
				t.Errorf("ReserveAttempt: %v", err)
			}
			if a.Allowed {
				attempts.Add(1)
			}
			ok, err := db.AdvanceStep(ctx, "@u:x", 2)
			if err != nil {
				t.Errorf("AdvanceStep: %v", err)
			}
			if ok {
				steps.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if attempts.Load() != 5 || steps.Load() != 1 {
		t.Fatalf("across 3 replicas %d attempts got through a limit of 5 and %d accepted one step; want 5 and 1",
			attempts.Load(), steps.Load())
	}
}

func TestOpenErrors(t *testing.T) {
	base := pgtest.ServerURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	missing := *u
	missing.Path = "/m2fa_test_does_not_exist"
	secret := *u
	secret.User = url.UserPassword("nobody", "s3cret-password")
	secret.Host = "127.0.0.1:1" // nothing listens there
	cases := []struct {
		name string
		url  string
	}{
		{"unparsable", "postgres://[::1"},
		{"no such database", missing.String()},
		{"no server", secret.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			db, err := postgres.Open(ctx, tc.url)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), "s3cret-password") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func BenchmarkAdvanceStep(b *testing.B) {
	ctx := context.Background()
	db := open(b, pgtest.FreshDatabase(b))
	defer db.Close()
	p := storage.Pending{UserID: "@u:x", Secret: []byte("s"), KeyID: "k", Algorithm: "SHA1", Digits: 6, Period: 30}
	p.ExpiresAt = p.CreatedAt.AddDate(100, 0, 0)
	if err := db.PutPending(ctx, p); err != nil {
		b.Fatal(err)
	}
	if err := db.ConfirmEnrolment(ctx, p, 0, p.CreatedAt, storage.RecoverySet{UserID: "@u:x", SetID: "s", Salt: []byte("x")}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ok, err := db.AdvanceStep(ctx, "@u:x", int64(i+1)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
