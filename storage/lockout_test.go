package storage_test

import (
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

func TestBackoff(t *testing.T) {
	w := 15 * time.Minute
	cases := []struct {
		name  string
		round int
		want  time.Duration
	}{
		{"first round is the window", 1, w},
		{"second doubles", 2, 2 * w},
		{"third doubles again", 3, 4 * w},
		{"round below 1 counts as 1", 0, w},
		{"overflow saturates", 40, time.Duration(1<<62 - 1)},
		{"past the cap saturates", 1000, time.Duration(1<<62 - 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := storage.Backoff(w, tc.round); got != tc.want {
				t.Errorf("Backoff(%v, %d) = %v; want %v", w, tc.round, got, tc.want)
			}
		})
	}
}

func TestDecideAttempt(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w := 15 * time.Minute
	mins := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Minute))
		}
		return out
	}
	cases := []struct {
		name       string
		f          storage.Failures
		now        time.Time
		limit      int
		want       storage.Attempt
		wantStreak int
		wantLock   time.Time
	}{
		{name: "first failure", now: t0, limit: 5,
			want: storage.Attempt{Allowed: true, Failures: 1}, wantStreak: 1},
		{name: "fifth failure ends round 1 with one window's lock",
			f: storage.Failures{Streak: 4, Recent: mins(0, 1, 2, 3)}, now: t0.Add(4 * time.Minute), limit: 5,
			want: storage.Attempt{Allowed: true, Failures: 5}, wantStreak: 5, wantLock: t0.Add(4*time.Minute + w)},
		{name: "locked: retry when the lock ends",
			f:   storage.Failures{Streak: 5, LockedUntil: t0.Add(4*time.Minute + w), Recent: mins(0, 1, 2, 3, 4)},
			now: t0.Add(5 * time.Minute), limit: 5,
			want: storage.Attempt{RetryAt: t0.Add(4*time.Minute + w)}, wantStreak: 5, wantLock: t0.Add(4*time.Minute + w)},
		{name: "full window without a lock: retry when the oldest that counts ages out",
			f:   storage.Failures{Streak: 2, Recent: mins(0, 1, 2)},
			now: t0.Add(3 * time.Minute), limit: 2,
			want: storage.Attempt{RetryAt: t0.Add(time.Minute + w)}, wantStreak: 2},
		{name: "failures outside the window are ignored",
			f:   storage.Failures{Streak: 1, Recent: mins(0)},
			now: t0.Add(w), limit: 1,
			want: storage.Attempt{Allowed: true, Failures: 2}, wantStreak: 2, wantLock: t0.Add(w + 2*w)},
		{name: "round 2 doubles the lock",
			f:   storage.Failures{Streak: 9, LockedUntil: t0, Recent: mins(1, 2, 3, 4)},
			now: t0.Add(5 * time.Minute), limit: 5,
			want: storage.Attempt{Allowed: true, Failures: 10}, wantStreak: 10, wantLock: t0.Add(5*time.Minute + 2*w)},
		{name: "limit below 1 refuses",
			f:   storage.Failures{Streak: 3},
			now: t0, limit: 0,
			want: storage.Attempt{}, wantStreak: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, streak, lock := storage.DecideAttempt(tc.f, tc.now, w, tc.limit)
			if a.Allowed != tc.want.Allowed || a.Failures != tc.want.Failures || !a.RetryAt.Equal(tc.want.RetryAt) ||
				streak != tc.wantStreak || !lock.Equal(tc.wantLock) {
				t.Errorf("DecideAttempt = %+v, streak %d, locked until %v; want %+v, %d, %v",
					a, streak, lock, tc.want, tc.wantStreak, tc.wantLock)
			}
		})
	}
}
