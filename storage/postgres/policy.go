package postgres

import (
	"context"
	"time"
)

// SeeUnderPolicy implements storage.PolicyStore with one upsert that keeps
// the recorded time.
func (d *DB) SeeUnderPolicy(ctx context.Context, userID string, now time.Time) (at time.Time, err error) {
	defer classify(&err)
	err = d.pool.QueryRow(ctx, `INSERT INTO policy_first_seen (user_id, first_seen) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET first_seen = policy_first_seen.first_seen
		RETURNING first_seen`, userID, ts(now)).Scan(&at)
	return at.UTC(), err
}

// FirstSeen implements storage.PolicyStore.
func (d *DB) FirstSeen(ctx context.Context, userID string) (at time.Time, err error) {
	defer classify(&err)
	err = d.pool.QueryRow(ctx, `SELECT first_seen FROM policy_first_seen WHERE user_id = $1`, userID).Scan(&at)
	return at.UTC(), notFound(err)
}
