package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// ReserveAttempt implements storage.Store. Its first statement creates or
// locks the user's failure_streaks row (an upsert, which READ COMMITTED
// guarantees either inserts or locks, even against a concurrent insert or
// delete), so one user's attempts run one at a time across every replica;
// the decision is storage.DecideAttempt's.
func (d *DB) ReserveAttempt(ctx context.Context, userID string, now time.Time, window time.Duration, limit int) (_ storage.Attempt, err error) {
	defer classify(&err)
	var a storage.Attempt
	err = d.tx(ctx, func(tx pgx.Tx) error {
		var err error
		a, err = reserve(ctx, tx, userID, ts(now), window, limit)
		return err
	})
	if err != nil {
		return storage.Attempt{}, err
	}
	return a, nil
}

// reserve is ReserveAttempt inside tx; now is at the engine's precision.
func reserve(ctx context.Context, tx pgx.Tx, userID string, now time.Time, window time.Duration, limit int) (storage.Attempt, error) {
	since := ts(now.Add(-window))
	var f storage.Failures
	var locked *time.Time
	if err := tx.QueryRow(ctx, `INSERT INTO failure_streaks (user_id, count) VALUES ($1, 0)
		ON CONFLICT (user_id) DO UPDATE SET count = failure_streaks.count
		RETURNING count, locked_until`, userID).Scan(&f.Streak, &locked); err != nil {
		return storage.Attempt{}, err
	}
	f.LockedUntil = fromNull(locked)
	if _, err := tx.Exec(ctx, `DELETE FROM failures WHERE user_id = $1 AND at <= $2`, userID, since); err != nil {
		return storage.Attempt{}, err
	}
	rows, err := tx.Query(ctx, `SELECT at FROM failures WHERE user_id = $1 AND at > $2 ORDER BY at`, userID, since)
	if err != nil {
		return storage.Attempt{}, err
	}
	f.Recent, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (time.Time, error) {
		var at time.Time
		err := r.Scan(&at)
		return at.UTC(), err
	})
	if err != nil {
		return storage.Attempt{}, err
	}
	a, streak, until := storage.DecideAttempt(f, now, window, limit)
	if !a.Allowed {
		return a, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO failures (user_id, at) VALUES ($1, $2)`, userID, now); err != nil {
		return storage.Attempt{}, err
	}
	_, err = tx.Exec(ctx, `UPDATE failure_streaks SET count = $2, locked_until = $3 WHERE user_id = $1`,
		userID, streak, tsOrNull(until))
	return a, err
}

// clearFailures is ClearFailures inside tx.
func clearFailures(ctx context.Context, tx pgx.Tx, userID string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM failure_streaks WHERE user_id = $1`, userID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM failures WHERE user_id = $1`, userID)
	return err
}

// ClearFailures implements storage.Store. Deleting the streak row first
// waits for a ReserveAttempt that holds it, so its failure is cleared too.
func (d *DB) ClearFailures(ctx context.Context, userID string) (err error) {
	defer classify(&err)
	return d.tx(ctx, func(tx pgx.Tx) error { return clearFailures(ctx, tx, userID) })
}

// UseTOTP implements storage.Store in one transaction: reserving the attempt
// locks the user's failure_streaks row first, so one user's checks run one
// at a time across every replica; the step advance is a conditional update
// besides, and the session step a compare-and-swap.
func (d *DB) UseTOTP(ctx context.Context, u storage.TOTPUse) (_ storage.TOTPOutcome, err error) {
	defer classify(&err)
	var out storage.TOTPOutcome
	var missing bool
	err = d.tx(ctx, func(tx pgx.Tx) error {
		out, missing = storage.TOTPOutcome{}, false
		a, err := reserve(ctx, tx, u.UserID, ts(u.Now), u.Window, u.Limit)
		out.Attempt = a
		if err != nil || !a.Allowed {
			return err
		}
		if u.Matched {
			if out.Accepted, missing, err = advanceStep(ctx, tx, u.UserID, u.Step); err != nil {
				return err
			}
			out.Replayed = !out.Accepted && !missing
		}
		if missing {
			return nil // the failure counts; ErrNotFound says why
		}
		if out.Accepted {
			out.Attempt.Failures = 0
			if err := clearFailures(ctx, tx, u.UserID); err != nil {
				return err
			}
			if out.SessionDone, out.Session, err = sessionStep(ctx, tx, u.Session); err != nil {
				return err
			}
		}
		return addAudit(ctx, tx, u, out)
	})
	if err != nil {
		return storage.TOTPOutcome{}, err
	}
	if missing {
		return out, storage.ErrNotFound
	}
	return out, nil
}

// advanceStep is AdvanceStep inside tx; missing reports that the user has no
// authenticator.
func advanceStep(ctx context.Context, tx pgx.Tx, userID string, step int64) (advanced, missing bool, err error) {
	tag, err := tx.Exec(ctx, `UPDATE totp SET last_step = $1 WHERE user_id = $2 AND last_step < $1`, step, userID)
	if err != nil || tag.RowsAffected() == 1 {
		return err == nil, false, err
	}
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM totp WHERE user_id = $1`, userID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, true, nil
	}
	return false, false, err
}

// sessionStep makes step's change to its session inside tx, if it has one,
// and reports whether it did; a taken session is returned.
func sessionStep(ctx context.Context, tx pgx.Tx, step storage.SessionStep) (bool, storage.UIASession, error) {
	if step.ID == "" {
		return false, storage.UIASession{}, nil
	}
	old, err := completedText(step.Before)
	if err != nil {
		return false, storage.UIASession{}, err
	}
	if step.Take {
		s, err := scanSession(tx.QueryRow(ctx, `DELETE FROM uia_sessions WHERE id = $1 AND completed = $2 RETURNING `+sessionColumns, step.ID, old))
		if errors.Is(err, storage.ErrNotFound) {
			return false, storage.UIASession{}, nil
		}
		return err == nil, s, err
	}
	updated, err := completedText(append(append([]string{}, step.Before...), step.Stage))
	if err != nil {
		return false, storage.UIASession{}, err
	}
	tag, err := tx.Exec(ctx, `UPDATE uia_sessions SET completed = $1 WHERE id = $2 AND completed = $3`, updated, step.ID, old)
	return err == nil && tag.RowsAffected() == 1, storage.UIASession{}, err
}

// addAudit appends the audit events u.Audit asks for out inside tx.
func addAudit(ctx context.Context, tx pgx.Tx, u storage.TOTPUse, out storage.TOTPOutcome) error {
	if u.Audit == nil {
		return nil
	}
	for _, ev := range u.Audit(out) {
		if _, err := tx.Exec(ctx, `INSERT INTO audit (user_id, kind, detail, at) VALUES ($1, $2, $3, $4)`,
			ev.UserID, ev.Kind, ev.Detail, ts(ev.At)); err != nil {
			return err
		}
	}
	return nil
}
