package sqlite

import (
	"context"
	"time"
)

// SeeUnderPolicy implements storage.PolicyStore with one upsert that keeps
// the recorded time.
func (d *DB) SeeUnderPolicy(ctx context.Context, userID string, now time.Time) (time.Time, error) {
	var v int64
	err := d.w.QueryRowContext(ctx, `INSERT INTO policy_first_seen (user_id, first_seen) VALUES (?, ?)
		ON CONFLICT (user_id) DO UPDATE SET first_seen = policy_first_seen.first_seen
		RETURNING first_seen`, userID, ms(now)).Scan(&v)
	if err != nil {
		return time.Time{}, err
	}
	return fromMS(v), nil
}

// FirstSeen implements storage.PolicyStore.
func (d *DB) FirstSeen(ctx context.Context, userID string) (time.Time, error) {
	var v int64
	err := d.r.QueryRowContext(ctx, `SELECT first_seen FROM policy_first_seen WHERE user_id = ?`, userID).Scan(&v)
	if err != nil {
		return time.Time{}, notFound(err)
	}
	return fromMS(v), nil
}
