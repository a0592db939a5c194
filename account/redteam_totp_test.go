package account_test

// Red team of the one-transaction TOTP check (storage.Store.UseTOTP,
// account.VerifyTOTP/VerifyTOTPStep): replay, lockout, oracles, atomicity and
// outages, on SQLite (one handle, and two handles on one file) and on
// PostgreSQL (two "replicas": two pools on one database). Each test fails if
// its attack succeeds.
//
// Failing tests (findings) at the time of writing:
//   - TestRedTeamTOTPSQLiteBusyIs503: an SQLite write lock held elsewhere (the
//     admin CLI, a backup, a second gateway on the file) makes a code check
//     fail with "database is locked", answered 500, not 503.
//   - TestRedTeamTOTPSQLitePanicInTxFreesWriter: a panic inside a write
//     transaction (here the Audit callback of UseTOTP) leaves the single
//     writer connection in an open transaction: every later write waits
//     (until the panicking call's context ends; forever for Background).
//   - TestRedTeamTOTPDisabledMidCheck: 2FA turned off (Disable, admin reset)
//     between the secret's read and UseTOTP makes UseTOTP return
//     storage.ErrNotFound, which account.useTOTP passes on: a 500.

import (
	"context"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/postgres"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"

	"github.com/sirupsen/logrus"
)

var base32NoPadding = base32.StdEncoding.WithPadding(base32.NoPadding)

const (
	rtStageTOTP     = "m.login.2fa.totp"
	rtStagePassword = "m.login.password"
)

// rtCluster is one or more account services ("replicas") on one database.
type rtCluster struct {
	t      *testing.T
	stores []storage.Store
	svcs   []*account.Service
	clock  *clock
	cfg    account.Config
	box    *account.SecretBox
	secret []byte
	codes  []string
}

// rtBackends are the deployments attacked: name → a function opening n
// stores on one fresh database.
var rtBackends = []struct {
	name string
	open func(t *testing.T, n int) []storage.Store
}{
	{"sqlite", func(t *testing.T, n int) []storage.Store {
		path := filepath.Join(t.TempDir(), "2fa.db")
		var out []storage.Store
		for range n {
			db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			out = append(out, db)
		}
		return out
	}},
	{"postgres", func(t *testing.T, n int) []storage.Store {
		url := pgtest.FreshDatabase(t)
		var out []storage.Store
		for range n {
			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			out = append(out, db)
		}
		return out
	}},
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// newCluster opens n services on the stores and enrols alice through the first.
func newCluster(t *testing.T, stores []storage.Store, cfg account.Config) *rtCluster {
	t.Helper()
	c := &rtCluster{t: t, stores: stores, clock: &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}, cfg: cfg}
	box, err := account.NewSecretBox(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	c.box = box
	for _, s := range stores {
		if err := account.CheckKey(context.Background(), s, box); err != nil {
			t.Fatal(err)
		}
		svc, err := account.NewService(s, box, cfg, account.WithClock(c.clock.Now), account.WithLogger(quietLog()))
		if err != nil {
			t.Fatal(err)
		}
		c.svcs = append(c.svcs, svc)
	}
	ctx := context.Background()
	en, err := c.svcs[0].Enrol(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if c.secret, err = decodeSecret(en.Secret); err != nil {
		t.Fatal(err)
	}
	if c.codes, err = c.svcs[0].Confirm(ctx, alice, c.codeAt(0)); err != nil {
		t.Fatal(err)
	}
	c.clock.Add(30 * time.Second)
	return c
}

func decodeSecret(s string) ([]byte, error) {
	return base32NoPadding.DecodeString(s)
}

// codeAt is alice's code of the step offset steps from now.
func (c *rtCluster) codeAt(offset int) string {
	c.t.Helper()
	p := c.svcs[0].Params()
	code, err := account.CodeAt(c.secret, account.Step(c.clock.Now(), p.Period)+int64(offset), p)
	if err != nil {
		c.t.Fatal(err)
	}
	return code
}

// wrong is a code that is none of the accepted steps' codes.
func (c *rtCluster) wrong() string {
	valid := map[string]bool{}
	for o := -3; o <= 3; o++ {
		valid[c.codeAt(o)] = true
	}
	for i := 0; ; i++ {
		w := fmt.Sprintf("%06d", (i*137777+1)%1000000)
		if !valid[w] {
			return w
		}
	}
}

func (c *rtCluster) lastStep() int64 {
	c.t.Helper()
	rec, err := c.stores[0].TOTP(context.Background(), alice)
	if err != nil {
		c.t.Fatal(err)
	}
	return rec.LastStep
}

// held stores a held-login-like session: password done, TOTP left.
func (c *rtCluster) held(id string) storage.SessionStep {
	c.t.Helper()
	now := c.clock.Now()
	in := storage.UIASession{ID: id, Kind: storage.KindHeldLogin, UserID: alice, Method: "POST", Path: "/login",
		Flows: [][]string{{rtStagePassword, rtStageTOTP}}, Completed: []string{rtStagePassword}, Data: []byte("held " + id),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := c.stores[0].CreateSession(context.Background(), in); err != nil {
		c.t.Fatal(err)
	}
	return storage.SessionStep{ID: id, Before: []string{rtStagePassword}, Stage: rtStageTOTP, Take: true}
}

// guarded stores a guarded-UIA-like session: TOTP then password.
func (c *rtCluster) guarded(id string) storage.SessionStep {
	c.t.Helper()
	now := c.clock.Now()
	in := storage.UIASession{ID: id, Kind: storage.KindUIA, UserID: alice, Method: "POST", Path: "/delete_devices",
		Flows: [][]string{{rtStageTOTP, rtStagePassword}}, Completed: []string{}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := c.stores[0].CreateSession(context.Background(), in); err != nil {
		c.t.Fatal(err)
	}
	return storage.SessionStep{ID: id, Before: []string{}, Stage: rtStageTOTP}
}

// failures is the user's streak of failures; it records one more (call it last).
func (c *rtCluster) failures() int {
	c.t.Helper()
	a, err := c.stores[0].ReserveAttempt(context.Background(), alice, c.clock.Now(), c.cfg.LockoutWindow, 1<<30)
	if err != nil {
		c.t.Fatal(err)
	}
	return a.Failures - 1
}

// audits is how many audit events alice has.
func (c *rtCluster) audits() int {
	c.t.Helper()
	evs, err := c.stores[0].AuditEvents(context.Background(), alice, 10000)
	if err != nil {
		c.t.Fatal(err)
	}
	return len(evs)
}

func (c *rtCluster) unlock() {
	c.t.Helper()
	if err := c.stores[0].ClearFailures(context.Background(), alice); err != nil {
		c.t.Fatal(err)
	}
}

// eachBackend runs fn on every backend with n stores (replicas) each.
func eachBackend(t *testing.T, n int, cfg account.Config, fn func(t *testing.T, c *rtCluster)) {
	for _, b := range rtBackends {
		t.Run(b.name, func(t *testing.T) {
			fn(t, newCluster(t, b.open(t, n), cfg))
		})
	}
}

// TestRedTeamTOTPReplayMixedConcurrent: one code sent 20 times at once
// through every kind of entry point (a plain check as the pages and
// /account/two-factor/disable do, a held login's take, a guarded UIA stage)
// on two replicas: exactly one use wins, at most one session moves.
func TestRedTeamTOTPReplayMixedConcurrent(t *testing.T) {
	cfg := fastConfig()
	cfg.LockoutLimit = 100 // the replays must not be hidden behind a lockout
	eachBackend(t, 2, cfg, func(t *testing.T, c *rtCluster) {
		for round := range 5 {
			code := c.codeAt(0)
			before := c.lastStep()
			heldSteps := []storage.SessionStep{c.held(fmt.Sprintf("h%d-a", round)), c.held(fmt.Sprintf("h%d-b", round))}
			uiaSteps := []storage.SessionStep{c.guarded(fmt.Sprintf("g%d-a", round)), c.guarded(fmt.Sprintf("g%d-b", round))}
			var wins, moved, errs atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					svc := c.svcs[i%len(c.svcs)]
					<-start
					var err error
					var done bool
					switch i % 3 {
					case 0:
						err = svc.VerifyTOTP(context.Background(), alice, code)
					case 1:
						done, _, err = svc.VerifyTOTPStep(context.Background(), alice, code, heldSteps[i%2])
					default:
						done, _, err = svc.VerifyTOTPStep(context.Background(), alice, code, uiaSteps[i%2])
					}
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, account.ErrInvalidCode):
					default:
						errs.Add(1)
						t.Errorf("unexpected error: %v", err)
					}
					if done {
						moved.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || moved.Load() > 1 {
				t.Fatalf("round %d: one code accepted %d times, %d sessions moved; want 1 and at most 1", round, wins.Load(), moved.Load())
			}
			if got := c.lastStep(); got != before+1 {
				t.Fatalf("round %d: last step %d; want %d", round, got, before+1)
			}
			c.unlock()
			c.clock.Add(30 * time.Second)
		}
	})
}

// TestRedTeamTOTPOlderStepAfterNewer: after the code of step N+1 (the skew
// accepts it early), the codes of N and N-1 are replays, on either replica.
func TestRedTeamTOTPOlderStepAfterNewer(t *testing.T) {
	cfg := fastConfig()
	eachBackend(t, 2, cfg, func(t *testing.T, c *rtCluster) {
		ctx := context.Background()
		newer, cur, older := c.codeAt(1), c.codeAt(0), c.codeAt(-1)
		if err := c.svcs[0].VerifyTOTP(ctx, alice, newer); err != nil {
			t.Fatalf("the next step's code: %v", err)
		}
		for i, code := range []string{cur, older, newer} {
			err := c.svcs[(i+1)%2].VerifyTOTP(ctx, alice, code)
			if !errors.Is(err, account.ErrReplayed) {
				t.Fatalf("code %d after a newer step: %v; want a replay", i, err)
			}
		}
		// and after the clock moves on, the used step is still refused
		c.clock.Add(30 * time.Second)
		if err := c.svcs[1].VerifyTOTP(ctx, alice, c.codeAt(0)); !errors.Is(err, account.ErrReplayed) {
			t.Fatalf("the used step's code a period later: %v; want a replay", err)
		}
	})
}

// TestRedTeamTOTPWrongCodesLimit: 40 wrong codes at once on two replicas are
// answered as wrong exactly LockoutLimit times, the rest locked; the counter
// is shared by TOTP and recovery codes and by both replicas; the right code
// is then refused and changes nothing.
func TestRedTeamTOTPWrongCodesLimit(t *testing.T) {
	cfg := fastConfig()
	eachBackend(t, 2, cfg, func(t *testing.T, c *rtCluster) {
		ctx := context.Background()
		wrong := c.wrong()
		var invalid, locked atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var err error
				switch i % 4 {
				case 3:
					err = c.svcs[i%2].VerifyRecovery(ctx, alice, "aaaa-bbbb-cccc")
				default:
					err = c.svcs[i%2].VerifyTOTP(ctx, alice, wrong)
				}
				if _, ok := account.IsLocked(err); ok {
					locked.Add(1)
				} else if errors.Is(err, account.ErrInvalidCode) {
					invalid.Add(1)
				} else {
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if int(invalid.Load()) != cfg.LockoutLimit {
			t.Fatalf("%d wrong codes were checked (not locked) of 40; want exactly %d", invalid.Load(), cfg.LockoutLimit)
		}
		before := c.lastStep()
		if _, ok := account.IsLocked(c.svcs[1].VerifyTOTP(ctx, alice, c.codeAt(0))); !ok {
			t.Fatal("a locked user's right code was not refused as locked")
		}
		if c.lastStep() != before {
			t.Fatal("a locked user's right code advanced the step")
		}
		if _, ok := account.IsLocked(c.svcs[0].VerifyRecovery(ctx, alice, c.codes[0])); !ok {
			t.Fatal("a locked user's recovery code was not refused as locked")
		}
	})
}

// TestRedTeamTOTPLockedNoOracle: for a locked user, the right code and a
// wrong one get the same error, text and wait, change nothing, and take
// about as long (medians within 25% + 2 ms).
func TestRedTeamTOTPLockedNoOracle(t *testing.T) {
	cfg := fastConfig()
	eachBackend(t, 1, cfg, func(t *testing.T, c *rtCluster) {
		ctx := context.Background()
		for range cfg.LockoutLimit {
			c.svcs[0].VerifyTOTP(ctx, alice, c.wrong())
		}
		step, evs := c.lastStep(), c.audits()
		right, wrong := c.codeAt(0), c.wrong()
		e1, e2 := c.svcs[0].VerifyTOTP(ctx, alice, right), c.svcs[0].VerifyTOTP(ctx, alice, wrong)
		w1, ok1 := account.IsLocked(e1)
		w2, ok2 := account.IsLocked(e2)
		if !ok1 || !ok2 || w1.RetryAfter != w2.RetryAfter || e1.Error() != e2.Error() {
			t.Fatalf("locked answers differ: right %v (%v), wrong %v (%v)", e1, w1, e2, w2)
		}
		m1, m2 := httperr.Matrix(e1), httperr.Matrix(e2)
		if m1.StatusCode != m2.StatusCode || m1.Err != m2.Err || m1.ErrCode != m2.ErrCode {
			t.Fatalf("Matrix answers differ: %+v vs %+v", m1, m2)
		}
		var tr, tw []time.Duration
		for i := range 400 {
			code := right
			if i%2 == 1 {
				code = wrong
			}
			t0 := time.Now()
			c.svcs[0].VerifyTOTP(ctx, alice, code)
			if d := time.Since(t0); i%2 == 0 {
				tr = append(tr, d)
			} else {
				tw = append(tw, d)
			}
		}
		mr, mw := median(tr), median(tw)
		t.Logf("locked user: median %v with the right code, %v with a wrong one", mr, mw)
		hi, lo := max(mr, mw), min(mr, mw)
		if hi > lo+lo/4+2*time.Millisecond {
			t.Errorf("timing oracle: medians %v (right) vs %v (wrong)", mr, mw)
		}
		if c.lastStep() != step || c.audits() != evs {
			t.Fatalf("locked attempts changed the state: step %d→%d, audit events %d→%d", step, c.lastStep(), evs, c.audits())
		}
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestRedTeamRecoverySingleUseReplicas: one recovery code sent 20 times at
// once across two replicas works once; the rest count as failures.
func TestRedTeamRecoverySingleUseReplicas(t *testing.T) {
	cfg := fastConfig()
	cfg.LockoutLimit = 100
	eachBackend(t, 2, cfg, func(t *testing.T, c *rtCluster) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if c.svcs[i%2].VerifyRecovery(context.Background(), alice, c.codes[2]) == nil {
					wins.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("one recovery code worked %d times", wins.Load())
		}
		// Each later reuse counts, on either replica. (The concurrent
		// reuses' failures may be wiped by the winner's ClearFailures:
		// success forgets the failures, by design.)
		c.unlock()
		for i := range 5 {
			if err := c.svcs[i%2].VerifyRecovery(context.Background(), alice, c.codes[2]); !errors.Is(err, account.ErrInvalidCode) {
				t.Fatalf("reuse %d: %v", i, err)
			}
		}
		if f := c.failures(); f != 5 {
			t.Fatalf("%d failures recorded for 5 reuses", f)
		}
	})
}

// cancelStore cancels the context of UseTOTP at a random moment (a client
// that hangs up right after sending its code), inside the transaction too:
// the Audit callback, which runs in it, may cancel.
type cancelStore struct {
	storage.Store
	rnd *rand.Rand
	mu  sync.Mutex
}

func (s *cancelStore) UseTOTP(ctx context.Context, u storage.TOTPUse) (storage.TOTPOutcome, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	mode, delay := s.rnd.IntN(3), time.Duration(s.rnd.IntN(3000))*time.Microsecond
	s.mu.Unlock()
	switch mode {
	case 0: // somewhere in the transaction
		time.AfterFunc(delay, cancel)
	case 1: // in the transaction, after every statement but the audit
		audit := u.Audit
		u.Audit = func(o storage.TOTPOutcome) []storage.AuditEvent {
			cancel()
			if audit == nil {
				return nil
			}
			return audit(o)
		}
	}
	return s.Store.UseTOTP(ctx, u)
}

// TestRedTeamTOTPAtomicUnderCancel: with the context cancelled at random
// moments, a held login's check is all or nothing: the step advanced if and
// only if the session was taken, and a success is only reported when both
// happened; a code whose check failed that way is never accepted later if
// its step advanced (no replay), and the session is never taken without
// the step.
func TestRedTeamTOTPAtomicUnderCancel(t *testing.T) {
	cfg := fastConfig()
	cfg.LockoutLimit = 100
	for _, b := range rtBackends {
		t.Run(b.name, func(t *testing.T) {
			stores := b.open(t, 1)
			cs := &cancelStore{Store: stores[0], rnd: rand.New(rand.NewPCG(1, 2))}
			c := newCluster(t, []storage.Store{cs}, cfg)
			c.stores = stores // read state through the real store
			var outcomes [4]int
			for i := range 150 {
				id := fmt.Sprintf("s%d", i)
				step := c.held(id)
				before := c.lastStep()
				done, taken, err := c.svcs[0].VerifyTOTPStep(context.Background(), alice, c.codeAt(0), step)
				advanced, gone := c.settled(id, before)
				if advanced != gone {
					t.Fatalf("round %d: step advanced %v but session taken %v (err %v)", i, advanced, gone, err)
				}
				if err == nil && (!done || taken.ID != id || !gone) {
					t.Fatalf("round %d: success reported without the session: done %v taken %q gone %v", i, done, taken.ID, gone)
				}
				if err != nil && done {
					t.Fatalf("round %d: error %v yet done", i, err)
				}
				outcomes[btoi(err == nil)*2+btoi(advanced)]++
				c.unlock()
				c.clock.Add(30 * time.Second)
			}
			t.Logf("outcomes [err,none] [err,committed] [ok,none] [ok,committed]: %v", outcomes)
			if outcomes[2] != 0 {
				t.Fatalf("success reported with nothing stored %d times", outcomes[2])
			}
		})
	}
}

// settled reads whether the step moved past before and whether session id
// is gone. The two reads are separate statements: after a cancelled COMMIT
// the server may still be committing (PostgreSQL goes on after the client
// hangs up), so a pair that disagrees is read again for up to two seconds —
// a transaction that was not atomic never comes to agree.
func (c *rtCluster) settled(id string, before int64) (advanced, gone bool) {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		advanced = c.lastStep() != before
		_, serr := c.stores[0].Session(context.Background(), id)
		gone = errors.Is(serr, storage.ErrNotFound)
		if advanced == gone || time.Now().After(deadline) {
			return advanced, gone
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRedTeamTOTPPostgresClosedIs503: a check on a PostgreSQL pool that is
// gone is a 503 Matrix error, and nothing counts.
func TestRedTeamTOTPPostgresClosedIs503(t *testing.T) {
	url := pgtest.FreshDatabase(t)
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, []storage.Store{db}, fastConfig())
	code := c.codeAt(0)
	db.Close()
	err = c.svcs[0].VerifyTOTP(context.Background(), alice, code)
	if re := httperr.Matrix(err); re.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("check on a closed pool: %v → %d %s; want 503", err, re.StatusCode, re.ErrCode)
	}
}

// TestRedTeamTOTPSQLiteBusyIs503: another process holding the file's write
// lock past the busy timeout makes the check fail; the answer must be a
// Matrix 503 (the database is unavailable), never a 500, and the code must
// still work once the lock is gone.
func TestRedTeamTOTPSQLiteBusyIs503(t *testing.T) {
	path := filepath.Join(t.TempDir(), "2fa.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{BusyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := newCluster(t, []storage.Store{db}, fastConfig())
	other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	code := c.codeAt(0)
	err = c.svcs[0].VerifyTOTP(context.Background(), alice, code)
	conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
	if err == nil {
		t.Fatal("the check succeeded while another process held the write lock")
	}
	re := httperr.Matrix(err)
	if err2 := c.svcs[0].VerifyTOTP(context.Background(), alice, code); err2 != nil {
		t.Errorf("the code failed after the lock was gone: %v", err2)
	}
	if re.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("SQLite busy: %v → %d %s; want 503", err, re.StatusCode, re.ErrCode)
	}
}

// panicStore panics inside UseTOTP's transaction (its Audit callback runs
// there) once.
type panicStore struct {
	storage.Store
	armed atomic.Bool
}

func (s *panicStore) UseTOTP(ctx context.Context, u storage.TOTPUse) (storage.TOTPOutcome, error) {
	if s.armed.CompareAndSwap(true, false) {
		u.Audit = func(storage.TOTPOutcome) []storage.AuditEvent { panic("red team: a bug inside the transaction") }
	}
	return s.Store.UseTOTP(ctx, u)
}

// TestRedTeamTOTPSQLitePanicInTxFreesWriter: a panic inside a write
// transaction (recovered by net/http in a handler, or here by the test) must
// not leave the one writer connection in an open transaction: a write after
// it must still go through within a second. With context.Background (the
// sweeper, the CLI) nothing else would ever roll it back.
func TestRedTeamTOTPSQLitePanicInTxFreesWriter(t *testing.T) {
	stores := rtBackends[0].open(t, 1)
	ps := &panicStore{Store: stores[0]}
	c := newCluster(t, []storage.Store{ps}, fastConfig())
	ps.armed.Store(true)
	func() {
		defer func() { recover() }()
		c.svcs[0].VerifyTOTP(context.Background(), alice, c.wrong())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := stores[0].AddAudit(ctx, storage.AuditEvent{UserID: alice, Kind: "probe", At: c.clock.Now()})
	if err != nil {
		t.Fatalf("a write after a panic inside a transaction: %v (the writer connection is stuck in the abandoned transaction)", err)
	}
}

// disableStore disables alice's 2FA (as a concurrent Disable or an admin
// reset would) right before the check reaches the store.
type disableStore struct{ storage.Store }

func (s disableStore) UseTOTP(ctx context.Context, u storage.TOTPUse) (storage.TOTPOutcome, error) {
	if _, err := s.Store.DeleteAll(ctx, u.UserID); err != nil {
		return storage.TOTPOutcome{}, err
	}
	return s.Store.UseTOTP(ctx, u)
}

// TestRedTeamTOTPDisabledMidCheck: 2FA turned off between the secret's read
// and the check's transaction: the right code is not accepted, and the
// answer is a client error (2FA not enabled), not a 500.
func TestRedTeamTOTPDisabledMidCheck(t *testing.T) {
	eachBackend(t, 1, fastConfig(), func(t *testing.T, c *rtCluster) {
		ds := disableStore{c.stores[0]}
		svc, err := account.NewService(ds, c.box, c.cfg, account.WithClock(c.clock.Now), account.WithLogger(quietLog()))
		if err != nil {
			t.Fatal(err)
		}
		err = svc.VerifyTOTP(context.Background(), alice, c.codeAt(0))
		if err == nil {
			t.Fatal("a code was accepted for a user whose 2FA was just turned off")
		}
		if re := httperr.Matrix(err); re.StatusCode >= 500 {
			t.Fatalf("2FA turned off mid-check: %v → %d %s; want a 4xx (not enabled)", err, re.StatusCode, re.ErrCode)
		}
	})
}
