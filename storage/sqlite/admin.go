package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// ListUsers implements storage.Store. User IDs compare in byte order (the
// BINARY collation).
func (d *DB) ListUsers(ctx context.Context, q storage.UserQuery) ([]storage.UserRow, error) {
	now := ms(q.Now)
	where := []string{"u.user_id > ?"}
	args := []any{now, now, q.After}
	switch q.Status {
	case storage.UsersEnabled:
		where = append(where, "t.user_id IS NOT NULL")
	case storage.UsersLocked:
		where = append(where, "f.user_id IS NOT NULL")
	}
	if q.UserID != "" {
		where = append(where, "u.user_id = ?")
		args = append(args, q.UserID)
	}
	args = append(args, q.Limit)
	rows, err := d.r.QueryContext(ctx, `SELECT u.user_id, t.enabled_at, f.locked_until
		FROM (SELECT user_id FROM totp UNION SELECT user_id FROM failure_streaks WHERE locked_until > ?) u
		LEFT JOIN totp t ON t.user_id = u.user_id
		LEFT JOIN failure_streaks f ON f.user_id = u.user_id AND f.locked_until > ?
		WHERE `+strings.Join(where, " AND ")+` ORDER BY u.user_id LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.UserRow
	for rows.Next() {
		var r storage.UserRow
		var enabled, locked sql.NullInt64
		if err := rows.Scan(&r.UserID, &enabled, &locked); err != nil {
			return nil, err
		}
		if enabled.Valid {
			r.Enabled, r.EnabledAt = true, fromMS(enabled.Int64)
		}
		if locked.Valid {
			r.LockedUntil = fromMS(locked.Int64)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountUsers implements storage.Store.
func (d *DB) CountUsers(ctx context.Context, now time.Time) (storage.UserCounts, error) {
	var c storage.UserCounts
	err := d.r.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM totp),
		(SELECT COUNT(*) FROM failure_streaks WHERE locked_until > ?),
		(SELECT COUNT(*) FROM totp_pending WHERE expires_at > ?)`, ms(now), ms(now)).Scan(&c.Enabled, &c.Locked, &c.Pending)
	return c, err
}

// QueryAudit implements storage.Store.
func (d *DB) QueryAudit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEvent, error) {
	where, args := []string{"1 = 1"}, []any{}
	if q.UserID != "" {
		where, args = append(where, "user_id = ?"), append(args, q.UserID)
	}
	if q.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, q.Kind)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, ms(q.Since))
	}
	if q.Before > 0 {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	args = append(args, q.Limit)
	rows, err := d.r.QueryContext(ctx, `SELECT id, user_id, kind, detail, at FROM audit WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.AuditEvent
	for rows.Next() {
		var ev storage.AuditEvent
		var at int64
		if err := rows.Scan(&ev.ID, &ev.UserID, &ev.Kind, &ev.Detail, &at); err != nil {
			return nil, err
		}
		ev.At = fromMS(at)
		out = append(out, ev)
	}
	return out, rows.Err()
}
