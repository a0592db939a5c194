package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

const browserColumns = `hash, user_id, user_agent, addr, created_at, expires_at`

func scanBrowser(row pgx.Row) (storage.RememberedBrowser, error) {
	var b storage.RememberedBrowser
	if err := row.Scan(&b.Hash, &b.UserID, &b.UserAgent, &b.Addr, &b.CreatedAt, &b.ExpiresAt); err != nil {
		return storage.RememberedBrowser{}, notFound(err)
	}
	b.CreatedAt, b.ExpiresAt = b.CreatedAt.UTC(), b.ExpiresAt.UTC()
	return b, nil
}

// PutBrowser implements storage.RememberStore.
func (d *DB) PutBrowser(ctx context.Context, b storage.RememberedBrowser) (err error) {
	defer classify(&err)
	if _, err = d.pool.Exec(ctx, `DELETE FROM remembered_browsers WHERE user_id = $1 AND expires_at <= $2`,
		b.UserID, ts(b.CreatedAt)); err != nil {
		return err
	}
	_, err = d.pool.Exec(ctx, `INSERT INTO remembered_browsers (`+browserColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		b.Hash, b.UserID, b.UserAgent, b.Addr, ts(b.CreatedAt), ts(b.ExpiresAt))
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

// Browser implements storage.RememberStore.
func (d *DB) Browser(ctx context.Context, userID string, hash []byte, now time.Time) (_ storage.RememberedBrowser, err error) {
	defer classify(&err)
	return scanBrowser(d.pool.QueryRow(ctx, `SELECT `+browserColumns+` FROM remembered_browsers
		WHERE hash = $1 AND user_id = $2 AND expires_at > $3`, hash, userID, ts(now)))
}

// Browsers implements storage.RememberStore.
func (d *DB) Browsers(ctx context.Context, userID string, now time.Time) (_ []storage.RememberedBrowser, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT `+browserColumns+` FROM remembered_browsers
		WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, hash`, userID, ts(now))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.RememberedBrowser, error) { return scanBrowser(r) })
}

// DeleteBrowser implements storage.RememberStore.
func (d *DB) DeleteBrowser(ctx context.Context, userID string, hash []byte) (ok bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `DELETE FROM remembered_browsers WHERE user_id = $1 AND hash = $2`, userID, hash)
	return err == nil && tag.RowsAffected() == 1, err
}

// DeleteBrowsers implements storage.RememberStore.
func (d *DB) DeleteBrowsers(ctx context.Context, userID string) (_ int, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `DELETE FROM remembered_browsers WHERE user_id = $1`, userID)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

const botColumns = `id, user_id, name, device_id, hash, secret, key_id, created_at`

func scanBot(row pgx.Row) (storage.BotToken, error) {
	var t storage.BotToken
	if err := row.Scan(&t.ID, &t.UserID, &t.Name, &t.DeviceID, &t.Hash, &t.Secret, &t.KeyID, &t.CreatedAt); err != nil {
		return storage.BotToken{}, notFound(err)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}

// PutBotToken implements storage.RememberStore: a transaction-scoped
// advisory lock on the user makes the count and the insert one step for
// every replica.
func (d *DB) PutBotToken(ctx context.Context, t storage.BotToken, limit int) (err error) {
	defer classify(&err)
	err = d.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('bot_tokens:' || $1, 0))`, t.UserID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO bot_tokens (`+botColumns+`) SELECT $1, $2, $3, $4, $5, $6, $7, $8
			WHERE $9::int <= 0 OR (SELECT COUNT(*) FROM bot_tokens WHERE user_id = $2) < $9::int`,
			t.ID, t.UserID, t.Name, t.DeviceID, t.Hash, t.Secret, t.KeyID, ts(t.CreatedAt), limit)
		if err == nil && tag.RowsAffected() == 0 {
			return storage.ErrFull
		}
		return err
	})
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

// BotTokens implements storage.RememberStore.
func (d *DB) BotTokens(ctx context.Context, userID string) (_ []storage.BotToken, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT `+botColumns+` FROM bot_tokens WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.BotToken, error) { return scanBot(r) })
}

// TakeBotToken implements storage.RememberStore with one DELETE … RETURNING.
func (d *DB) TakeBotToken(ctx context.Context, userID, id string) (_ storage.BotToken, err error) {
	defer classify(&err)
	return scanBot(d.pool.QueryRow(ctx, `DELETE FROM bot_tokens WHERE user_id = $1 AND id = $2 RETURNING `+botColumns, userID, id))
}
