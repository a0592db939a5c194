package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

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
func (d *DB) CreateSession(ctx context.Context, s storage.UIASession) (err error) {
	defer classify(&err)
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
	_, err = d.pool.Exec(ctx, `INSERT INTO uia_sessions (id, kind, user_id, method, path, flows, params, completed, data, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		s.ID, string(s.KindOr()), s.UserID, s.Method, s.Path, flows, params, completed, s.Data, ts(s.CreatedAt), ts(s.ExpiresAt))
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

const sessionColumns = `id, kind, user_id, method, path, flows, params, completed, data, created_at, expires_at`

func scanSession(row pgx.Row) (storage.UIASession, error) {
	var s storage.UIASession
	var flows, params, completed string
	if err := row.Scan(&s.ID, &s.Kind, &s.UserID, &s.Method, &s.Path, &flows, &params, &completed, &s.Data, &s.CreatedAt, &s.ExpiresAt); err != nil {
		return storage.UIASession{}, notFound(err)
	}
	if err := json.Unmarshal([]byte(flows), &s.Flows); err != nil {
		return storage.UIASession{}, err
	}
	if err := json.Unmarshal([]byte(completed), &s.Completed); err != nil {
		return storage.UIASession{}, err
	}
	s.Params = []byte(params)
	s.CreatedAt, s.ExpiresAt = s.CreatedAt.UTC(), s.ExpiresAt.UTC()
	return s, nil
}

// Session implements storage.SessionStore.
func (d *DB) Session(ctx context.Context, id string) (_ storage.UIASession, err error) {
	defer classify(&err)
	return scanSession(d.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE id = $1`, id))
}

// CompleteStage implements storage.SessionStore with one conditional UPDATE
// comparing completed as a JSONB value: a concurrent caller waits for the row
// and re-checks it against the version the winner committed.
func (d *DB) CompleteStage(ctx context.Context, id string, before []string, stage string) (_ bool, err error) {
	defer classify(&err)
	old, err := completedText(before)
	if err != nil {
		return false, err
	}
	updated, err := completedText(append(append([]string{}, before...), stage))
	if err != nil {
		return false, err
	}
	tag, err := d.pool.Exec(ctx, `UPDATE uia_sessions SET completed = $1 WHERE id = $2 AND completed = $3`, updated, id, old)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// SetSessionData implements storage.SessionStore.
func (d *DB) SetSessionData(ctx context.Context, id string, data []byte) (err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `UPDATE uia_sessions SET data = $1 WHERE id = $2`, data, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// TakeSession implements storage.SessionStore: DELETE … RETURNING is one
// statement, and a concurrent caller that waited for the row finds it gone,
// so exactly one caller gets it.
func (d *DB) TakeSession(ctx context.Context, id string) (_ storage.UIASession, err error) {
	defer classify(&err)
	return scanSession(d.pool.QueryRow(ctx, `DELETE FROM uia_sessions WHERE id = $1 RETURNING `+sessionColumns, id))
}

// UserSessions implements storage.SessionStore.
func (d *DB) UserSessions(ctx context.Context, userID string, kind storage.SessionKind, now time.Time) (_ []storage.UIASession, err error) {
	defer classify(&err)
	return d.sessions(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE user_id = $1 AND kind = $2 AND expires_at > $3
		ORDER BY created_at, seq`, userID, string(kind), ts(now))
}

// ExpiredSessions implements storage.SessionStore.
func (d *DB) ExpiredSessions(ctx context.Context, now time.Time, limit int) (_ []storage.UIASession, err error) {
	defer classify(&err)
	return d.sessions(ctx, `SELECT `+sessionColumns+` FROM uia_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2`,
		ts(now), limitOrAll(limit))
}

func (d *DB) sessions(ctx context.Context, query string, args ...any) ([]storage.UIASession, error) {
	rows, err := d.pool.Query(ctx, query, args...)
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
