package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// PutTrustedClient implements storage.TrustStore.
func (d *DB) PutTrustedClient(ctx context.Context, c storage.TrustedClient, now time.Time) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM trusted_clients WHERE user_id = ? AND until <= ?`, c.UserID, ms(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO trusted_clients (token_hash, client_hash, user_id, until) VALUES (?, ?, ?, ?)
			ON CONFLICT (token_hash, client_hash) DO UPDATE SET user_id = excluded.user_id, until = excluded.until`,
			c.TokenHash, c.ClientHash, c.UserID, ms(c.Until))
		return err
	})
}

// TrustedClientUntil implements storage.TrustStore.
func (d *DB) TrustedClientUntil(ctx context.Context, userID string, tokenHash, clientHash []byte, now time.Time) (time.Time, error) {
	var until int64
	err := d.r.QueryRowContext(ctx, `SELECT until FROM trusted_clients
		WHERE token_hash = ? AND client_hash = ? AND user_id = ? AND until > ?`,
		tokenHash, clientHash, userID, ms(now)).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, storage.ErrNotFound
	}
	if err != nil {
		return time.Time{}, err
	}
	return fromMS(until), nil
}

// ForgetTrustedToken implements storage.TrustStore.
func (d *DB) ForgetTrustedToken(ctx context.Context, tokenHash []byte) (int, error) {
	res, err := d.w.ExecContext(ctx, `DELETE FROM trusted_clients WHERE token_hash = ?`, tokenHash)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
