package benchtool

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/held"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// benchSecret is the TOTP secret of every seeded user (their replay state is
// each their own).
var benchSecret = []byte("matrix-2fa benchmark secret!")

// seeded is what seedGateway prepared.
type seeded struct {
	// heldSessions[i] is the session of the held login of totpUsers[i].
	heldSessions []string
}

// seedGateway prepares the gateway's SQLite database before it starts:
// enabled authenticators (secret benchSecret) for every user of enrolled, in
// one transaction, and for each user of heldFor one held login (a
// password login waiting for its second factor, as the gateway holds one
// after the homeserver's 200), through held.Keeper as the gateway does.
func seedGateway(ctx context.Context, dbPath string, box *account.SecretBox, enrolled, heldFor []string, log logrus.FieldLogger) (seeded, error) {
	var out seeded
	store, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
	if err != nil {
		return out, err
	}
	defer store.Close()
	if err := account.CheckKey(ctx, store, box); err != nil {
		return out, err
	}
	raw, err := sql.Open("sqlite3", "file:"+dbPath+"?_busy_timeout=10000")
	if err != nil {
		return out, err
	}
	defer raw.Close()
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		return out, err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?)`)
	if err != nil {
		return out, err
	}
	p := account.DefaultConfig()
	for _, u := range enrolled {
		sealed, err := box.Seal(u, benchSecret)
		if err != nil {
			return out, err
		}
		if _, err := stmt.ExecContext(ctx, u, sealed, box.KeyID(), p.Algorithm, p.Digits, p.Period, time.Now().UnixMilli()); err != nil {
			return out, fmt.Errorf("seed %s: %w", u, err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		return out, err
	}

	engine := uia.New(store, 15*time.Minute)
	keeper := held.New(held.Config{LoginTTL: 30 * time.Minute, TokenTTL: 2 * time.Minute, MaxPerUser: 100}, noLogout{}, store, box, engine, log, time.Now)
	for i, u := range heldFor {
		body := fmt.Sprintf(`{"user_id":%q,"access_token":"syt_bench_%d","device_id":"BENCH%d","home_server":"localhost"}`, u, i, i)
		s, err := keeper.Hold(ctx, storage.KindHeldLogin, u, flows.After(flows.StagePassword), flows.StagePassword, []byte(body), held.Origin{Addr: "127.0.0.1"})
		if err != nil {
			return out, fmt.Errorf("hold a login of %s: %w", u, err)
		}
		out.heldSessions = append(out.heldSessions, s.ID)
	}
	return out, nil
}

// noLogout is the homeserver of the seeding keeper: it never has to log a
// login out (one held login per user).
type noLogout struct{}

func (noLogout) Logout(context.Context, string) error { return nil }

// benchCode is the code of benchSecret now.
func benchCode(now time.Time) (string, error) {
	p := account.DefaultConfig()
	return account.CodeAt(benchSecret, account.Step(now, p.Period), account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period})
}
