package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// outageBound is how long one call may take while the server is down: a
// refused connection on loopback fails at once, so seconds mean a hang.
const outageBound = 3 * time.Second

// storeCall is one Store method with arguments that work on the seeded data.
type storeCall struct {
	name string
	call func(ctx context.Context, db storage.Store) error
}

func outageCalls(at time.Time) []storeCall {
	return []storeCall{
		{"TOTP", func(ctx context.Context, db storage.Store) error { _, err := db.TOTP(ctx, "@u:x"); return err }},
		{"HasTOTPFold", func(ctx context.Context, db storage.Store) error { _, err := db.HasTOTPFold(ctx, "@U:x"); return err }},
		{"AdvanceStep", func(ctx context.Context, db storage.Store) error {
			_, err := db.AdvanceStep(ctx, "@u:x", 1)
			return err
		}},
		{"ReserveAttempt", func(ctx context.Context, db storage.Store) error {
			_, err := db.ReserveAttempt(ctx, "@u:x", at, time.Minute, 100)
			return err
		}},
		{"ClearFailures", func(ctx context.Context, db storage.Store) error { return db.ClearFailures(ctx, "@u:x") }},
		{"RecoverySet", func(ctx context.Context, db storage.Store) error { _, err := db.RecoverySet(ctx, "@u:x"); return err }},
		{"ConsumeRecoveryCode", func(ctx context.Context, db storage.Store) error {
			_, err := db.ConsumeRecoveryCode(ctx, "@u:x", "s", 99, at)
			return err
		}},
		{"CreateSession", func(ctx context.Context, db storage.Store) error {
			return db.CreateSession(ctx, storage.UIASession{ID: "s-" + time.Now().Format(time.RFC3339Nano), UserID: "@u:x",
				CreatedAt: at, ExpiresAt: at.Add(time.Hour)})
		}},
		{"TakeSession", func(ctx context.Context, db storage.Store) error {
			_, err := db.TakeSession(ctx, "none")
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}},
		{"ExpiredSessions", func(ctx context.Context, db storage.Store) error {
			_, err := db.ExpiredSessions(ctx, at, 10)
			return err
		}},
		{"Meta", func(ctx context.Context, db storage.Store) error { _, err := db.Meta(ctx, "k"); return err }},
		{"PutMeta", func(ctx context.Context, db storage.Store) error { return db.PutMeta(ctx, "k", []byte("v")) }},
		{"KeyIDs", func(ctx context.Context, db storage.Store) error { _, err := db.KeyIDs(ctx); return err }},
	}
}

// TestOutageIsUnavailableAndRecovers stops the server under an open *DB (a
// cluster of the test's own: the shared one serves other packages) and starts
// it again: while it is down every method fails fast with an error wrapping
// storage.ErrUnavailable, and afterwards the same *DB works again by itself,
// nothing reopened, nothing lost.
func TestOutageIsUnavailableAndRecovers(t *testing.T) {
	srv := pgtest.OwnServer(t)
	db := open(t, srv.FreshDatabase(t))
	defer db.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	p := storage.Pending{UserID: "@u:x", Secret: []byte("s"), KeyID: "k", Algorithm: "SHA1", Digits: 6, Period: 30,
		CreatedAt: at, ExpiresAt: at.Add(100 * 365 * 24 * time.Hour)}
	if err := db.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := db.ConfirmEnrolment(ctx, p, 5, at, storage.RecoverySet{UserID: "@u:x", SetID: "s", Salt: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeta(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Several busy connections in the pool, so the outage breaks open ones
	// as well as new connection attempts.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range outageCalls(at) {
				if err := c.call(ctx, db); err != nil {
					t.Errorf("before the outage: %s: %v", c.name, err)
				}
			}
		}()
	}
	wg.Wait()

	srv.Stop(t)
	for round := range 2 { // the first round meets the dead connections, the second new attempts
		for _, c := range outageCalls(at) {
			start := time.Now()
			err := c.call(ctx, db)
			took := time.Since(start)
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("round %d, server down: %s = %v; want an error wrapping storage.ErrUnavailable", round, c.name, err)
			}
			if took > outageBound {
				t.Errorf("round %d, server down: %s took %s; want at most %s", round, c.name, took, outageBound)
			}
		}
	}

	srv.Start(t)
	for _, c := range outageCalls(at) {
		if err := c.call(ctx, db); err != nil {
			t.Errorf("after the restart, same *DB: %s: %v", c.name, err)
		}
	}
	if got, err := db.TOTP(ctx, "@u:x"); err != nil || got.LastStep != 5 {
		t.Errorf("after the restart: TOTP = %+v, %v; want the authenticator with last step 5", got, err)
	}

	// A closed pool is unavailable too (a replica shutting down), not a 500.
	db.Close()
	if _, err := db.TOTP(ctx, "@u:x"); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("closed: TOTP = %v; want storage.ErrUnavailable", err)
	}
}
