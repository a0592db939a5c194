package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// PutTrustedClient implements storage.TrustStore.
func (d *DB) PutTrustedClient(ctx context.Context, c storage.TrustedClient, now time.Time) (err error) {
	defer classify(&err)
	return d.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM trusted_clients WHERE user_id = $1 AND until <= $2`, c.UserID, ts(now)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO trusted_clients (token_hash, client_hash, user_id, until) VALUES ($1, $2, $3, $4)
			ON CONFLICT (token_hash, client_hash) DO UPDATE SET user_id = excluded.user_id, until = excluded.until`,
			c.TokenHash, c.ClientHash, c.UserID, ts(c.Until))
		return err
	})
}

// TrustedClientUntil implements storage.TrustStore.
func (d *DB) TrustedClientUntil(ctx context.Context, userID string, tokenHash, clientHash []byte, now time.Time) (_ time.Time, err error) {
	defer classify(&err)
	var until time.Time
	err = d.pool.QueryRow(ctx, `SELECT until FROM trusted_clients
		WHERE token_hash = $1 AND client_hash = $2 AND user_id = $3 AND until > $4`,
		tokenHash, clientHash, userID, ts(now)).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, storage.ErrNotFound
	}
	if err != nil {
		return time.Time{}, err
	}
	return until.UTC(), nil
}

// ForgetTrustedToken implements storage.TrustStore.
func (d *DB) ForgetTrustedToken(ctx context.Context, tokenHash []byte) (_ int, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `DELETE FROM trusted_clients WHERE token_hash = $1`, tokenHash)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
