package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// PutEmailCode implements storage.EmailStore with one conditional upsert.
func (d *DB) PutEmailCode(ctx context.Context, c storage.EmailCode, minGap time.Duration) (ok bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `INSERT INTO email_codes (user_id, hash, sent_at, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, sent_at = excluded.sent_at, expires_at = excluded.expires_at
		WHERE email_codes.sent_at <= $5`,
		c.UserID, c.Hash, ts(c.SentAt), ts(c.ExpiresAt), ts(c.SentAt.Add(-minGap)))
	return err == nil && tag.RowsAffected() == 1, err
}

// ConsumeEmailCode implements storage.EmailStore with one conditional DELETE.
func (d *DB) ConsumeEmailCode(ctx context.Context, userID string, hash []byte, now time.Time) (ok bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `DELETE FROM email_codes WHERE user_id = $1 AND hash = $2 AND expires_at > $3`,
		userID, hash, ts(now))
	return err == nil && tag.RowsAffected() == 1, err
}

// PutUserEmails implements storage.EmailStore.
func (d *DB) PutUserEmails(ctx context.Context, userID string, addresses []string, at time.Time) (err error) {
	defer classify(&err)
	if len(addresses) == 0 {
		_, err = d.pool.Exec(ctx, `DELETE FROM user_emails WHERE user_id = $1`, userID)
		return err
	}
	list, err := json.Marshal(addresses)
	if err != nil {
		return err
	}
	_, err = d.pool.Exec(ctx, `INSERT INTO user_emails (user_id, addresses, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET addresses = excluded.addresses, updated_at = excluded.updated_at`,
		userID, string(list), ts(at))
	return err
}

// UserEmails implements storage.EmailStore.
func (d *DB) UserEmails(ctx context.Context, userID string) (out []string, err error) {
	defer classify(&err)
	var list []byte
	err = d.pool.QueryRow(ctx, `SELECT addresses FROM user_emails WHERE user_id = $1`, userID).Scan(&list)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	err = json.Unmarshal(list, &out)
	return out, err
}
