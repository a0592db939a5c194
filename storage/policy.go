package storage

import (
	"context"
	"time"
)

// PolicyStore holds when the gateway first saw each user under the
// enforcement policy (the grace period counts from it). It is part of Store.
type PolicyStore interface {
	// SeeUnderPolicy records now as userID's first sighting under the policy
	// unless one is recorded already, in one statement, and returns the
	// recorded one (the earliest, also under concurrent calls).
	SeeUnderPolicy(ctx context.Context, userID string, now time.Time) (time.Time, error)
	// FirstSeen returns userID's recorded first sighting, or ErrNotFound.
	FirstSeen(ctx context.Context, userID string) (time.Time, error)
}
