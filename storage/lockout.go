package storage

import "time"

// maxBackoffRounds caps the doubling of the back-off (2^40 windows is
// forever) so the arithmetic cannot overflow.
const maxBackoffRounds = 40

// forever stands in for a back-off too long to represent.
const forever = time.Duration(1<<62 - 1)

// Failures is what an engine has recorded about one user's failed attempts,
// as it loads them inside the transaction of ReserveAttempt.
type Failures struct {
	// Streak counts the consecutive failures since the last success.
	Streak int
	// LockedUntil ends the back-off earned by the last full round of
	// failures; zero when there is none.
	LockedUntil time.Time
	// Recent are the recorded failure times, oldest first. Those at or before
	// now − window are ignored, so an engine may or may not have pruned them.
	Recent []time.Time
}

// Backoff returns how long round (1, 2, …) of limit consecutive failures
// locks the user: window × 2^(round-1). Rounds past 40 count as 40, and a
// product too large for a time.Duration saturates at about 146 years.
func Backoff(window time.Duration, round int) time.Duration {
	round = min(max(round, 1), maxBackoffRounds)
	factor := time.Duration(int64(1) << (round - 1))
	backoff := window * factor
	if backoff <= 0 || backoff/factor != window {
		return forever // overflowed: as good as forever
	}
	return backoff
}

// DecideAttempt is the arithmetic of Store.ReserveAttempt, shared by every
// engine so that none has its own copy: given the user's recorded failures f,
// it decides an attempt at now. When a.Allowed, the engine must record one
// failure at now and store streak and lockedUntil as the user's new state, in
// the same transaction it loaded f in; otherwise it must record nothing. A
// limit below 1 refuses every attempt.
func DecideAttempt(f Failures, now time.Time, window time.Duration, limit int) (a Attempt, streak int, lockedUntil time.Time) {
	since := now.Add(-window)
	var inWindow []time.Time
	for _, at := range f.Recent {
		if at.After(since) {
			inWindow = append(inWindow, at)
		}
	}
	if limit < 1 {
		return Attempt{RetryAt: f.LockedUntil}, f.Streak, f.LockedUntil
	}
	if now.Before(f.LockedUntil) || len(inWindow) >= limit {
		a.RetryAt = f.LockedUntil
		if len(inWindow) >= limit {
			// Allowed again once enough failures have aged out of the window
			// that fewer than limit remain.
			if t := inWindow[len(inWindow)-limit].Add(window); t.After(a.RetryAt) {
				a.RetryAt = t
			}
		}
		return a, f.Streak, f.LockedUntil
	}
	streak, lockedUntil = f.Streak+1, f.LockedUntil
	if streak%limit == 0 {
		lockedUntil = now.Add(Backoff(window, streak/limit))
	}
	return Attempt{Allowed: true, Failures: streak}, streak, lockedUntil
}
