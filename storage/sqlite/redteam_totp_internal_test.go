package sqlite

// Red team of the SQLite engine's single writer, query-only read pool and
// prepared statements (the one-transaction TOTP check). Each test fails if
// its attack succeeds; the measurements are logged.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

var rt0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const rtUser = "@alice:example.org"

func rtOpen(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "2fa.db")
	d, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func rtEnable(t *testing.T, d *DB, user string) {
	t.Helper()
	ctx := context.Background()
	p := storage.Pending{UserID: user, Secret: []byte("c"), KeyID: "k1", Algorithm: "SHA1", Digits: 6, Period: 30,
		CreatedAt: rt0, ExpiresAt: rt0.Add(time.Hour)}
	if err := d.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	set := storage.RecoverySet{UserID: user, SetID: "s1", Salt: []byte("salt"), GeneratedAt: rt0,
		Codes: []storage.RecoveryCode{{Index: 0, Hash: []byte("h")}}}
	if err := d.ConfirmEnrolment(ctx, p, 1, rt0, set); err != nil {
		t.Fatal(err)
	}
}

func rtUse(user string, now time.Time, matched bool, step int64) storage.TOTPUse {
	return storage.TOTPUse{UserID: user, Now: now, Window: 15 * time.Minute, Limit: 100, Matched: matched, Step: step}
}

// TestRedTeamReadPoolIsQueryOnly: every connection of the read pool refuses
// writes (a write routed there by mistake fails instead of racing the
// writer), and cannot be switched back by a statement on another of them.
func TestRedTeamReadPoolIsQueryOnly(t *testing.T) {
	d, _ := rtOpen(t)
	ctx := context.Background()
	var conns []interface{ Close() error }
	for i := range readers {
		c, err := d.r.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, fmt.Sprint("k", i), []byte("v")); err == nil {
			t.Fatalf("read connection %d accepted an INSERT", i)
		}
		if _, err := c.ExecContext(ctx, `DELETE FROM totp`); err == nil {
			t.Fatalf("read connection %d accepted a DELETE", i)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if _, err := d.r.ExecContext(ctx, `UPDATE totp SET last_step = 0`); err == nil {
		t.Fatal("the read pool accepted an UPDATE")
	}
}

// TestRedTeamWALCheckpointUnderReaders: 3000 TOTP checks (each writes
// failures) while 8 readers read sessions and secrets without a pause: the
// WAL is still checkpointed in full once they stop — readers through
// prepared statements must not pin a snapshot.
func TestRedTeamWALCheckpointUnderReaders(t *testing.T) {
	d, path := rtOpen(t)
	ctx := context.Background()
	for i := range 50 {
		rtEnable(t, d, fmt.Sprintf("@u%d:example.org", i))
	}
	if err := d.CreateSession(ctx, storage.UIASession{ID: "s", Kind: storage.KindUIA, UserID: rtUser,
		Flows: [][]string{{"a"}}, Completed: []string{}, CreatedAt: rt0, ExpiresAt: rt0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d.Session(ctx, "s")
				d.TOTP(ctx, fmt.Sprintf("@u%d:example.org", i))
				reads.Add(1)
			}
		}()
	}
	var maxWAL int64
	for i := range 3000 {
		user := fmt.Sprintf("@u%d:example.org", i%50)
		if _, err := d.UseTOTP(ctx, rtUse(user, rt0.Add(time.Duration(i)*time.Second), false, 0)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			if fi, err := os.Stat(path + "-wal"); err == nil {
				maxWAL = max(maxWAL, fi.Size())
			}
		}
	}
	close(stop)
	wg.Wait()
	var busy, logFrames, ckpt int
	if err := d.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &ckpt); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads alongside; largest WAL %d KiB; final checkpoint busy=%d log=%d checkpointed=%d", reads.Load(), maxWAL>>10, busy, logFrames, ckpt)
	// The WAL's largest size is logged, not asserted: under reads that never
	// pause, SQLite cannot restart the WAL (checkpoint starvation, 7–24 MiB
	// for these 3000 writes on a shared machine), and forcing a restart (a
	// RESTART checkpoint) stalls every write behind the longest read (an
	// admin audit query: 443 ms in TestRedTeamWriterStarvation when tried). What must
	// hold is that every frame is checkpointed once the reads pause.
	if busy != 0 || logFrames != ckpt {
		t.Errorf("after the load the WAL is not fully checkpointed: busy=%d log=%d checkpointed=%d", busy, logFrames, ckpt)
	}
}

// TestRedTeamStatementsAfterErrors: the cached statements keep working
// under concurrent use when many of the transactions using them fail
// (cancelled contexts, a missing user) — no statement is left broken or
// bound to a dead transaction. Run with -race.
func TestRedTeamStatementsAfterErrors(t *testing.T) {
	d, _ := rtOpen(t)
	rtEnable(t, d, rtUser)
	var wg sync.WaitGroup
	var okCount, errCount atomic.Int64
	var step atomic.Int64
	step.Store(1)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				switch (g + i) % 4 {
				case 0:
					ctx, cancel = context.WithCancel(ctx)
					cancel()
				case 1:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(i%5)*100*time.Microsecond)
				}
				user := rtUser
				if i%7 == 0 {
					user = "@nobody:example.org"
				}
				_, err := d.UseTOTP(ctx, rtUse(user, rt0.Add(time.Duration(i)*time.Millisecond), true, step.Add(1)))
				cancel()
				if err != nil {
					errCount.Add(1)
				} else {
					okCount.Add(1)
				}
				if _, err := d.TOTP(context.Background(), rtUser); err != nil {
					t.Errorf("TOTP read after a failed check: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d checks succeeded, %d failed", okCount.Load(), errCount.Load())
	// everything still works, with the statements cached
	ctx := context.Background()
	if err := d.ClearFailures(ctx, rtUser); err != nil {
		t.Fatal(err)
	}
	before, _ := d.TOTP(ctx, rtUser)
	out, err := d.UseTOTP(ctx, rtUse(rtUser, rt0, true, before.LastStep+1))
	if err != nil || !out.Accepted {
		t.Fatalf("a fresh step after the storm: %+v %v", out, err)
	}
	out, err = d.UseTOTP(ctx, rtUse(rtUser, rt0, true, before.LastStep+1))
	if err != nil || out.Accepted || !out.Replayed {
		t.Fatalf("the same step again: %+v %v", out, err)
	}
	d.ws.mu.Lock()
	n := len(d.ws.m)
	d.ws.mu.Unlock()
	if n == 0 {
		t.Error("no statement of the writer was ever prepared")
	}
}

// TestRedTeamWriterStarvation measures a TOTP check's latency while other
// writers run: a reader-only admin audit query must not delay it (it is on
// the read pool), and the expiry sweep (one statement per session) must not
// hold the writer for long. A key rotation (Rewrap, one transaction) is
// measured and logged: every login waits for all of it.
func TestRedTeamWriterStarvation(t *testing.T) {
	d, _ := rtOpen(t)
	ctx := context.Background()
	rtEnable(t, d, rtUser)
	// 200k audit rows, 3000 expired sessions, 5000 users
	if err := d.tx(ctx, func(tx *sql.Tx) error {
		for i := range 200000 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit (user_id, kind, detail, at) VALUES (?, ?, ?, ?)`,
				fmt.Sprintf("@u%d:example.org", i%5000), "login", "detail", ms(rt0)); err != nil {
				return err
			}
		}
		for i := range 5000 {
			u := fmt.Sprintf("@u%d:example.org", i)
			if _, err := tx.ExecContext(ctx, `INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
				VALUES (?, ?, 'k1', 'SHA1', 6, 30, 1, ?)`, u, make([]byte, 48), ms(rt0)); err != nil {
				return err
			}
		}
		for i := range 3000 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO uia_sessions (id, kind, user_id, method, path, flows, params, completed, data, created_at, expires_at)
				VALUES (?, 'uia', ?, 'POST', '/x', '[["a"]]', '{}', '[]', NULL, ?, ?)`, fmt.Sprint("x", i), rtUser, ms(rt0), ms(rt0)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var step atomic.Int64
	step.Store(1)
	measure := func(name string, load func()) (p50, worst time.Duration) {
		done := make(chan struct{})
		go func() { load(); close(done) }()
		var lat []time.Duration
		for {
			select {
			case <-done:
				if len(lat) == 0 {
					return 0, 0
				}
				slices.Sort(lat)
				t.Logf("%s: %d checks, p50 %v, worst %v", name, len(lat), lat[len(lat)/2], lat[len(lat)-1])
				return lat[len(lat)/2], lat[len(lat)-1]
			default:
			}
			t0 := time.Now()
			if _, err := d.UseTOTP(ctx, rtUse(rtUser, rt0, true, step.Add(1))); err != nil {
				t.Error(err)
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(time.Millisecond)
		}
	}
	_, worstAudit := measure("admin audit query (200k rows, no filter)", func() {
		for range 5 {
			if _, err := d.QueryAudit(ctx, storage.AuditQuery{Limit: -1}); err != nil {
				t.Error(err)
			}
		}
	})
	_, worstSweep := measure("sweep of 3000 expired sessions", func() {
		for {
			exp, err := d.ExpiredSessions(ctx, rt0.Add(time.Minute), 100)
			if err != nil || len(exp) == 0 {
				return
			}
			for _, s := range exp {
				d.TakeSession(ctx, s.ID)
			}
		}
	})
	_, worstRewrap := measure("key rotation (Rewrap of 5001 secrets)", func() {
		if _, err := d.Rewrap(ctx, func(user string, sec []byte, keyID string) ([]byte, string, error) {
			return sec, "k2", nil
		}, "rt", []byte("v")); err != nil {
			t.Error(err)
		}
	})
	if worstAudit > 250*time.Millisecond {
		t.Errorf("a read-only audit query delayed a TOTP check by %v", worstAudit)
	}
	if worstSweep > 250*time.Millisecond {
		t.Errorf("the sweep delayed a TOTP check by %v", worstSweep)
	}
	_ = worstRewrap
}
