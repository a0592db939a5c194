package account_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// BenchmarkVerifyTOTPUsers measures VerifyTOTP (lockout reservation, the
// secret's lookup and decryption, the code check, the durable advance of the
// last accepted step, the failures cleared) on a real SQLite file holding
// 1,000 and 1,000,000 enrolled users. Every iteration checks a correct code of
// a user picked in random order, each code used once: when every user has
// been seen, the clock moves on one period. scripts/bench.sh divides the two
// ns/op (goal: 1M ÷ 1k ≤ 1.2).
func BenchmarkVerifyTOTPUsers(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) { benchVerifyTOTP(b, n) })
	}
}

func benchVerifyTOTP(b *testing.B, users int) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "2fa.db")
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	box, err := account.NewSecretBox(account.NewKey())
	if err != nil {
		b.Fatal(err)
	}
	if err := account.CheckKey(ctx, db, box); err != nil {
		b.Fatal(err)
	}
	secret := []byte("12345678901234567890") // one secret, sealed for each user
	quietLog := logrus.New()
	quietLog.SetOutput(io.Discard)
	p := account.DefaultConfig().WithDefaults()
	params := account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period}
	seedTOTPUsers(b, path, box, secret, params, users)

	start := time.Date(2031, 3, 14, 15, 9, 0, 0, time.UTC)
	now := start
	svc, err := account.NewService(db, box, account.DefaultConfig(), account.WithClock(func() time.Time { return now }),
		account.WithLogger(quietLog))
	if err != nil {
		b.Fatal(err)
	}
	order := rand.Perm(users)
	codeStep, code := int64(-1), ""
	i := 0
	for b.Loop() {
		now = start.Add(time.Duration(i/users) * time.Duration(params.Period) * time.Second)
		if step := account.Step(now, params.Period); step != codeStep {
			if code, err = account.CodeAt(secret, step, params); err != nil {
				b.Fatal(err)
			}
			codeStep = step
		}
		user := fmt.Sprintf("@u%07d:bench.example", order[i%users])
		if err := svc.VerifyTOTP(ctx, user, code); err != nil {
			b.Fatalf("VerifyTOTP %s (iteration %d): %v", user, i, err)
		}
		i++
	}
}

// seedTOTPUsers inserts users enabled authenticators straight into the totp
// table, in one transaction (a million rows in seconds; the service would
// take one confirmation each).
func seedTOTPUsers(b *testing.B, path string, box *account.SecretBox, secret []byte, p account.Params, users int) {
	b.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	enabled := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range users {
		user := fmt.Sprintf("@u%07d:bench.example", i)
		sealed, err := box.Seal(user, secret)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stmt.Exec(user, sealed, box.KeyID(), p.Algorithm, p.Digits, p.Period, enabled); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
