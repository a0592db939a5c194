package account

import (
	"errors"
	"fmt"
	"time"
)

// Domain errors. Callers test them with errors.Is; package httperr is the one
// place that turns them into what a client sees.
var (
	// ErrMissingCode: no code was given.
	ErrMissingCode = errors.New("account: no code given")
	// ErrInvalidCode: the code is wrong, expired or already used. The wrapped
	// text says which, for the log; clients always see the same message.
	ErrInvalidCode = errors.New("account: invalid code")
	// ErrReplayed: a code that was right but already used (it wraps
	// ErrInvalidCode: clients see the same message).
	ErrReplayed = fmt.Errorf("%w (replayed)", ErrInvalidCode)
	// ErrNoPending: there is no pending enrolment, or it has expired.
	ErrNoPending = errors.New("account: no pending enrolment")
	// ErrNotEnabled: the user has no two-factor authentication enabled.
	ErrNotEnabled = errors.New("account: two-factor authentication is not enabled")
	// ErrWrongKey: the configured encryption key is not the one the stored
	// secrets were encrypted with.
	ErrWrongKey = errors.New("account: wrong encryption key")
)

// LockedError says the user has too many recent failures; no code is checked
// until RetryAfter has passed.
type LockedError struct {
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("account: too many failed attempts, retry after %s", e.RetryAfter)
}

// IsLocked reports whether err is a *LockedError and returns it.
func IsLocked(err error) (*LockedError, bool) {
	var le *LockedError
	ok := errors.As(err, &le)
	return le, ok
}
