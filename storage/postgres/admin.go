package postgres

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// ListUsers implements storage.Store. User IDs compare in byte order
// (COLLATE "C"), as in the SQLite engine, whatever the database's collation.
func (d *DB) ListUsers(ctx context.Context, q storage.UserQuery) (_ []storage.UserRow, err error) {
	defer classify(&err)
	where := []string{`u.user_id COLLATE "C" > $2`}
	args := []any{ts(q.Now), q.After, q.Limit}
	switch q.Status {
	case storage.UsersEnabled:
		where = append(where, "t.user_id IS NOT NULL")
	case storage.UsersLocked:
		where = append(where, "f.user_id IS NOT NULL")
	}
	if q.UserID != "" {
		args = append(args, q.UserID)
		where = append(where, "u.user_id = $"+strconv.Itoa(len(args)))
	}
	rows, err := d.pool.Query(ctx, `SELECT u.user_id, t.enabled_at, f.locked_until
		FROM (SELECT user_id FROM totp UNION SELECT user_id FROM failure_streaks WHERE locked_until > $1) u
		LEFT JOIN totp t ON t.user_id = u.user_id
		LEFT JOIN failure_streaks f ON f.user_id = u.user_id AND f.locked_until > $1
		WHERE `+strings.Join(where, " AND ")+` ORDER BY u.user_id COLLATE "C" LIMIT $3`, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.UserRow, error) {
		var row storage.UserRow
		var enabled, locked *time.Time
		err := r.Scan(&row.UserID, &enabled, &locked)
		row.Enabled, row.EnabledAt, row.LockedUntil = enabled != nil, fromNull(enabled), fromNull(locked)
		return row, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// CountUsers implements storage.Store.
func (d *DB) CountUsers(ctx context.Context, now time.Time) (_ storage.UserCounts, err error) {
	defer classify(&err)
	var c storage.UserCounts
	err = d.pool.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM totp),
		(SELECT COUNT(*) FROM failure_streaks WHERE locked_until > $1),
		(SELECT COUNT(*) FROM totp_pending WHERE expires_at > $1)`, ts(now)).Scan(&c.Enabled, &c.Locked, &c.Pending)
	return c, err
}

// QueryAudit implements storage.Store.
func (d *DB) QueryAudit(ctx context.Context, q storage.AuditQuery) (_ []storage.AuditEvent, err error) {
	defer classify(&err)
	where, args := []string{"TRUE"}, []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if q.UserID != "" {
		add("user_id =", q.UserID)
	}
	if q.Kind != "" {
		add("kind =", q.Kind)
	}
	if !q.Since.IsZero() {
		add("at >=", ts(q.Since))
	}
	if q.Before > 0 {
		add("id <", q.Before)
	}
	args = append(args, limitOrAll(q.Limit))
	rows, err := d.pool.Query(ctx, `SELECT id, user_id, kind, detail, at FROM audit WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.AuditEvent, error) {
		var ev storage.AuditEvent
		err := r.Scan(&ev.ID, &ev.UserID, &ev.Kind, &ev.Detail, &ev.At)
		ev.At = ev.At.UTC()
		return ev, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
