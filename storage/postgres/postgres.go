package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the key of the advisory lock held while migrations run
// ("m2fa-mig" in ASCII), so replicas starting at once migrate one at a time.
const migrationLock int64 = 0x6d3266612d6d6967

// DB is the PostgreSQL storage.Store.
type DB struct {
	pool *pgxpool.Pool
}

var _ storage.Store = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value DSN
// that pgx understands; pool settings such as pool_max_conns may be part of
// it), pins every connection to READ COMMITTED, and runs pending migrations
// under an advisory lock, so several replicas may open one database at once.
// It returns an error for a URL that cannot be parsed, a server that cannot be
// reached, or a failed migration; the error never contains the password.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// The conditional statements below rely on READ COMMITTED's re-check of
	// a row a concurrent transaction changed; a stricter server default would
	// turn those waits into serialization errors.
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	d := &DB{pool: pool}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

// Close closes every connection of the pool.
func (d *DB) Close() error {
	d.pool.Close()
	return nil
}

// migrate applies every embedded migration not yet recorded in
// schema_migrations, each in its own transaction together with its record,
// all under a session advisory lock held on one connection.
func (d *DB) migrate(ctx context.Context) (err error) {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		conn.Release()
		return fmt.Errorf("postgres: migrations lock: %w", err)
	}
	defer func() {
		// A fresh context: ctx may be what ended the run.
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLock); uerr != nil {
			// Closing the session releases the lock too; never hand a
			// connection that may still hold it back to the pool.
			conn.Hijack().Close(uctx)
			return
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
		return fmt.Errorf("postgres: migrations table: %w", err)
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
			return fmt.Errorf("postgres: migration %s has no numeric prefix", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil { // no arguments: simple protocol, several statements
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				version, base, ts(time.Now()))
			return err
		}); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", base, err)
		}
	}
	return nil
}

// tx runs fn in a READ COMMITTED transaction, committing on nil.
func (d *DB) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

// ts is a time as the engine stores it: UTC, at millisecond precision like
// the SQLite engine, so both round-trip a time alike.
func ts(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

// tsOrNull is ts, with the zero time stored as NULL.
func tsOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	v := ts(t)
	return &v
}

// fromNull is the time read from a nullable column; NULL is the zero time.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// limitOrAll is a LIMIT argument: a negative limit, as in SQLite, means none.
func limitOrAll(limit int) *int {
	if limit < 0 {
		return nil
	}
	return &limit
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	return err
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// TOTP implements storage.Store.
func (d *DB) TOTP(ctx context.Context, userID string) (_ storage.TOTP, err error) {
	defer classify(&err)
	var t storage.TOTP
	err = d.pool.QueryRow(ctx, `SELECT user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at
		FROM totp WHERE user_id = $1`, userID).
		Scan(&t.UserID, &t.Secret, &t.KeyID, &t.Algorithm, &t.Digits, &t.Period, &t.LastStep, &t.EnabledAt)
	if err != nil {
		return storage.TOTP{}, notFound(err)
	}
	t.EnabledAt = t.EnabledAt.UTC()
	return t, nil
}

// HasTOTPFold implements storage.Store (lower() folds at least ASCII letters).
func (d *DB) HasTOTPFold(ctx context.Context, userID string) (_ bool, err error) {
	defer classify(&err)
	var one int
	err = d.pool.QueryRow(ctx, `SELECT 1 FROM totp WHERE lower(user_id) = lower($1) LIMIT 1`, userID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// AdvanceStep implements storage.Store with one conditional UPDATE: a
// concurrent caller waits for the row and re-checks last_step on the version
// the winner committed.
func (d *DB) AdvanceStep(ctx context.Context, userID string, step int64) (_ bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `UPDATE totp SET last_step = $1 WHERE user_id = $2 AND last_step < $1`, step, userID)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if _, err := d.TOTP(ctx, userID); err != nil {
		return false, err
	}
	return false, nil
}

// Pending implements storage.Store.
func (d *DB) Pending(ctx context.Context, userID string) (_ storage.Pending, err error) {
	defer classify(&err)
	var p storage.Pending
	err = d.pool.QueryRow(ctx, `SELECT user_id, secret, key_id, algorithm, digits, period, created_at, expires_at
		FROM totp_pending WHERE user_id = $1`, userID).
		Scan(&p.UserID, &p.Secret, &p.KeyID, &p.Algorithm, &p.Digits, &p.Period, &p.CreatedAt, &p.ExpiresAt)
	if err != nil {
		return storage.Pending{}, notFound(err)
	}
	p.CreatedAt, p.ExpiresAt = p.CreatedAt.UTC(), p.ExpiresAt.UTC()
	return p, nil
}

// PutPending implements storage.Store.
func (d *DB) PutPending(ctx context.Context, p storage.Pending) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, `INSERT INTO totp_pending (user_id, secret, key_id, algorithm, digits, period, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id,
			algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		p.UserID, p.Secret, p.KeyID, p.Algorithm, p.Digits, p.Period, ts(p.CreatedAt), ts(p.ExpiresAt))
	return err
}

// ConfirmEnrolment implements storage.Store. Deleting the pending row is the
// conditional step: of concurrent confirmations only one deletes it.
func (d *DB) ConfirmEnrolment(ctx context.Context, p storage.Pending, lastStep int64, now time.Time, set storage.RecoverySet) (err error) {
	defer classify(&err)
	return d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM totp_pending WHERE user_id = $1 AND secret = $2 AND expires_at > $3`,
			p.UserID, p.Secret, ts(now))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return storage.ErrNotFound
		}
		// The upsert locks the user's totp row before the recovery set is
		// touched, as ReplaceRecoverySet does: one user's set changes in turn.
		if _, err := tx.Exec(ctx, `INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, key_id = excluded.key_id,
				algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
				last_step = excluded.last_step, enabled_at = excluded.enabled_at`,
			p.UserID, p.Secret, p.KeyID, p.Algorithm, p.Digits, p.Period, lastStep, ts(now)); err != nil {
			return err
		}
		return replaceSet(ctx, tx, set)
	})
}

// replaceSet replaces the user's recovery set; the caller holds the lock on
// the user's totp row.
func replaceSet(ctx context.Context, tx pgx.Tx, set storage.RecoverySet) error {
	if _, err := tx.Exec(ctx, `DELETE FROM recovery_sets WHERE user_id = $1`, set.UserID); err != nil {
		return err // its codes go with it (ON DELETE CASCADE)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO recovery_sets (user_id, set_id, salt, generated_at) VALUES ($1, $2, $3, $4)`,
		set.UserID, set.SetID, set.Salt, ts(set.GeneratedAt)); err != nil {
		return err
	}
	if len(set.Codes) == 0 {
		return nil
	}
	idx := make([]int32, len(set.Codes))
	hashes := make([][]byte, len(set.Codes))
	for i, c := range set.Codes {
		idx[i], hashes[i] = int32(c.Index), c.Hash
	}
	_, err := tx.Exec(ctx, `INSERT INTO recovery_codes (user_id, set_id, idx, hash)
		SELECT $1, $2, c.idx, c.hash FROM unnest($3::integer[], $4::bytea[]) AS c(idx, hash)`,
		set.UserID, set.SetID, idx, hashes)
	return err
}

// RecoverySet implements storage.Store with one statement, so the set and
// its codes come from one snapshot.
func (d *DB) RecoverySet(ctx context.Context, userID string) (_ storage.RecoverySet, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT s.user_id, s.set_id, s.salt, s.generated_at, c.idx, c.hash, c.used_at
		FROM recovery_sets s LEFT JOIN recovery_codes c ON c.user_id = s.user_id AND c.set_id = s.set_id
		WHERE s.user_id = $1 ORDER BY c.idx`, userID)
	if err != nil {
		return storage.RecoverySet{}, err
	}
	defer rows.Close()
	var s storage.RecoverySet
	found := false
	for rows.Next() {
		var idx *int
		var hash []byte
		var used *time.Time
		if err := rows.Scan(&s.UserID, &s.SetID, &s.Salt, &s.GeneratedAt, &idx, &hash, &used); err != nil {
			return storage.RecoverySet{}, err
		}
		found = true
		if idx != nil {
			s.Codes = append(s.Codes, storage.RecoveryCode{Index: *idx, Hash: hash, UsedAt: fromNull(used)})
		}
	}
	if err := rows.Err(); err != nil {
		return storage.RecoverySet{}, err
	}
	if !found {
		return storage.RecoverySet{}, storage.ErrNotFound
	}
	s.GeneratedAt = s.GeneratedAt.UTC()
	return s, nil
}

// ReplaceRecoverySet implements storage.Store. It locks the user's totp row
// first, so it runs in turn with ConfirmEnrolment and DeleteAll for that user.
func (d *DB) ReplaceRecoverySet(ctx context.Context, set storage.RecoverySet) (err error) {
	defer classify(&err)
	return d.tx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM totp WHERE user_id = $1 FOR UPDATE`, set.UserID).Scan(&one); err != nil {
			return notFound(err)
		}
		return replaceSet(ctx, tx, set)
	})
}

// ConsumeRecoveryCode implements storage.Store with one conditional UPDATE.
func (d *DB) ConsumeRecoveryCode(ctx context.Context, userID, setID string, index int, now time.Time) (_ bool, err error) {
	defer classify(&err)
	tag, err := d.pool.Exec(ctx, `UPDATE recovery_codes SET used_at = $1
		WHERE user_id = $2 AND set_id = $3 AND idx = $4 AND used_at IS NULL`, ts(now), userID, setID, index)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteAll implements storage.Store. It takes the user's rows in the order
// every method does (pending, totp, recovery set), so it cannot deadlock with
// them, and a concurrent ReplaceRecoverySet either finishes before it or
// finds no authenticator.
func (d *DB) DeleteAll(ctx context.Context, userID string) (_ bool, err error) {
	defer classify(&err)
	var total int64
	err = d.tx(ctx, func(tx pgx.Tx) error {
		total = 0
		for _, q := range []string{
			`DELETE FROM totp_pending WHERE user_id = $1`,
			`DELETE FROM totp WHERE user_id = $1`,
			`DELETE FROM recovery_codes WHERE user_id = $1`,
			`DELETE FROM recovery_sets WHERE user_id = $1`,
		} {
			tag, err := tx.Exec(ctx, q, userID)
			if err != nil {
				return err
			}
			total += tag.RowsAffected()
		}
		// The user's trusted clients go too, uncounted (the trust follows 2FA).
		_, err := tx.Exec(ctx, `DELETE FROM trusted_clients WHERE user_id = $1`, userID)
		return err
	})
	return total > 0, err
}

// AddAudit implements storage.Store.
func (d *DB) AddAudit(ctx context.Context, ev storage.AuditEvent) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, `INSERT INTO audit (user_id, kind, detail, at) VALUES ($1, $2, $3, $4)`,
		ev.UserID, ev.Kind, ev.Detail, ts(ev.At))
	return err
}

// AuditEvents implements storage.Store.
func (d *DB) AuditEvents(ctx context.Context, userID string, limit int) (_ []storage.AuditEvent, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT id, user_id, kind, detail, at FROM audit WHERE user_id = $1 ORDER BY id DESC LIMIT $2`,
		userID, limitOrAll(limit))
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.AuditEvent, error) {
		var ev storage.AuditEvent
		err := r.Scan(&ev.ID, &ev.UserID, &ev.Kind, &ev.Detail, &ev.At)
		ev.At = ev.At.UTC()
		return ev, err
	})
	if len(out) == 0 {
		out = nil // as the SQLite engine: no events is a nil slice
	}
	return out, err
}

// Meta implements storage.Store.
func (d *DB) Meta(ctx context.Context, key string) (_ []byte, err error) {
	defer classify(&err)
	var v []byte
	err = d.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if err != nil {
		return nil, notFound(err)
	}
	return v, nil
}

const putMeta = `INSERT INTO meta (key, value) VALUES ($1, $2)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value`

// PutMeta implements storage.Store.
func (d *DB) PutMeta(ctx context.Context, key string, value []byte) (err error) {
	defer classify(&err)
	_, err = d.pool.Exec(ctx, putMeta, key, value)
	return err
}

// Rewrap implements storage.Store. It locks both secret tables against
// writers (readers go on) for its transaction, so no secret is written under
// the old key while it runs; totp_pending first, in the order in which
// ConfirmEnrolment and DeleteAll take them.
func (d *DB) Rewrap(ctx context.Context, fn storage.RewrapFunc, metaKey string, metaValue []byte) (_ int, err error) {
	defer classify(&err)
	count := 0
	err = d.tx(ctx, func(tx pgx.Tx) error {
		count = 0
		if _, err := tx.Exec(ctx, `LOCK TABLE totp_pending, totp, bot_tokens IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		// Bot tokens are sealed for their user too (several per user: by id).
		for _, t := range []struct{ table, key string }{{"totp", "user_id"}, {"totp_pending", "user_id"}, {"bot_tokens", "id"}} {
			table := t.table
			type row struct {
				key   string
				user  string
				sec   []byte
				keyID string
			}
			rows, err := tx.Query(ctx, `SELECT `+t.key+`, user_id, secret, key_id FROM `+table)
			if err != nil {
				return err
			}
			all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var v row
				err := r.Scan(&v.key, &v.user, &v.sec, &v.keyID)
				return v, err
			})
			if err != nil {
				return err
			}
			for _, r := range all {
				sec, keyID, err := fn(r.user, r.sec, r.keyID)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE `+table+` SET secret = $1, key_id = $2 WHERE `+t.key+` = $3`, sec, keyID, r.key); err != nil {
					return err
				}
				count++
			}
		}
		_, err := tx.Exec(ctx, putMeta, metaKey, metaValue)
		return err
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// KeyIDs implements storage.Store; they come sorted bytewise, as in SQLite,
// whatever the database's collation.
func (d *DB) KeyIDs(ctx context.Context) (_ []string, err error) {
	defer classify(&err)
	rows, err := d.pool.Query(ctx, `SELECT key_id FROM (SELECT key_id FROM totp UNION SELECT key_id FROM totp_pending UNION SELECT key_id FROM bot_tokens) k
		ORDER BY key_id COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
