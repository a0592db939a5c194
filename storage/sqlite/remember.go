package sqlite

import (
	"context"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

const browserColumns = `hash, user_id, user_agent, addr, created_at, expires_at`

func scanBrowser(row interface{ Scan(...any) error }) (storage.RememberedBrowser, error) {
	var b storage.RememberedBrowser
	var created, expires int64
	if err := row.Scan(&b.Hash, &b.UserID, &b.UserAgent, &b.Addr, &created, &expires); err != nil {
		return storage.RememberedBrowser{}, notFound(err)
	}
	b.CreatedAt, b.ExpiresAt = fromMS(created), fromMS(expires)
	return b, nil
}

// PutBrowser implements storage.RememberStore.
func (d *DB) PutBrowser(ctx context.Context, b storage.RememberedBrowser) error {
	if _, err := d.w.ExecContext(ctx, `DELETE FROM remembered_browsers WHERE user_id = ? AND expires_at <= ?`,
		b.UserID, ms(b.CreatedAt)); err != nil {
		return err
	}
	_, err := d.w.ExecContext(ctx, `INSERT INTO remembered_browsers (`+browserColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		b.Hash, b.UserID, b.UserAgent, b.Addr, ms(b.CreatedAt), ms(b.ExpiresAt))
	return conflict(err)
}

// Browser implements storage.RememberStore.
func (d *DB) Browser(ctx context.Context, userID string, hash []byte, now time.Time) (storage.RememberedBrowser, error) {
	return scanBrowser(d.r.QueryRowContext(ctx, `SELECT `+browserColumns+` FROM remembered_browsers
		WHERE hash = ? AND user_id = ? AND expires_at > ?`, hash, userID, ms(now)))
}

// Browsers implements storage.RememberStore.
func (d *DB) Browsers(ctx context.Context, userID string, now time.Time) ([]storage.RememberedBrowser, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+browserColumns+` FROM remembered_browsers
		WHERE user_id = ? AND expires_at > ? ORDER BY created_at DESC, rowid DESC`, userID, ms(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.RememberedBrowser
	for rows.Next() {
		b, err := scanBrowser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// DeleteBrowser implements storage.RememberStore.
func (d *DB) DeleteBrowser(ctx context.Context, userID string, hash []byte) (bool, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM remembered_browsers WHERE user_id = ? AND hash = ?`, userID, hash)
	return affected(res, err)
}

// DeleteBrowsers implements storage.RememberStore.
func (d *DB) DeleteBrowsers(ctx context.Context, userID string) (int, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM remembered_browsers WHERE user_id = ?`, userID)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

const botColumns = `id, user_id, name, device_id, hash, secret, key_id, created_at`

func scanBot(row interface{ Scan(...any) error }) (storage.BotToken, error) {
	var t storage.BotToken
	var created int64
	if err := row.Scan(&t.ID, &t.UserID, &t.Name, &t.DeviceID, &t.Hash, &t.Secret, &t.KeyID, &created); err != nil {
		return storage.BotToken{}, notFound(err)
	}
	t.CreatedAt = fromMS(created)
	return t, nil
}

// PutBotToken implements storage.RememberStore: one statement (SQLite runs
// it alone) counts and inserts.
func (d *DB) PutBotToken(ctx context.Context, t storage.BotToken, limit int) error {
	res, err := d.w.ExecContext(ctx, `INSERT INTO bot_tokens (`+botColumns+`) SELECT ?, ?, ?, ?, ?, ?, ?, ?
		WHERE ? <= 0 OR (SELECT COUNT(*) FROM bot_tokens WHERE user_id = ?) < ?`,
		t.ID, t.UserID, t.Name, t.DeviceID, t.Hash, t.Secret, t.KeyID, ms(t.CreatedAt), limit, t.UserID, limit)
	if err != nil {
		return conflict(err)
	}
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		return storage.ErrFull
	}
	return err
}

// BotTokens implements storage.RememberStore.
func (d *DB) BotTokens(ctx context.Context, userID string) ([]storage.BotToken, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+botColumns+` FROM bot_tokens WHERE user_id = ? ORDER BY created_at, rowid`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.BotToken
	for rows.Next() {
		t, err := scanBot(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// TakeBotToken implements storage.RememberStore with one DELETE … RETURNING.
func (d *DB) TakeBotToken(ctx context.Context, userID, id string) (storage.BotToken, error) {
	return scanBot(d.w.QueryRowContext(ctx, `DELETE FROM bot_tokens WHERE user_id = ? AND id = ? RETURNING `+botColumns, userID, id))
}
