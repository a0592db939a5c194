package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// PutOAuthClient implements storage.OAuthStore.
func (d *DB) PutOAuthClient(ctx context.Context, c storage.OAuthClient) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, `INSERT INTO oauth_clients (id, metadata, created_at) VALUES ($1, $2, $3)`,
		c.ID, string(c.Metadata), ts(c.CreatedAt))
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

// OAuthClient implements storage.OAuthStore.
func (d *DB) OAuthClient(ctx context.Context, id string) (_ storage.OAuthClient, err error) {
	defer classify(&err)
	var c storage.OAuthClient
	var meta string
	err = d.pool.QueryRow(ctx, `SELECT id, metadata, created_at FROM oauth_clients WHERE id = $1`, id).Scan(&c.ID, &meta, &c.CreatedAt)
	if err != nil {
		return storage.OAuthClient{}, notFound(err)
	}
	c.Metadata, c.CreatedAt = []byte(meta), c.CreatedAt.UTC()
	return c, nil
}

const codeColumns = `hash, client_id, redirect_uri, challenge, scope, user_id, device_id, login, created_at, expires_at`

func scanCode(row pgx.Row) (storage.OAuthCode, error) {
	var c storage.OAuthCode
	if err := row.Scan(&c.Hash, &c.ClientID, &c.RedirectURI, &c.Challenge, &c.Scope, &c.UserID, &c.DeviceID, &c.Login, &c.CreatedAt, &c.ExpiresAt); err != nil {
		return storage.OAuthCode{}, notFound(err)
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	return c, nil
}

// PutOAuthCode implements storage.OAuthStore.
func (d *DB) PutOAuthCode(ctx context.Context, c storage.OAuthCode) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, `INSERT INTO oauth_codes (`+codeColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.Hash, c.ClientID, c.RedirectURI, c.Challenge, c.Scope, c.UserID, c.DeviceID, c.Login, ts(c.CreatedAt), ts(c.ExpiresAt))
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

// TakeOAuthCode implements storage.OAuthStore with one DELETE … RETURNING.
func (d *DB) TakeOAuthCode(ctx context.Context, hash []byte) (_ storage.OAuthCode, err error) {
	defer classify(&err)
	return scanCode(d.pool.QueryRow(ctx, `DELETE FROM oauth_codes WHERE hash = $1 RETURNING `+codeColumns, hash))
}

// ExpiredOAuthCodes implements storage.OAuthStore.
func (d *DB) ExpiredOAuthCodes(ctx context.Context, now time.Time, limit int) (_ []storage.OAuthCode, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT `+codeColumns+` FROM oauth_codes WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2`,
		ts(now), limitOrAll(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.OAuthCode
	for rows.Next() {
		c, err := scanCode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

const grantColumns = `id, client_id, user_id, device_id, scope, refresh_hash, access_hash, login, created_at, updated_at`

func scanGrant(row pgx.Row) (storage.OAuthGrant, error) {
	var g storage.OAuthGrant
	if err := row.Scan(&g.ID, &g.ClientID, &g.UserID, &g.DeviceID, &g.Scope, &g.RefreshHash, &g.AccessHash, &g.Login, &g.CreatedAt, &g.UpdatedAt); err != nil {
		return storage.OAuthGrant{}, notFound(err)
	}
	g.CreatedAt, g.UpdatedAt = g.CreatedAt.UTC(), g.UpdatedAt.UTC()
	return g, nil
}

// PutOAuthGrant implements storage.OAuthStore.
func (d *DB) PutOAuthGrant(ctx context.Context, g storage.OAuthGrant) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, `INSERT INTO oauth_grants (`+grantColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		g.ID, g.ClientID, g.UserID, g.DeviceID, g.Scope, g.RefreshHash, g.AccessHash, g.Login, ts(g.CreatedAt), ts(g.UpdatedAt))
	if isUniqueViolation(err) {
		return storage.ErrConflict
	}
	return err
}

// OAuthGrantByRefresh implements storage.OAuthStore.
func (d *DB) OAuthGrantByRefresh(ctx context.Context, hash []byte) (_ storage.OAuthGrant, err error) {
	defer classify(&err)
	return scanGrant(d.pool.QueryRow(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE refresh_hash = $1`, hash))
}

// OAuthGrantByAccess implements storage.OAuthStore.
func (d *DB) OAuthGrantByAccess(ctx context.Context, hash []byte) (_ storage.OAuthGrant, err error) {
	defer classify(&err)
	return scanGrant(d.pool.QueryRow(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE access_hash = $1 ORDER BY created_at LIMIT 1`, hash))
}

// RotateOAuthRefresh implements storage.OAuthStore with one conditional
// UPDATE (a concurrent rotation makes the WHERE fail on the new row version).
func (d *DB) RotateOAuthRefresh(ctx context.Context, id string, old, next []byte, now time.Time) (ok bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `UPDATE oauth_grants SET refresh_hash = $1, updated_at = $2 WHERE id = $3 AND refresh_hash = $4`,
		next, ts(now), id, old)
	return err == nil && tag.RowsAffected() == 1, err
}

// SetOAuthGrantLogin implements storage.OAuthStore with one conditional UPDATE.
func (d *DB) SetOAuthGrantLogin(ctx context.Context, id string, refresh, access, login []byte, now time.Time) (ok bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `UPDATE oauth_grants SET access_hash = $1, login = $2, updated_at = $3 WHERE id = $4 AND refresh_hash = $5`,
		access, login, ts(now), id, refresh)
	return err == nil && tag.RowsAffected() == 1, err
}

// TakeOAuthGrant implements storage.OAuthStore with one DELETE … RETURNING.
func (d *DB) TakeOAuthGrant(ctx context.Context, id string) (_ storage.OAuthGrant, err error) {
	defer classify(&err)
	return scanGrant(d.pool.QueryRow(ctx, `DELETE FROM oauth_grants WHERE id = $1 RETURNING `+grantColumns, id))
}
