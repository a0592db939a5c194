package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
	"github.com/matrix-2fa/matrix-2fa/storage/storagetest"
)

func open(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) (storage.Store, func() storage.Store) {
		path := filepath.Join(t.TempDir(), "2fa.db")
		db := open(t, path)
		cur := db
		t.Cleanup(func() { cur.Close() })
		return db, func() storage.Store {
			cur.Close()
			cur = open(t, path)
			return cur
		}
	})
}

func TestPragmasAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "2fa.db")
	db := open(t, path)
	db.Close()
	db = open(t, path) // running migrations twice is a no-op
	db.Close()

	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var mode string
	if err := raw.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	var n int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(files) {
		t.Errorf("schema_migrations rows = %d, %v; want %d (one per file, each once)", n, err, len(files))
	}
}

func TestSynchronousOption(t *testing.T) {
	cases := []struct {
		mode    string
		wantErr bool
	}{{"", false}, {"normal", false}, {"FULL", false}, {"OFF", true}, {"bogus", true}}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{Synchronous: tc.mode})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Open(synchronous=%q) error = %v; wantErr %v", tc.mode, err, tc.wantErr)
			}
			if db != nil {
				db.Close()
			}
		})
	}
}

func BenchmarkAdvanceStep(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "b.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
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
