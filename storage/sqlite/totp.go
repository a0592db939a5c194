package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// ReserveAttempt implements storage.Store: it loads the user's failures in
// one immediate transaction, so concurrent attempts can never exceed limit,
// and leaves the decision to storage.DecideAttempt.
func (d *DB) ReserveAttempt(ctx context.Context, userID string, now time.Time, window time.Duration, limit int) (storage.Attempt, error) {
	now = fromMS(ms(now)) // the precision the engine stores
	var a storage.Attempt
	err := d.ptx(ctx, func(tx ptx) error {
		f, _, err := loadFailures(ctx, tx, userID)
		if err != nil {
			return err
		}
		var streak int
		var until time.Time
		if a, streak, until = storage.DecideAttempt(f, now, window, limit); !a.Allowed {
			return nil
		}
		return recordFailure(ctx, tx, userID, now, window, streak, until)
	})
	return a, err
}

// loadFailures reads the user's failures inside tx (all of them: the
// decision looks at the window); any reports whether there is anything to
// clear.
func loadFailures(ctx context.Context, tx ptx, userID string) (f storage.Failures, any bool, err error) {
	var lockedUntil int64
	err = tx.QueryRowContext(ctx, `SELECT count, locked_until FROM failure_streaks WHERE user_id = ?`, userID).Scan(&f.Streak, &lockedUntil)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return f, false, err
	}
	any = err == nil
	if lockedUntil != 0 {
		f.LockedUntil = fromMS(lockedUntil)
	}
	rows, err := tx.QueryContext(ctx, `SELECT at FROM failures WHERE user_id = ? ORDER BY at ASC`, userID)
	if err != nil {
		return f, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return f, false, err
		}
		f.Recent = append(f.Recent, fromMS(at))
	}
	return f, any || len(f.Recent) > 0, rows.Err()
}

// recordFailure records one failure at now inside tx, with the streak and
// back-off storage.DecideAttempt gave, and forgets failures older than
// window.
func recordFailure(ctx context.Context, tx ptx, userID string, now time.Time, window time.Duration, streak int, until time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE user_id = ? AND at <= ?`, userID, ms(now.Add(-window))); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO failures (user_id, at) VALUES (?, ?)`, userID, ms(now)); err != nil {
		return err
	}
	var lockedUntil int64
	if !until.IsZero() {
		lockedUntil = ms(until)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO failure_streaks (user_id, count, locked_until) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET count = excluded.count, locked_until = excluded.locked_until`,
		userID, streak, lockedUntil)
	return err
}

// clearFailures is ClearFailures inside tx.
func clearFailures(ctx context.Context, tx ptx, userID string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE user_id = ?`, userID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM failure_streaks WHERE user_id = ?`, userID)
	return err
}

// ClearFailures implements storage.Store.
func (d *DB) ClearFailures(ctx context.Context, userID string) error {
	return d.ptx(ctx, func(tx ptx) error { return clearFailures(ctx, tx, userID) })
}

// UseTOTP implements storage.Store in one immediate transaction. An accepted
// code records no failure to wipe at once: the user's failures are deleted
// only if there are any.
func (d *DB) UseTOTP(ctx context.Context, u storage.TOTPUse) (storage.TOTPOutcome, error) {
	now := fromMS(ms(u.Now)) // the precision the engine stores
	var out storage.TOTPOutcome
	var missing bool
	err := d.ptx(ctx, func(tx ptx) error {
		out, missing = storage.TOTPOutcome{}, false
		f, any, err := loadFailures(ctx, tx, u.UserID)
		if err != nil {
			return err
		}
		a, streak, until := storage.DecideAttempt(f, now, u.Window, u.Limit)
		if out.Attempt = a; !a.Allowed {
			return nil
		}
		if u.Matched {
			if out.Accepted, missing, err = advanceStep(ctx, tx, u.UserID, u.Step); err != nil {
				return err
			}
			out.Replayed = !out.Accepted && !missing
		}
		if !out.Accepted {
			if err := recordFailure(ctx, tx, u.UserID, now, u.Window, streak, until); err != nil || missing {
				return err // a missing authenticator: the failure counts, ErrNotFound says why
			}
			return addAudit(ctx, tx, u, out)
		}
		out.Attempt.Failures = 0
		if any {
			if err := clearFailures(ctx, tx, u.UserID); err != nil {
				return err
			}
		}
		if out.SessionDone, out.Session, err = sessionStep(ctx, tx, u.Session); err != nil {
			return err
		}
		return addAudit(ctx, tx, u, out)
	})
	if err == nil && missing {
		err = storage.ErrNotFound
	}
	return out, err
}

// advanceStep is AdvanceStep inside tx; missing reports that the user has no
// authenticator.
func advanceStep(ctx context.Context, tx ptx, userID string, step int64) (advanced, missing bool, err error) {
	res, err := tx.ExecContext(ctx, `UPDATE totp SET last_step = ? WHERE user_id = ? AND last_step < ?`, step, userID, step)
	if err != nil {
		return false, false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 1 {
		return n == 1, false, err
	}
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM totp WHERE user_id = ?`, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, true, nil
	}
	return false, false, err
}

// sessionStep makes step's change to its session inside tx, if it has one,
// and reports whether it did; a taken session is returned.
func sessionStep(ctx context.Context, tx ptx, step storage.SessionStep) (bool, storage.UIASession, error) {
	if step.ID == "" {
		return false, storage.UIASession{}, nil
	}
	old, err := completedText(step.Before)
	if err != nil {
		return false, storage.UIASession{}, err
	}
	if step.Take {
		s, err := scanSession(tx.QueryRowContext(ctx, `DELETE FROM uia_sessions WHERE id = ? AND completed = ? RETURNING `+sessionColumns, step.ID, old))
		if errors.Is(err, storage.ErrNotFound) {
			return false, storage.UIASession{}, nil
		}
		return err == nil, s, err
	}
	updated, err := completedText(append(append([]string{}, step.Before...), step.Stage))
	if err != nil {
		return false, storage.UIASession{}, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE uia_sessions SET completed = ? WHERE id = ? AND completed = ?`, updated, step.ID, old)
	if err != nil {
		return false, storage.UIASession{}, err
	}
	n, err := res.RowsAffected()
	return n == 1, storage.UIASession{}, err
}

// addAudit appends the audit events u.Audit asks for out inside tx.
func addAudit(ctx context.Context, tx ptx, u storage.TOTPUse, out storage.TOTPOutcome) error {
	if u.Audit == nil {
		return nil
	}
	for _, ev := range u.Audit(out) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (user_id, kind, detail, at) VALUES (?, ?, ?, ?)`,
			ev.UserID, ev.Kind, ev.Detail, ms(ev.At)); err != nil {
			return err
		}
	}
	return nil
}
