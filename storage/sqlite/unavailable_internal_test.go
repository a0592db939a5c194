package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// TestLockedFileIsUnavailable: while another process holds the file's write
// lock past the busy timeout, writes outside a transaction (through the pool)
// and inside one fail with storage.ErrUnavailable (a 503), not a bare error;
// a row that is not there is still storage.ErrNotFound.
func TestLockedFileIsUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "2fa.db")
	d, err := Open(ctx, path, Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('lock', x'00')`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"exec", func() error { return d.PutMeta(ctx, "k", []byte("v")) }},
		{"insert", func() error {
			return d.AddAudit(ctx, storage.AuditEvent{UserID: "@a:hs", Kind: storage.AuditRegistered, At: time.Now()})
		}},
		{"conditional update", func() error { _, err := d.AdvanceStep(ctx, "@a:hs", 5); return err }},
		{"transaction", func() error { return d.ClearFailures(ctx, "@a:hs") }},
	} {
		if err := tc.do(); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s on a locked file: %v; want storage.ErrUnavailable", tc.name, err)
		}
	}
	if _, err := d.Meta(ctx, "nothing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a missing row while locked: %v; want storage.ErrNotFound", err)
	}
}
