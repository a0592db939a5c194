// Package storagetest is the conformance suite every storage.Store engine must
// pass: round trips, conditional updates, atomicity under concurrency,
// transactional replacement and persistence across a reopen.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Factory makes a fresh, empty store for one test, and a function that closes
// that store and opens the same backing data again (to prove persistence).
type Factory func(t *testing.T) (s storage.Store, reopen func() storage.Store)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const alice = "@alice:example.org"

func pending(user string, secret string, expires time.Time) storage.Pending {
	return storage.Pending{UserID: user, Secret: []byte(secret), KeyID: "k1", Algorithm: "SHA1", Digits: 6, Period: 30,
		CreatedAt: t0, ExpiresAt: expires}
}

func set(user, id string, n int) storage.RecoverySet {
	s := storage.RecoverySet{UserID: user, SetID: id, Salt: []byte("salt-" + id), GeneratedAt: t0}
	for i := 0; i < n; i++ {
		s.Codes = append(s.Codes, storage.RecoveryCode{Index: i, Hash: []byte(fmt.Sprintf("%s-hash-%d", id, i))})
	}
	return s
}

// enable gives user an enabled authenticator with lastStep and a recovery set.
func enable(t *testing.T, s storage.Store, user string, lastStep int64) {
	t.Helper()
	ctx := context.Background()
	p := pending(user, "cipher-"+user, t0.Add(10*time.Minute))
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatalf("PutPending: %v", err)
	}
	if err := s.ConfirmEnrolment(ctx, p, lastStep, t0, set(user, "set1", 10)); err != nil {
		t.Fatalf("ConfirmEnrolment: %v", err)
	}
}

// concurrently runs fn n times at once (all released together, the way a
// burst of requests arrives) and returns how many calls reported a win.
func concurrently(n int, fn func() bool) int {
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if fn() {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// Run runs the whole conformance suite against the engine made by f.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f Factory)
	}{
		{"NotFound", testNotFound},
		{"PendingRoundTrip", testPending},
		{"ConfirmEnrolment", testConfirm},
		{"ConfirmRefusesChangedOrExpired", testConfirmRefuses},
		{"ConfirmEnrolmentConcurrent", testConfirmConcurrent},
		{"AdvanceStep", testAdvanceStep},
		{"AdvanceStepConcurrent", testAdvanceStepConcurrent},
		{"RecoveryCodes", testRecovery},
		{"RecoveryConcurrent", testRecoveryConcurrent},
		{"ReplaceRecoverySetConcurrent", testReplaceConcurrent},
		{"DeleteAll", testDeleteAll},
		{"MixedWritesConcurrent", testMixedConcurrent},
		{"ReserveAttempt", testReserve},
		{"ReserveAttemptConcurrent", testReserveConcurrent},
		{"Audit", testAudit},
		{"MetaAndRewrap", testRewrap},
		{"Persistence", testPersistence},
		{"Sessions", testSessions},
		{"SessionCompleteConcurrent", testSessionCAS},
		{"SessionTakeConcurrent", testSessionTake},
		{"HasTOTPFold", testHasTOTPFold},
		{"UserSessions", testUserSessions},
		{"ListUsers", testListUsers},
		{"CountUsers", testCountUsers},
		{"QueryAudit", testQueryAudit},
	}
	tests = append(tests, emailTests...)
	tests = append(tests, oauthTests...)
	tests = append(tests, policyTests...)
	tests = append(tests, rememberTests...)
	tests = append(tests, trustTests...)
	tests = append(tests, totpTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

func testNotFound(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["TOTP"] = s.TOTP(ctx, alice)
	_, checks["Pending"] = s.Pending(ctx, alice)
	_, checks["RecoverySet"] = s.RecoverySet(ctx, alice)
	_, checks["Meta"] = s.Meta(ctx, "nope")
	_, checks["Session"] = s.Session(ctx, "nope")
	_, checks["TakeSession"] = s.TakeSession(ctx, "nope")
	checks["SetSessionData"] = s.SetSessionData(ctx, "nope", []byte("x"))
	_, checks["AdvanceStep"] = s.AdvanceStep(ctx, alice, 5)
	checks["ReplaceRecoverySet"] = s.ReplaceRecoverySet(ctx, set(alice, "x", 1))
	for name, err := range checks {
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", name, err)
		}
	}
	if existed, err := s.DeleteAll(ctx, alice); err != nil || existed {
		t.Errorf("DeleteAll on nothing = %v, %v; want false, nil", existed, err)
	}
}

func testPending(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	p := pending(alice, "one", t0.Add(time.Minute))
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	p2 := pending(alice, "two", t0.Add(2*time.Minute))
	if err := s.PutPending(ctx, p2); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pending(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Secret) != "two" || !got.ExpiresAt.Equal(p2.ExpiresAt) || got.Digits != 6 || got.Period != 30 || got.Algorithm != "SHA1" || got.KeyID != "k1" {
		t.Errorf("Pending = %+v; want the replacement %+v", got, p2)
	}
}

func testConfirm(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1000)
	tot, err := s.TOTP(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if tot.LastStep != 1000 || string(tot.Secret) != "cipher-"+alice || !tot.EnabledAt.Equal(t0) {
		t.Errorf("TOTP = %+v", tot)
	}
	if _, err := s.Pending(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("pending left after confirm: %v", err)
	}
	rs, err := s.RecoverySet(ctx, alice)
	if err != nil || rs.Remaining() != 10 || rs.SetID != "set1" || !bytes.Equal(rs.Salt, []byte("salt-set1")) {
		t.Errorf("RecoverySet = %+v, %v", rs, err)
	}
	// Re-enrolment replaces the secret and the whole recovery set.
	p := pending(alice, "new-cipher", t0.Add(20*time.Minute))
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmEnrolment(ctx, p, 7, t0.Add(time.Minute), set(alice, "set2", 10)); err != nil {
		t.Fatal(err)
	}
	tot, _ = s.TOTP(ctx, alice)
	if string(tot.Secret) != "new-cipher" || tot.LastStep != 7 {
		t.Errorf("after re-enrolment TOTP = %+v", tot)
	}
	if ok, err := s.ConsumeRecoveryCode(ctx, alice, "set1", 0, t0); err != nil || ok {
		t.Errorf("old set code consumed after re-enrolment: %v, %v", ok, err)
	}
}

func testConfirmRefuses(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	p := pending(alice, "one", t0.Add(time.Minute))
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		p    storage.Pending
		now  time.Time
	}{
		{"secret changed", pending(alice, "other", t0.Add(time.Minute)), t0},
		{"expired", p, t0.Add(time.Minute)},
		{"other user", pending("@bob:example.org", "one", t0.Add(time.Minute)), t0},
	}
	for _, tc := range cases {
		if err := s.ConfirmEnrolment(ctx, tc.p, 1, tc.now, set(tc.p.UserID, "s", 10)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", tc.name, err)
		}
	}
	if _, err := s.TOTP(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a refused confirm enabled TOTP: %v", err)
	}
	if _, err := s.RecoverySet(ctx, "@bob:example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a refused confirm wrote recovery codes (no rollback): %v", err)
	}
}

func testConfirmConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	p := pending(alice, "one", t0.Add(time.Minute))
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	wins := concurrently(20, func() bool {
		err := s.ConfirmEnrolment(ctx, p, 1, t0, set(alice, "set1", 10))
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ConfirmEnrolment: %v", err)
		}
		return err == nil
	})
	if wins != 1 {
		t.Fatalf("%d concurrent confirmations of one enrolment succeeded; want exactly 1", wins)
	}
	if rs, err := s.RecoverySet(ctx, alice); err != nil || len(rs.Codes) != 10 {
		t.Errorf("after concurrent confirmations RecoverySet = %+v, %v; want one set of 10", rs, err)
	}
}

func testAdvanceStep(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 100)
	cases := []struct {
		step int64
		want bool
	}{{100, false}, {99, false}, {101, true}, {101, false}, {100, false}, {105, true}, {104, false}}
	for _, tc := range cases {
		got, err := s.AdvanceStep(ctx, alice, tc.step)
		if err != nil || got != tc.want {
			t.Errorf("AdvanceStep(%d) = %v, %v; want %v", tc.step, got, err, tc.want)
		}
	}
}

func testAdvanceStepConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	enable(t, s, alice, 100)
	wins := concurrently(100, func() bool {
		ok, err := s.AdvanceStep(context.Background(), alice, 101)
		if err != nil {
			t.Errorf("AdvanceStep: %v", err)
		}
		return ok
	})
	if wins != 1 {
		t.Fatalf("%d concurrent AdvanceStep calls succeeded; want exactly 1", wins)
	}
}

func testRecovery(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1)
	if ok, err := s.ConsumeRecoveryCode(ctx, alice, "set1", 3, t0); err != nil || !ok {
		t.Fatalf("first consume = %v, %v", ok, err)
	}
	if ok, err := s.ConsumeRecoveryCode(ctx, alice, "set1", 3, t0); err != nil || ok {
		t.Fatalf("second consume = %v, %v; want false", ok, err)
	}
	rs, _ := s.RecoverySet(ctx, alice)
	if rs.Remaining() != 9 || rs.Codes[3].UsedAt.IsZero() {
		t.Errorf("after one use: remaining %d, code 3 used at %v", rs.Remaining(), rs.Codes[3].UsedAt)
	}
	if err := s.ReplaceRecoverySet(ctx, set(alice, "set2", 10)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if ok, _ := s.ConsumeRecoveryCode(ctx, alice, "set1", i, t0); ok {
			t.Errorf("old set code %d consumed after replacement", i)
		}
	}
	rs, _ = s.RecoverySet(ctx, alice)
	if rs.SetID != "set2" || rs.Remaining() != 10 || len(rs.Codes) != 10 {
		t.Errorf("after replace: %+v", rs)
	}
}

func testRecoveryConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	enable(t, s, alice, 1)
	wins := concurrently(100, func() bool {
		ok, err := s.ConsumeRecoveryCode(context.Background(), alice, "set1", 0, t0)
		if err != nil {
			t.Errorf("consume: %v", err)
		}
		return ok
	})
	if wins != 1 {
		t.Fatalf("%d concurrent consumptions of one code succeeded; want exactly 1", wins)
	}
}

// testReplaceConcurrent replaces one user's set from many callers at once:
// each replacement is whole, so every call succeeds and one whole set remains.
func testReplaceConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1)
	var n atomic.Int32
	concurrently(20, func() bool {
		id := fmt.Sprintf("set-%d", n.Add(1))
		if err := s.ReplaceRecoverySet(ctx, set(alice, id, 10)); err != nil {
			t.Errorf("ReplaceRecoverySet(%s): %v", id, err)
			return false
		}
		return true
	})
	rs, err := s.RecoverySet(ctx, alice)
	if err != nil || len(rs.Codes) != 10 || !bytes.Equal(rs.Salt, []byte("salt-"+rs.SetID)) {
		t.Fatalf("after concurrent replacements RecoverySet = %+v, %v; want one whole set of 10", rs, err)
	}
	for _, c := range rs.Codes {
		if want := fmt.Sprintf("%s-hash-%d", rs.SetID, c.Index); string(c.Hash) != want {
			t.Errorf("code %d has hash %q; want %q (codes of another set mixed in)", c.Index, c.Hash, want)
		}
	}
}

func testDeleteAll(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1)
	enable(t, s, "@bob:example.org", 1)
	if err := s.PutPending(ctx, pending(alice, "p", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if existed, err := s.DeleteAll(ctx, alice); err != nil || !existed {
		t.Fatalf("DeleteAll = %v, %v", existed, err)
	}
	_, e1 := s.TOTP(ctx, alice)
	_, e2 := s.Pending(ctx, alice)
	_, e3 := s.RecoverySet(ctx, alice)
	for i, err := range []error{e1, e2, e3} {
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("record %d survived DeleteAll: %v", i, err)
		}
	}
	if _, err := s.TOTP(ctx, "@bob:example.org"); err != nil {
		t.Errorf("another user's record was deleted: %v", err)
	}
}

// testMixedConcurrent runs every kind of write to one user's secrets and
// recovery codes at once: each must either happen or report ErrNotFound,
// never fail (an engine that takes locks in different orders deadlocks here).
func testMixedConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1)
	var n atomic.Int32
	concurrently(40, func() bool {
		i := n.Add(1)
		var err error
		switch i % 5 {
		case 0:
			p := pending(alice, fmt.Sprintf("re-%d", i), t0.Add(time.Hour))
			if err = s.PutPending(ctx, p); err == nil {
				err = s.ConfirmEnrolment(ctx, p, 2, t0, set(alice, fmt.Sprintf("c-%d", i), 10))
			}
		case 1:
			_, err = s.DeleteAll(ctx, alice)
		case 2:
			err = s.ReplaceRecoverySet(ctx, set(alice, fmt.Sprintf("r-%d", i), 10))
		case 3:
			_, err = s.Rewrap(ctx, func(u string, sec []byte, k string) ([]byte, string, error) {
				return sec, "k2", nil
			}, "check", []byte("v"))
		case 4:
			_, err = s.AdvanceStep(ctx, alice, int64(i))
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("write %d: %v", i, err)
		}
		return err == nil
	})
	if rs, err := s.RecoverySet(ctx, alice); err == nil && len(rs.Codes) != 10 {
		t.Errorf("after concurrent writes RecoverySet = %+v; want a whole set or none", rs)
	}
}

func testReserve(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	w := 15 * time.Minute
	reserve := func(at time.Time) storage.Attempt {
		t.Helper()
		a, err := s.ReserveAttempt(ctx, alice, at, w, 5)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// Round 1: five failures a minute apart; the 6th attempt is refused
	// until the window has passed since the round's last failure.
	for i := 0; i < 5; i++ {
		if a := reserve(t0.Add(time.Duration(i) * time.Minute)); !a.Allowed || a.Failures != i+1 {
			t.Fatalf("attempt %d = %+v; want allowed with %d failures", i+1, a, i+1)
		}
	}
	round1 := t0.Add(4 * time.Minute) // its last failure
	a := reserve(t0.Add(5 * time.Minute))
	if a.Allowed {
		t.Fatalf("6th attempt = %+v; want refused", a)
	}
	if want := round1.Add(w); !a.RetryAt.Equal(want) {
		t.Errorf("retryAt = %v; want %v (the round's last failure + window)", a.RetryAt, want)
	}
	if a, _ := s.ReserveAttempt(ctx, "@bob:example.org", t0, w, 5); !a.Allowed {
		t.Errorf("another user is locked by alice's failures")
	}
	if a := reserve(round1.Add(w - time.Second)); a.Allowed {
		t.Errorf("allowed a second before the lock ends")
	}
	// Round 2 without a success in between: the lock doubles.
	for i := 0; i < 5; i++ {
		if a := reserve(round1.Add(w)); !a.Allowed || a.Failures != 6+i {
			t.Fatalf("round 2 attempt %d = %+v; want allowed with %d consecutive failures", i+1, a, 6+i)
		}
	}
	round2 := round1.Add(w)
	if a := reserve(round2.Add(2*w - time.Second)); a.Allowed || !a.RetryAt.Equal(round2.Add(2*w)) {
		t.Errorf("after round 2 = %+v; want locked until %v (twice the window)", a, round2.Add(2*w))
	}
	if a := reserve(round2.Add(2 * w)); !a.Allowed || a.Failures != 11 {
		t.Errorf("after the doubled lock = %+v; want allowed, 11 consecutive failures", a)
	}
	// A success (ClearFailures) forgets the streak and the back-off.
	if err := s.ClearFailures(ctx, alice); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if a := reserve(round2.Add(2*w + time.Second)); !a.Allowed || a.Failures != i+1 {
			t.Fatalf("attempt %d after ClearFailures = %+v", i+1, a)
		}
	}
	// The back-off keeps doubling and never overflows: 60 rounds, each
	// attempted the moment the previous lock ends.
	far := t0
	for i := 0; i < 60*5; i++ {
		a, err := s.ReserveAttempt(ctx, "@carol:example.org", far, w, 5)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Allowed {
			if !a.RetryAt.After(far) {
				t.Fatalf("refused with a retry time %v not after now %v", a.RetryAt, far)
			}
			far = a.RetryAt
			i--
		}
	}
}

func testReserveConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	wins := concurrently(50, func() bool {
		a, err := s.ReserveAttempt(context.Background(), alice, t0, 15*time.Minute, 5)
		if err != nil {
			t.Errorf("ReserveAttempt: %v", err)
		}
		return a.Allowed
	})
	if wins != 5 {
		t.Fatalf("%d of 50 concurrent attempts got through a limit of 5", wins)
	}
}

func testAudit(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	kinds := []string{storage.AuditEnrol, storage.AuditConfirm, storage.AuditReplay}
	for i, k := range kinds {
		if err := s.AddAudit(ctx, storage.AuditEvent{UserID: alice, Kind: k, Detail: "d", At: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddAudit(ctx, storage.AuditEvent{UserID: "@bob:example.org", Kind: storage.AuditDisable, At: t0}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.AuditEvents(ctx, alice, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Kind != storage.AuditReplay || evs[1].Kind != storage.AuditConfirm || !evs[0].At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("AuditEvents = %+v; want newest two of alice's", evs)
	}
}

func testRewrap(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 1)
	if err := s.PutPending(ctx, pending("@bob:example.org", "bob-pending", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, "check", []byte("old")); err != nil {
		t.Fatal(err)
	}
	ids, err := s.KeyIDs(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "k1" {
		t.Fatalf("KeyIDs = %v, %v", ids, err)
	}
	// A failing rewrap changes nothing.
	_, err = s.Rewrap(ctx, func(u string, sec []byte, k string) ([]byte, string, error) {
		if u == "@bob:example.org" {
			return nil, "", errors.New("boom")
		}
		return []byte("x"), "k2", nil
	}, "check", []byte("new"))
	if err == nil {
		t.Fatal("Rewrap with a failing fn returned nil")
	}
	if tot, _ := s.TOTP(ctx, alice); string(tot.Secret) != "cipher-"+alice {
		t.Errorf("failed rewrap was not rolled back: %q", tot.Secret)
	}
	if v, _ := s.Meta(ctx, "check"); string(v) != "old" {
		t.Errorf("failed rewrap changed meta to %q", v)
	}
	n, err := s.Rewrap(ctx, func(u string, sec []byte, k string) ([]byte, string, error) {
		return append([]byte("re:"), sec...), "k2", nil
	}, "check", []byte("new"))
	if err != nil || n != 2 {
		t.Fatalf("Rewrap = %d, %v; want 2", n, err)
	}
	tot, _ := s.TOTP(ctx, alice)
	p, _ := s.Pending(ctx, "@bob:example.org")
	if string(tot.Secret) != "re:cipher-"+alice || tot.KeyID != "k2" || string(p.Secret) != "re:bob-pending" || p.KeyID != "k2" {
		t.Errorf("after rewrap: %+v / %+v", tot, p)
	}
	if v, _ := s.Meta(ctx, "check"); string(v) != "new" {
		t.Errorf("meta after rewrap = %q", v)
	}
}

func testPersistence(t *testing.T, f Factory) {
	s, reopen := f(t)
	ctx := context.Background()
	enable(t, s, alice, 42)
	for i := 0; i < 3; i++ {
		if a, err := s.ReserveAttempt(ctx, alice, t0, 15*time.Minute, 5); !a.Allowed || err != nil {
			t.Fatal(a, err)
		}
	}
	s2 := reopen()
	tot, err := s2.TOTP(ctx, alice)
	if err != nil || tot.LastStep != 42 {
		t.Fatalf("after reopen TOTP = %+v, %v", tot, err)
	}
	for i := 0; i < 2; i++ {
		if a, _ := s2.ReserveAttempt(ctx, alice, t0, 15*time.Minute, 5); !a.Allowed {
			t.Fatalf("attempt %d refused too early", i+4)
		}
	}
	if a, _ := s2.ReserveAttempt(ctx, alice, t0, 15*time.Minute, 5); a.Allowed {
		t.Fatal("failure counter did not survive the reopen: 6th attempt allowed")
	}
}

func session(id string, expires time.Time) storage.UIASession {
	return storage.UIASession{ID: id, UserID: alice, Method: "POST", Path: "/_matrix/client/v3/delete_devices",
		Flows:  [][]string{{"m.login.2fa.totp", "m.login.password"}, {"m.login.2fa.recovery", "m.login.password"}},
		Params: []byte(`{"m.login.2fa.totp":{"digits":6}}`), CreatedAt: t0, ExpiresAt: expires}
}

func testSessions(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	in := session("S1", t0.Add(time.Minute))
	if err := s.CreateSession(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, in); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("duplicate CreateSession = %v; want ErrConflict", err)
	}
	got, err := s.Session(ctx, "S1")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != alice || got.Method != "POST" || got.Path != in.Path || len(got.Flows) != 2 || got.Flows[1][0] != "m.login.2fa.recovery" ||
		string(got.Params) != string(in.Params) || len(got.Completed) != 0 || !got.ExpiresAt.Equal(in.ExpiresAt) {
		t.Errorf("Session = %+v; want %+v", got, in)
	}
	if ok, err := s.CompleteStage(ctx, "S1", nil, "m.login.2fa.totp"); err != nil || !ok {
		t.Fatalf("CompleteStage = %v, %v", ok, err)
	}
	if ok, _ := s.CompleteStage(ctx, "S1", nil, "m.login.2fa.recovery"); ok {
		t.Error("CompleteStage with a stale 'before' succeeded")
	}
	if err := s.SetSessionData(ctx, "S1", []byte("held")); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Session(ctx, "S1")
	if len(got.Completed) != 1 || got.Completed[0] != "m.login.2fa.totp" || string(got.Data) != "held" {
		t.Errorf("after complete and data: %+v", got)
	}
	if err := s.CreateSession(ctx, session("S2", t0.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	exp, err := s.ExpiredSessions(ctx, t0, 10)
	if err != nil || len(exp) != 1 || exp[0].ID != "S2" {
		t.Errorf("ExpiredSessions = %+v, %v; want only S2", exp, err)
	}
	taken, err := s.TakeSession(ctx, "S1")
	if err != nil || string(taken.Data) != "held" {
		t.Fatalf("TakeSession = %+v, %v", taken, err)
	}
	if _, err := s.Session(ctx, "S1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("session still there after TakeSession: %v", err)
	}
}

func testSessionCAS(t *testing.T, f Factory) {
	s, _ := f(t)
	if err := s.CreateSession(context.Background(), session("S", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	wins := concurrently(50, func() bool {
		ok, err := s.CompleteStage(context.Background(), "S", []string{}, "m.login.2fa.totp")
		if err != nil {
			t.Errorf("CompleteStage: %v", err)
		}
		return ok
	})
	got, _ := s.Session(context.Background(), "S")
	if wins != 1 || len(got.Completed) != 1 {
		t.Fatalf("%d concurrent completions won, completed = %v; want exactly 1", wins, got.Completed)
	}
}

func testSessionTake(t *testing.T, f Factory) {
	s, _ := f(t)
	if err := s.CreateSession(context.Background(), session("S", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	wins := concurrently(50, func() bool {
		_, err := s.TakeSession(context.Background(), "S")
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("TakeSession: %v", err)
		}
		return err == nil
	})
	if wins != 1 {
		t.Fatalf("%d concurrent TakeSession calls got the session; want exactly 1", wins)
	}
}

func testHasTOTPFold(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, "@AliCe:Example.org", 1)
	cases := []struct {
		user string
		want bool
	}{
		{"@AliCe:Example.org", true},
		{"@alice:example.org", true},
		{"@ALICE:EXAMPLE.ORG", true},
		{"@alice:example.com", false},
		{"@alic:example.org", false},
		{"@alice_:example.org", false},
		{"@%:example.org", false},
	}
	for _, tc := range cases {
		got, err := s.HasTOTPFold(ctx, tc.user)
		if err != nil || got != tc.want {
			t.Errorf("HasTOTPFold(%q) = %v, %v; want %v", tc.user, got, err, tc.want)
		}
	}
}

func testUserSessions(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	mk := func(id, user string, kind storage.SessionKind, created time.Time, ttl time.Duration) {
		t.Helper()
		err := s.CreateSession(ctx, storage.UIASession{ID: id, Kind: kind, UserID: user, Method: "POST", Path: "/p",
			Flows: [][]string{{"x"}}, Params: []byte("{}"), Completed: []string{}, CreatedAt: created, ExpiresAt: created.Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
	}
	held := storage.KindHeldLogin
	mk("b", alice, held, t0.Add(2*time.Second), time.Minute)
	mk("a", alice, held, t0.Add(1*time.Second), time.Minute)
	mk("z", alice, held, t0.Add(3*time.Second), time.Minute)
	mk("c", alice, held, t0.Add(3*time.Second), time.Minute) // same instant: creation order
	mk("expired", alice, held, t0.Add(-time.Hour), time.Minute)
	mk("other-kind", alice, storage.KindSignIn, t0, time.Minute)
	mk("no-kind", alice, "", t0, time.Minute)
	mk("other-user", "@bob:example.org", held, t0, time.Minute)
	got, err := s.UserSessions(ctx, alice, held, t0.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range got {
		ids = append(ids, x.ID)
	}
	if fmt.Sprint(ids) != "[a b z c]" {
		t.Errorf("UserSessions = %v; want [a b z c] (live, this user and path, oldest first, then in creation order)", ids)
	}
	if got, err := s.UserSessions(ctx, "@nobody:example.org", held, t0); err != nil || len(got) != 0 {
		t.Errorf("UserSessions of a user without sessions = %v, %v", got, err)
	}
	// Kind round-trips; an empty one is stored as KindUIA.
	for id, want := range map[string]storage.SessionKind{"a": held, "other-kind": storage.KindSignIn, "no-kind": storage.KindUIA} {
		if got, err := s.Session(ctx, id); err != nil || got.Kind != want {
			t.Errorf("Session(%s).Kind = %q, %v; want %q", id, got.Kind, err, want)
		}
	}
	if got, err := s.TakeSession(ctx, "other-kind"); err != nil || got.Kind != storage.KindSignIn {
		t.Errorf("TakeSession keeps the kind: %q, %v", got.Kind, err)
	}
}

// lock makes user locked until window × 1 from now (limit failures).
func lock(t *testing.T, s storage.Store, user string, now time.Time) {
	t.Helper()
	for i := 0; i < 3; i++ {
		if _, err := s.ReserveAttempt(context.Background(), user, now, time.Minute, 3); err != nil {
			t.Fatal(err)
		}
	}
}

func userIDs(rows []storage.UserRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.UserID)
	}
	return out
}

func testListUsers(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	// Byte order: upper case before lower case, "Z" before "a".
	for _, u := range []string{"@b:x", "@a:x", "@Z:x", "@c:x"} {
		enable(t, s, u, 1)
	}
	lock(t, s, "@a:x", t0)
	lock(t, s, "@d:x", t0) // locked (a pending enrolment's confirmation), no authenticator
	// A streak without a lock is not listed.
	if _, err := s.ReserveAttempt(ctx, "@e:x", t0, time.Minute, 3); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		q    storage.UserQuery
		want []string
	}{
		{"all", storage.UserQuery{Status: storage.UsersAll, Limit: 10, Now: t0}, []string{"@Z:x", "@a:x", "@b:x", "@c:x", "@d:x"}},
		{"default is all", storage.UserQuery{Limit: 10, Now: t0}, []string{"@Z:x", "@a:x", "@b:x", "@c:x", "@d:x"}},
		{"page", storage.UserQuery{Limit: 2, Now: t0}, []string{"@Z:x", "@a:x"}},
		{"next page", storage.UserQuery{After: "@a:x", Limit: 2, Now: t0}, []string{"@b:x", "@c:x"}},
		{"enabled", storage.UserQuery{Status: storage.UsersEnabled, Limit: 10, Now: t0}, []string{"@Z:x", "@a:x", "@b:x", "@c:x"}},
		{"locked", storage.UserQuery{Status: storage.UsersLocked, Limit: 10, Now: t0}, []string{"@a:x", "@d:x"}},
		{"locked ends", storage.UserQuery{Status: storage.UsersLocked, Limit: 10, Now: t0.Add(time.Hour)}, nil},
		{"one user", storage.UserQuery{UserID: "@b:x", Limit: 10, Now: t0}, []string{"@b:x"}},
		{"one unknown user", storage.UserQuery{UserID: "@q:x", Limit: 10, Now: t0}, nil},
	}
	for _, tc := range cases {
		got, err := s.ListUsers(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if fmt.Sprint(userIDs(got)) != fmt.Sprint(tc.want) {
			t.Errorf("%s: ListUsers = %v; want %v", tc.name, userIDs(got), tc.want)
		}
	}
	rows, err := s.ListUsers(ctx, storage.UserQuery{Limit: 10, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		switch r.UserID {
		case "@a:x":
			if !r.Enabled || !r.EnabledAt.Equal(t0) || !r.LockedUntil.Equal(t0.Add(time.Minute)) {
				t.Errorf("@a:x = %+v; want enabled at t0, locked until t0+1m", r)
			}
		case "@d:x":
			if r.Enabled || r.LockedUntil.IsZero() {
				t.Errorf("@d:x = %+v; want locked, not enabled", r)
			}
		case "@b:x":
			if !r.Enabled || !r.LockedUntil.IsZero() {
				t.Errorf("@b:x = %+v; want enabled, not locked", r)
			}
		}
	}
}

func testCountUsers(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, "@a:x", 1)
	enable(t, s, "@b:x", 1)
	lock(t, s, "@b:x", t0)
	if err := s.PutPending(ctx, pending("@c:x", "p", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(ctx, pending("@d:x", "p", t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	c, err := s.CountUsers(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c != (storage.UserCounts{Enabled: 2, Locked: 1, Pending: 1}) {
		t.Errorf("CountUsers = %+v; want 2 enabled, 1 locked, 1 pending", c)
	}
	if err := s.ClearFailures(ctx, "@b:x"); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.CountUsers(ctx, t0); c.Locked != 0 {
		t.Errorf("after ClearFailures: %d locked; want 0", c.Locked)
	}
}

func testQueryAudit(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	evs := []storage.AuditEvent{
		{UserID: "@a:x", Kind: storage.AuditEnrol, At: t0},
		{UserID: "@b:x", Kind: storage.AuditEnrol, At: t0.Add(time.Second)},
		{UserID: "@a:x", Kind: storage.AuditAdminReset, Detail: "by @admin:x", At: t0.Add(2 * time.Second)},
		{UserID: "@a:x", Kind: storage.AuditEnrol, At: t0.Add(3 * time.Second)},
	}
	for _, ev := range evs {
		if err := s.AddAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.QueryAudit(ctx, storage.AuditQuery{Limit: 10})
	if err != nil || len(all) != 4 {
		t.Fatalf("QueryAudit(all) = %d events, %v; want 4", len(all), err)
	}
	kinds := func(evs []storage.AuditEvent) string {
		var out []string
		for _, e := range evs {
			out = append(out, e.UserID+"/"+e.Kind)
		}
		return fmt.Sprint(out)
	}
	cases := []struct {
		name string
		q    storage.AuditQuery
		want string
	}{
		{"newest first", storage.AuditQuery{Limit: 2}, "[@a:x/enrol @a:x/admin_reset]"},
		{"user", storage.AuditQuery{UserID: "@a:x", Limit: 10}, "[@a:x/enrol @a:x/admin_reset @a:x/enrol]"},
		{"kind", storage.AuditQuery{Kind: storage.AuditEnrol, Limit: 10}, "[@a:x/enrol @b:x/enrol @a:x/enrol]"},
		{"user and kind", storage.AuditQuery{UserID: "@a:x", Kind: storage.AuditAdminReset, Limit: 10}, "[@a:x/admin_reset]"},
		{"since", storage.AuditQuery{Since: t0.Add(2 * time.Second), Limit: 10}, "[@a:x/enrol @a:x/admin_reset]"},
		{"before", storage.AuditQuery{Before: all[1].ID, Limit: 10}, "[@b:x/enrol @a:x/enrol]"},
		{"none", storage.AuditQuery{UserID: "@q:x", Limit: 10}, "[]"},
	}
	for _, tc := range cases {
		got, err := s.QueryAudit(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if kinds(got) != tc.want {
			t.Errorf("%s: QueryAudit = %s; want %s", tc.name, kinds(got), tc.want)
		}
	}
	if all[1].Detail != "by @admin:x" || !all[1].At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("event = %+v; want the admin reset at t0+2s", all[1])
	}
}
