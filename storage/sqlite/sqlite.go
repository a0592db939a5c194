package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver

	"github.com/matrix-2fa/matrix-2fa/storage"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Options tunes the engine.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: "NORMAL" (default, durable
	// across a process crash in WAL mode) or "FULL" (durable across power loss).
	Synchronous string
	// BusyTimeout is how long a statement waits for a lock (default 10s).
	BusyTimeout time.Duration
}

// DB is the SQLite storage.Store. Every write goes through w, one
// connection: SQLite runs one write transaction at a time anyway, and writers
// queued in Go wait for the connection instead of contending for the file
// lock (a writer that finds it taken sleeps in the busy handler, up to 100 ms
// at a time). Plain reads go through r, a pool of query-only connections
// that WAL lets read alongside the writer.
type DB struct {
	w, r pool
	// ws and rs: statements of the hot paths (a TOTP check, a session
	// load), prepared once on w and r.
	ws, rs *stmtCache
}

// readers is how many connections the read pool holds.
const readers = 8

var _ storage.Store = (*DB)(nil)

// Open opens (creating if needed) the database file at path and runs pending
// migrations. It returns an error for an unknown synchronous mode, a file that
// cannot be opened, or a failed migration.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	syncMode := strings.ToUpper(opts.Synchronous)
	if syncMode == "" {
		syncMode = "NORMAL"
	}
	if syncMode != "NORMAL" && syncMode != "FULL" {
		return nil, fmt.Errorf("sqlite: synchronous must be NORMAL or FULL, not %q", opts.Synchronous)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 10 * time.Second
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_synchronous", syncMode)
	q.Set("_txlock", "immediate")
	w, err := openPool(ctx, path, q, 1)
	if err != nil {
		return nil, err
	}
	d := &DB{w: pool{w}, ws: newStmtCache(w)}
	if err := d.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	q.Set("_query_only", "on")
	r, err := openPool(ctx, path, q, readers)
	if err != nil {
		w.Close()
		return nil, err
	}
	d.r, d.rs = pool{r}, newStmtCache(r)
	return d, nil
}

// openPool opens a pool of at most conns connections to the file at path
// with the DSN parameters q, and checks that it answers.
func openPool(ctx context.Context, path string, q url.Values, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (d *DB) Close() error {
	return errors.Join(d.rs.close(), d.ws.close(), d.r.Close(), d.w.Close())
}

// migrate applies every embedded migration newer than the recorded version,
// each in its own transaction together with its record.
func (d *DB) migrate(ctx context.Context) error {
	if _, err := d.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("sqlite: migration %s has no numeric prefix", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if err := d.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				version, base, time.Now().UnixMilli())
			return err
		}); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
	}
	return nil
}

// tx runs fn in a transaction (BEGIN IMMEDIATE, from the DSN), committing on
// nil. The transaction is rolled back whatever happens in fn, a panic too:
// the one writer connection is never left inside it.
func (d *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return unavailable(err)
	}
	return unavailable(tx.Commit())
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrNotFound
	}
	return unavailable(err)
}

// TOTP implements storage.Store.
func (d *DB) TOTP(ctx context.Context, userID string) (storage.TOTP, error) {
	var t storage.TOTP
	var enabled int64
	err := d.rs.queryRow(ctx, `SELECT user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at
		FROM totp WHERE user_id = ?`, userID).
		Scan(&t.UserID, &t.Secret, &t.KeyID, &t.Algorithm, &t.Digits, &t.Period, &t.LastStep, &enabled)
	if err != nil {
		return storage.TOTP{}, notFound(err)
	}
	t.EnabledAt = fromMS(enabled)
	return t, nil
}

// HasTOTPFold implements storage.Store (NOCASE folds ASCII letters only).
func (d *DB) HasTOTPFold(ctx context.Context, userID string) (bool, error) {
	var one int
	err := d.r.QueryRowContext(ctx, `SELECT 1 FROM totp WHERE user_id = ? COLLATE NOCASE LIMIT 1`, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// AdvanceStep implements storage.Store with one conditional UPDATE.
func (d *DB) AdvanceStep(ctx context.Context, userID string, step int64) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE totp SET last_step = ? WHERE user_id = ? AND last_step < ?`, step, userID, step)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 1 {
		return true, nil
	}
	if _, err := d.TOTP(ctx, userID); err != nil {
		return false, err
	}
	return false, nil
}

// Pending implements storage.Store.
func (d *DB) Pending(ctx context.Context, userID string) (storage.Pending, error) {
	var p storage.Pending
	var created, expires int64
	err := d.r.QueryRowContext(ctx, `SELECT user_id, secret, key_id, algorithm, digits, period, created_at, expires_at
		FROM totp_pending WHERE user_id = ?`, userID).
		Scan(&p.UserID, &p.Secret, &p.KeyID, &p.Algorithm, &p.Digits, &p.Period, &created, &expires)
	if err != nil {
		return storage.Pending{}, notFound(err)
	}
	p.CreatedAt, p.ExpiresAt = fromMS(created), fromMS(expires)
	return p, nil
}

// PutPending implements storage.Store.
func (d *DB) PutPending(ctx context.Context, p storage.Pending) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO totp_pending (user_id, secret, key_id, algorithm, digits, period, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id,
			algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		p.UserID, p.Secret, p.KeyID, p.Algorithm, p.Digits, p.Period, ms(p.CreatedAt), ms(p.ExpiresAt))
	return err
}

// ConfirmEnrolment implements storage.Store.
func (d *DB) ConfirmEnrolment(ctx context.Context, p storage.Pending, lastStep int64, now time.Time, set storage.RecoverySet) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM totp_pending WHERE user_id = ? AND secret = ? AND expires_at > ?`,
			p.UserID, p.Secret, ms(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return storage.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id,
				algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
				last_step = excluded.last_step, enabled_at = excluded.enabled_at`,
			p.UserID, p.Secret, p.KeyID, p.Algorithm, p.Digits, p.Period, lastStep, ms(now)); err != nil {
			return err
		}
		return replaceSet(ctx, tx, set)
	})
}

func replaceSet(ctx context.Context, tx *sql.Tx, set storage.RecoverySet) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_sets WHERE user_id = ?`, set.UserID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_sets (user_id, set_id, salt, generated_at) VALUES (?, ?, ?, ?)`,
		set.UserID, set.SetID, set.Salt, ms(set.GeneratedAt)); err != nil {
		return err
	}
	for _, c := range set.Codes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, set_id, idx, hash) VALUES (?, ?, ?, ?)`,
			set.UserID, set.SetID, c.Index, c.Hash); err != nil {
			return err
		}
	}
	return nil
}

// RecoverySet implements storage.Store.
func (d *DB) RecoverySet(ctx context.Context, userID string) (storage.RecoverySet, error) {
	var s storage.RecoverySet
	var gen int64
	err := d.r.QueryRowContext(ctx, `SELECT user_id, set_id, salt, generated_at FROM recovery_sets WHERE user_id = ?`, userID).
		Scan(&s.UserID, &s.SetID, &s.Salt, &gen)
	if err != nil {
		return storage.RecoverySet{}, notFound(err)
	}
	s.GeneratedAt = fromMS(gen)
	rows, err := d.r.QueryContext(ctx, `SELECT idx, hash, used_at FROM recovery_codes WHERE user_id = ? AND set_id = ? ORDER BY idx`, userID, s.SetID)
	if err != nil {
		return storage.RecoverySet{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var c storage.RecoveryCode
		var used sql.NullInt64
		if err := rows.Scan(&c.Index, &c.Hash, &used); err != nil {
			return storage.RecoverySet{}, err
		}
		if used.Valid {
			c.UsedAt = fromMS(used.Int64)
		}
		s.Codes = append(s.Codes, c)
	}
	return s, rows.Err()
}

// ReplaceRecoverySet implements storage.Store.
func (d *DB) ReplaceRecoverySet(ctx context.Context, set storage.RecoverySet) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM totp WHERE user_id = ?`, set.UserID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		return replaceSet(ctx, tx, set)
	})
}

// ConsumeRecoveryCode implements storage.Store with one conditional UPDATE.
func (d *DB) ConsumeRecoveryCode(ctx context.Context, userID, setID string, index int, now time.Time) (bool, error) {
	res, err := d.w.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ?
		WHERE user_id = ? AND set_id = ? AND idx = ? AND used_at IS NULL`, ms(now), userID, setID, index)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteAll implements storage.Store.
func (d *DB) DeleteAll(ctx context.Context, userID string) (bool, error) {
	var total int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM totp WHERE user_id = ?`,
			`DELETE FROM totp_pending WHERE user_id = ?`,
			`DELETE FROM recovery_codes WHERE user_id = ?`,
			`DELETE FROM recovery_sets WHERE user_id = ?`,
		} {
			res, err := tx.ExecContext(ctx, q, userID)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += n
		}
		// The user's trusted clients go too, uncounted (the trust follows 2FA).
		_, err := tx.ExecContext(ctx, `DELETE FROM trusted_clients WHERE user_id = ?`, userID)
		return err
	})
	return total > 0, err
}

// AddAudit implements storage.Store.
func (d *DB) AddAudit(ctx context.Context, ev storage.AuditEvent) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO audit (user_id, kind, detail, at) VALUES (?, ?, ?, ?)`,
		ev.UserID, ev.Kind, ev.Detail, ms(ev.At))
	return err
}

// AuditEvents implements storage.Store.
func (d *DB) AuditEvents(ctx context.Context, userID string, limit int) ([]storage.AuditEvent, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT id, user_id, kind, detail, at FROM audit WHERE user_id = ? ORDER BY id DESC LIMIT ?`, userID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.AuditEvent
	for rows.Next() {
		var ev storage.AuditEvent
		var at int64
		if err := rows.Scan(&ev.ID, &ev.UserID, &ev.Kind, &ev.Detail, &at); err != nil {
			return nil, err
		}
		ev.At = fromMS(at)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Meta implements storage.Store.
func (d *DB) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := d.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	return v, notFound(err)
}

// PutMeta implements storage.Store.
func (d *DB) PutMeta(ctx context.Context, key string, value []byte) error {
	_, err := d.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// Rewrap implements storage.Store.
func (d *DB) Rewrap(ctx context.Context, fn storage.RewrapFunc, metaKey string, metaValue []byte) (int, error) {
	count := 0
	err := d.tx(ctx, func(tx *sql.Tx) error {
		// Bot tokens are sealed for their user too (several per user: by id).
		for _, t := range []struct{ table, key string }{{"totp", "user_id"}, {"totp_pending", "user_id"}, {"bot_tokens", "id"}} {
			table := t.table
			type row struct {
				key   string
				user  string
				sec   []byte
				keyID string
			}
			rows, err := tx.QueryContext(ctx, `SELECT `+t.key+`, user_id, secret, key_id FROM `+table)
			if err != nil {
				return err
			}
			var all []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.key, &r.user, &r.sec, &r.keyID); err != nil {
					rows.Close()
					return err
				}
				all = append(all, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range all {
				sec, keyID, err := fn(r.user, r.sec, r.keyID)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET secret = ?, key_id = ? WHERE `+t.key+` = ?`, sec, keyID, r.key); err != nil {
					return err
				}
				count++
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, metaKey, metaValue)
		return err
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// KeyIDs implements storage.Store.
func (d *DB) KeyIDs(ctx context.Context) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT key_id FROM totp UNION SELECT key_id FROM totp_pending UNION SELECT key_id FROM bot_tokens ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
