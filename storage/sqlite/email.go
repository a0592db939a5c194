package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// PutEmailCode implements storage.EmailStore with one conditional upsert.
func (d *DB) PutEmailCode(ctx context.Context, c storage.EmailCode, minGap time.Duration) (bool, error) {
	res, err := d.w.ExecContext(ctx, `INSERT INTO email_codes (user_id, hash, sent_at, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, sent_at = excluded.sent_at, expires_at = excluded.expires_at
		WHERE email_codes.sent_at <= ?`,
		c.UserID, c.Hash, ms(c.SentAt), ms(c.ExpiresAt), ms(c.SentAt.Add(-minGap)))
	return affected(res, err)
}

// ConsumeEmailCode implements storage.EmailStore with one conditional DELETE.
func (d *DB) ConsumeEmailCode(ctx context.Context, userID string, hash []byte, now time.Time) (bool, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM email_codes WHERE user_id = ? AND hash = ? AND expires_at > ?`,
		userID, hash, ms(now))
	return affected(res, err)
}

// PutUserEmails implements storage.EmailStore.
func (d *DB) PutUserEmails(ctx context.Context, userID string, addresses []string, at time.Time) error {
	if len(addresses) == 0 {
		_, err := d.w.ExecContext(ctx, `DELETE FROM user_emails WHERE user_id = ?`, userID)
		return err
	}
	list, err := json.Marshal(addresses)
	if err != nil {
		return err
	}
	_, err = d.w.ExecContext(ctx, `INSERT INTO user_emails (user_id, addresses, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET addresses = excluded.addresses, updated_at = excluded.updated_at`,
		userID, string(list), ms(at))
	return err
}

// UserEmails implements storage.EmailStore.
func (d *DB) UserEmails(ctx context.Context, userID string) ([]string, error) {
	var list string
	err := d.r.QueryRowContext(ctx, `SELECT addresses FROM user_emails WHERE user_id = ?`, userID).Scan(&list)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	err = json.Unmarshal([]byte(list), &out)
	return out, err
}

// affected reports whether a statement changed exactly one row.
func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
