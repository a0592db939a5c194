package sqlite

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func completedText(c []string) (string, error) {
	if c == nil {
		c = []string{}
	}
	return jsonText(c)
}

// CreateSession implements storage.SessionStore.
func (d *DB) CreateSession(ctx context.Context, s storage.UIASession) error {
	flows, err := jsonText(s.Flows)
	if err != nil {
		return err
	}
	completed, err := completedText(s.Completed)
	if err != nil {
		return err
	}
	params := string(s.Params)
	if params == "" {
		params = "{}"
	}
	_, err = d.w.ExecContext(ctx, `INSERT INTO uia_sessions (id, kind, user_id, method, path, flows, params, completed, data, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, string(s.KindOr()), s.UserID, s.Method, s.Path, flows, params, completed, s.Data, ms(s.CreatedAt), ms(s.ExpiresAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return storage.ErrConflict
	}
	return err
}

const sessionColumns = `id, kind, user_id, method, path, flows, params, completed, data, created_at, expires_at`

func scanSession(row scanner) (storage.UIASession, error) {
	var s storage.UIASession
	var flows, params, completed string
	var created, expires int64
	if err := row.Scan(&s.ID, &s.Kind, &s.UserID, &s.Method, &s.Path, &flows, &params, &completed, &s.Data, &created, &expires); err != nil {
		return storage.UIASession{}, notFound(err)
	}
	if err := json.Unmarshal([]byte(flows), &s.Flows); err != nil {
		return storage.UIASession{}, err
	}
	if err := json.Unmarshal([]byte(completed), &s.Completed); err != nil {
		return storage.UIASession{}, err
	}
	s.Params = []byte(params)
	s.CreatedAt, s.ExpiresAt = fromMS(created), fromMS(expires)
	return s, nil
}

// Session implements storage.SessionStore.
func (d *DB) Session(ctx context.Context, id string) (storage.UIASession, error) {
	return scanSession(d.rs.queryRow(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE id = ?`, id))
}

// CompleteStage implements storage.SessionStore with one conditional UPDATE.
func (d *DB) CompleteStage(ctx context.Context, id string, before []string, stage string) (bool, error) {
	old, err := completedText(before)
	if err != nil {
		return false, err
	}
	updated, err := completedText(append(append([]string{}, before...), stage))
	if err != nil {
		return false, err
	}
	res, err := d.w.ExecContext(ctx, `UPDATE uia_sessions SET completed = ? WHERE id = ? AND completed = ?`, updated, id, old)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetSessionData implements storage.SessionStore.
func (d *DB) SetSessionData(ctx context.Context, id string, data []byte) error {
	res, err := d.w.ExecContext(ctx, `UPDATE uia_sessions SET data = ? WHERE id = ?`, data, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// TakeSession implements storage.SessionStore: DELETE … RETURNING is one
// statement, so exactly one caller gets the row.
func (d *DB) TakeSession(ctx context.Context, id string) (storage.UIASession, error) {
	return scanSession(d.w.QueryRowContext(ctx, `DELETE FROM uia_sessions WHERE id = ? RETURNING `+sessionColumns, id))
}

// UserSessions implements storage.SessionStore.
func (d *DB) UserSessions(ctx context.Context, userID string, kind storage.SessionKind, now time.Time) ([]storage.UIASession, error) {
	return d.sessions(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE user_id = ? AND kind = ? AND expires_at > ?
		ORDER BY created_at, rowid`, userID, string(kind), ms(now))
}

// ExpiredSessions implements storage.SessionStore.
func (d *DB) ExpiredSessions(ctx context.Context, now time.Time, limit int) ([]storage.UIASession, error) {
	return d.sessions(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`, ms(now), limit)
}

func (d *DB) sessions(ctx context.Context, query string, args ...any) ([]storage.UIASession, error) {
	rows, err := d.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.UIASession
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
