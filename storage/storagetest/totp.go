package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// totpTests are the UseTOTP cases of the suite.
var totpTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"UseTOTP", testUseTOTP},
	{"UseTOTPLocked", testUseTOTPLocked},
	{"UseTOTPConcurrentSameSession", testUseTOTPSameSession},
	{"UseTOTPConcurrentSessions", testUseTOTPSessions},
	{"UseTOTPConcurrentFailures", testUseTOTPFailures},
}

const (
	stageTOTP     = "m.login.2fa.totp"
	stagePassword = "m.login.password"
)

// heldSession stores a session like a held login: the password done, the
// TOTP stage left.
func heldSession(t *testing.T, s storage.Store, id string) {
	t.Helper()
	in := storage.UIASession{ID: id, Kind: storage.KindHeldLogin, UserID: alice, Method: "POST", Path: "/login",
		Flows: [][]string{{stagePassword, stageTOTP}}, Completed: []string{stagePassword}, Data: []byte("held " + id),
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// use is a TOTPUse of alice at now under a limit of 5 in 15 minutes.
func use(now time.Time, matched bool, step int64, sess storage.SessionStep) storage.TOTPUse {
	return storage.TOTPUse{UserID: alice, Now: now, Window: 15 * time.Minute, Limit: 5, Matched: matched, Step: step, Session: sess,
		Audit: func(o storage.TOTPOutcome) []storage.AuditEvent {
			if o.Replayed {
				return []storage.AuditEvent{{UserID: alice, Kind: storage.AuditReplay, Detail: "totp", At: now}}
			}
			return nil
		}}
}

func lastStep(t *testing.T, s storage.Store) int64 {
	t.Helper()
	rec, err := s.TOTP(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	return rec.LastStep
}

func testUseTOTP(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 100)
	heldSession(t, s, "S")
	heldSession(t, s, "U")
	completeU := storage.SessionStep{ID: "U", Before: []string{stagePassword}, Stage: stageTOTP}
	takeS := storage.SessionStep{ID: "S", Before: []string{stagePassword}, Stage: stageTOTP, Take: true}
	// One user's checks in order: each case starts where the last ended.
	cases := []struct {
		name       string
		use        storage.TOTPUse
		want       storage.TOTPOutcome // Session: its ID only
		wantStep   int64
		wantReplay int // replay audit events so far
	}{
		{"wrong code counts", use(t0, false, 0, takeS), storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true, Failures: 1}}, 100, 0},
		{"replayed step refused and counted", use(t0, true, 100, takeS),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true, Failures: 2}, Replayed: true}, 100, 1},
		{"older step refused", use(t0, true, 99, takeS),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true, Failures: 3}, Replayed: true}, 100, 2},
		{"newer step accepted, stage completed", use(t0, true, 101, completeU),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true}, Accepted: true, SessionDone: true}, 101, 2},
		{"same step again refused", use(t0, true, 101, takeS),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true, Failures: 1}, Replayed: true}, 101, 3},
		{"newer step accepted, session taken", use(t0, true, 102, takeS),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true}, Accepted: true, SessionDone: true, Session: storage.UIASession{ID: "S"}}, 102, 3},
		{"session gone: the code is used all the same", use(t0, true, 103, takeS),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true}, Accepted: true}, 103, 3},
		{"stale completed stages: the code is used all the same", use(t0, true, 104, completeU),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true}, Accepted: true}, 104, 3},
		{"no session", use(t0, true, 105, storage.SessionStep{}),
			storage.TOTPOutcome{Attempt: storage.Attempt{Allowed: true}, Accepted: true}, 105, 3},
	}
	for _, tc := range cases {
		got, err := s.UseTOTP(ctx, tc.use)
		if err != nil {
			t.Fatalf("%s: UseTOTP: %v", tc.name, err)
		}
		if got.Attempt != tc.want.Attempt || got.Accepted != tc.want.Accepted || got.Replayed != tc.want.Replayed ||
			got.SessionDone != tc.want.SessionDone || got.Session.ID != tc.want.Session.ID {
			t.Errorf("%s: UseTOTP = %+v; want %+v", tc.name, got, tc.want)
		}
		if step := lastStep(t, s); step != tc.wantStep {
			t.Errorf("%s: last step %d; want %d", tc.name, step, tc.wantStep)
		}
		evs, err := s.AuditEvents(ctx, alice, 100)
		if err != nil || len(evs) != tc.wantReplay {
			t.Errorf("%s: %d audit events, %v; want %d replays", tc.name, len(evs), err, tc.wantReplay)
		}
	}
	if got, err := s.Session(ctx, "U"); err != nil || !slices.Equal(got.Completed, []string{stagePassword, stageTOTP}) {
		t.Errorf("session U = %+v, %v; want the TOTP stage completed once", got, err)
	}
	if _, err := s.Session(ctx, "S"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("session S after it was taken: %v", err)
	}
	u := use(t0, true, 200, storage.SessionStep{})
	u.UserID = "@bob:example.org"
	if _, err := s.UseTOTP(ctx, u); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("UseTOTP of a user without an authenticator = %v; want ErrNotFound", err)
	}
}

func testUseTOTPLocked(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	enable(t, s, alice, 100)
	heldSession(t, s, "S")
	for i := range 5 {
		if o, err := s.UseTOTP(ctx, use(t0, false, 0, storage.SessionStep{})); err != nil || !o.Allowed || o.Failures != i+1 {
			t.Fatalf("wrong code %d = %+v, %v", i+1, o, err)
		}
	}
	o, err := s.UseTOTP(ctx, use(t0.Add(time.Minute), true, 101, storage.SessionStep{ID: "S", Before: []string{stagePassword}, Stage: stageTOTP, Take: true}))
	if err != nil || o.Allowed || o.Accepted || o.SessionDone || !o.RetryAt.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("correct code while locked = %+v, %v; want refused until %v", o, err, t0.Add(15*time.Minute))
	}
	if step := lastStep(t, s); step != 100 {
		t.Errorf("last step %d after a refused code; want 100", step)
	}
	if _, err := s.Session(ctx, "S"); err != nil {
		t.Errorf("session after a refused code: %v", err)
	}
	// The refusal recorded nothing: once the lock ends, the next wrong code
	// is the 6th consecutive failure.
	if o, err := s.UseTOTP(ctx, use(t0.Add(15*time.Minute), false, 0, storage.SessionStep{})); err != nil || !o.Allowed || o.Failures != 6 {
		t.Errorf("after the lock = %+v, %v; want allowed, 6 failures", o, err)
	}
}

func testUseTOTPSameSession(t *testing.T, f Factory) {
	s, _ := f(t)
	enable(t, s, alice, 100)
	heldSession(t, s, "S")
	take := storage.SessionStep{ID: "S", Before: []string{stagePassword}, Stage: stageTOTP, Take: true}
	done := concurrently(50, func() bool {
		o, err := s.UseTOTP(context.Background(), use(t0, true, 101, take))
		if err != nil {
			t.Errorf("UseTOTP: %v", err)
		}
		if o.Allowed && (o.Accepted != o.SessionDone || o.Accepted == o.Replayed) {
			t.Errorf("UseTOTP = %+v; want accepted with the session taken, replayed or locked", o)
		}
		return o.SessionDone && o.Session.ID == "S"
	})
	if done != 1 {
		t.Fatalf("%d of 50 concurrent uses of one code took the session; want exactly 1", done)
	}
	if step := lastStep(t, s); step != 101 {
		t.Errorf("last step %d; want 101", step)
	}
}

func testUseTOTPSessions(t *testing.T, f Factory) {
	s, _ := f(t)
	enable(t, s, alice, 100)
	for i := range 50 {
		heldSession(t, s, fmt.Sprint("S", i))
	}
	next := make(chan int, 50)
	for i := range 50 {
		next <- i
	}
	accepted := concurrently(50, func() bool {
		id := fmt.Sprint("S", <-next)
		o, err := s.UseTOTP(context.Background(), use(t0, true, 101, storage.SessionStep{ID: id, Before: []string{stagePassword}, Stage: stageTOTP, Take: true}))
		if err != nil {
			t.Errorf("UseTOTP: %v", err)
		}
		if o.Allowed && (o.Accepted != o.SessionDone || o.Accepted == o.Replayed) {
			t.Errorf("UseTOTP for %s = %+v; want accepted with its session taken, replayed or locked", id, o)
		}
		return o.Accepted
	})
	if accepted != 1 {
		t.Fatalf("one code completed %d of 50 held logins at once; want exactly 1", accepted)
	}
	left, err := s.UserSessions(context.Background(), alice, storage.KindHeldLogin, t0)
	if err != nil || len(left) != 49 {
		t.Errorf("%d held logins left, %v; want 49", len(left), err)
	}
}

func testUseTOTPFailures(t *testing.T, f Factory) {
	s, _ := f(t)
	enable(t, s, alice, 100)
	allowed := concurrently(50, func() bool {
		o, err := s.UseTOTP(context.Background(), use(t0, false, 0, storage.SessionStep{}))
		if err != nil {
			t.Errorf("UseTOTP: %v", err)
		}
		return o.Allowed
	})
	if allowed != 5 {
		t.Fatalf("%d of 50 concurrent wrong codes got through a limit of 5", allowed)
	}
}
