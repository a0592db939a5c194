package sqlite

import (
	"context"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// conflict maps a unique-constraint failure to storage.ErrConflict.
func conflict(err error) error {
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return storage.ErrConflict
	}
	return err
}

// PutOAuthClient implements storage.OAuthStore.
func (d *DB) PutOAuthClient(ctx context.Context, c storage.OAuthClient) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO oauth_clients (id, metadata, created_at) VALUES (?, ?, ?)`,
		c.ID, string(c.Metadata), ms(c.CreatedAt))
	return conflict(err)
}

// OAuthClient implements storage.OAuthStore.
func (d *DB) OAuthClient(ctx context.Context, id string) (storage.OAuthClient, error) {
	var c storage.OAuthClient
	var meta string
	var created int64
	err := d.r.QueryRowContext(ctx, `SELECT id, metadata, created_at FROM oauth_clients WHERE id = ?`, id).Scan(&c.ID, &meta, &created)
	if err != nil {
		return storage.OAuthClient{}, notFound(err)
	}
	c.Metadata, c.CreatedAt = []byte(meta), fromMS(created)
	return c, nil
}

const codeColumns = `hash, client_id, redirect_uri, challenge, scope, user_id, device_id, login, created_at, expires_at`

func scanCode(row interface{ Scan(...any) error }) (storage.OAuthCode, error) {
	var c storage.OAuthCode
	var created, expires int64
	if err := row.Scan(&c.Hash, &c.ClientID, &c.RedirectURI, &c.Challenge, &c.Scope, &c.UserID, &c.DeviceID, &c.Login, &created, &expires); err != nil {
		return storage.OAuthCode{}, notFound(err)
	}
	c.CreatedAt, c.ExpiresAt = fromMS(created), fromMS(expires)
	return c, nil
}

// PutOAuthCode implements storage.OAuthStore.
func (d *DB) PutOAuthCode(ctx context.Context, c storage.OAuthCode) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO oauth_codes (`+codeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Hash, c.ClientID, c.RedirectURI, c.Challenge, c.Scope, c.UserID, c.DeviceID, c.Login, ms(c.CreatedAt), ms(c.ExpiresAt))
	return conflict(err)
}

// TakeOAuthCode implements storage.OAuthStore with one DELETE … RETURNING.
func (d *DB) TakeOAuthCode(ctx context.Context, hash []byte) (storage.OAuthCode, error) {
	return scanCode(d.w.QueryRowContext(ctx, `DELETE FROM oauth_codes WHERE hash = ? RETURNING `+codeColumns, hash))
}

// ExpiredOAuthCodes implements storage.OAuthStore.
func (d *DB) ExpiredOAuthCodes(ctx context.Context, now time.Time, limit int) ([]storage.OAuthCode, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+codeColumns+` FROM oauth_codes WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`, ms(now), limit)
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

func scanGrant(row interface{ Scan(...any) error }) (storage.OAuthGrant, error) {
	var g storage.OAuthGrant
	var created, updated int64
	if err := row.Scan(&g.ID, &g.ClientID, &g.UserID, &g.DeviceID, &g.Scope, &g.RefreshHash, &g.AccessHash, &g.Login, &created, &updated); err != nil {
		return storage.OAuthGrant{}, notFound(err)
	}
	g.CreatedAt, g.UpdatedAt = fromMS(created), fromMS(updated)
	return g, nil
}

// PutOAuthGrant implements storage.OAuthStore.
func (d *DB) PutOAuthGrant(ctx context.Context, g storage.OAuthGrant) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO oauth_grants (`+grantColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.ClientID, g.UserID, g.DeviceID, g.Scope, g.RefreshHash, g.AccessHash, g.Login, ms(g.CreatedAt), ms(g.UpdatedAt))
	return conflict(err)
}

// OAuthGrantByRefresh implements storage.OAuthStore.
func (d *DB) OAuthGrantByRefresh(ctx context.Context, hash []byte) (storage.OAuthGrant, error) {
	return scanGrant(d.r.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE refresh_hash = ?`, hash))
}

// OAuthGrantByAccess implements storage.OAuthStore.
func (d *DB) OAuthGrantByAccess(ctx context.Context, hash []byte) (storage.OAuthGrant, error) {
	return scanGrant(d.r.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE access_hash = ? ORDER BY created_at LIMIT 1`, hash))
}

// RotateOAuthRefresh implements storage.OAuthStore with one conditional UPDATE.
func (d *DB) RotateOAuthRefresh(ctx context.Context, id string, old, next []byte, now time.Time) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE oauth_grants SET refresh_hash = ?, updated_at = ? WHERE id = ? AND refresh_hash = ?`,
		next, ms(now), id, old)
	return affected(res, err)
}

// SetOAuthGrantLogin implements storage.OAuthStore with one conditional UPDATE.
func (d *DB) SetOAuthGrantLogin(ctx context.Context, id string, refresh, access, login []byte, now time.Time) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE oauth_grants SET access_hash = ?, login = ?, updated_at = ? WHERE id = ? AND refresh_hash = ?`,
		access, login, ms(now), id, refresh)
	return affected(res, err)
}

// TakeOAuthGrant implements storage.OAuthStore with one DELETE … RETURNING.
func (d *DB) TakeOAuthGrant(ctx context.Context, id string) (storage.OAuthGrant, error) {
	return scanGrant(d.w.QueryRowContext(ctx, `DELETE FROM oauth_grants WHERE id = ? RETURNING `+grantColumns, id))
}
