package main

import (
	"bytes"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// TestNotifications runs serve with SMTP and notices on, in front of
// Dendrite: enrolling and regenerating recovery codes each produce one mail
// to the user's verified address; with the SMTP server down the request
// still succeeds (the notice is dropped and counted, never blocking).
func TestNotifications(t *testing.T) {
	hs := tesths.Dendrite(t)
	smtp := smtptest.Start(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	cfg := "smtp:\n  host: " + smtp.Host() + "\n  port: " + strconv.Itoa(smtp.Port()) + "\n  tls: none\n  from: 2fa@localhost\nnotify: true\nemail_codes: true\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, stop := startServe(t, "--config", cfgPath, "--homeserver", hs.URL, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	defer stop()
	gw := "http://" + addr + "/_matrix/client/v3"
	u := tesths.RegisterUser(t, hs, "notified")
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(hs.Dir, "dendrite_userapi.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO userapi_threepids (threepid, medium, localpart, server_name) VALUES ('notified@example.org', 'email', ?, ?)`,
		u.Localpart, hs.ServerName); err != nil {
		t.Fatal(err)
	}
	db.Close()

	post := func(path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", gw+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+u.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	password := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}
	_, ch := post("/account/two-factor/totp", map[string]any{})
	password["session"] = ch["session"]
	_, en := post("/account/two-factor/totp", map[string]any{"auth": password})
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en["secret"].(string))
	if err != nil {
		t.Fatalf("enrolment: %v", en)
	}
	p := account.DefaultConfig()
	code := func(offset int64) string {
		c, _ := account.CodeAt(secret, account.Step(time.Now(), p.Period)+offset, account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period})
		return c
	}
	if st, _ := post("/account/two-factor/totp/confirm", map[string]any{"code": code(-1)}); st != 200 {
		t.Fatalf("confirm: %d", st)
	}
	if m := smtp.WaitFor(t, "notified@example.org", 10*time.Second); !strings.Contains(m.Subject, "turned on") || !strings.Contains(m.Text, "administrator of "+hs.ServerName) {
		t.Fatalf("the enabling notice: %q %q", m.Subject, m.Text)
	}

	regenerate := func(offset int64) int {
		t.Helper()
		_, ch := post("/account/two-factor/recovery", map[string]any{})
		st, _ := post("/account/two-factor/recovery", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch["session"], "code": code(offset)}})
		return st
	}
	if st := regenerate(0); st != 200 {
		t.Fatalf("regenerate: %d", st)
	}
	m := smtp.WaitFor(t, "notified@example.org", 10*time.Second)
	if !strings.Contains(strings.ToLower(m.Subject+m.Text), "recovery") {
		t.Fatalf("the regeneration notice: %q %q", m.Subject, m.Text)
	}
	if n := len(smtp.Received("notified@example.org")); n != 2 {
		t.Fatalf("%d mails; want one per event (2)", n)
	}

	// SMTP down: the request still succeeds, at once.
	smtp.Stop()
	start := time.Now()
	if st := regenerate(1); st != 200 {
		t.Fatalf("regenerate with the SMTP server down: %d", st)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the request waited %s for the mail", took)
	}
}
