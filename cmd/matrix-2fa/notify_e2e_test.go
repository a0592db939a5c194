package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
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
	adminToken := "static-admin-token-for-the-test"
	sum := sha256.Sum256([]byte(adminToken))
	cfg := "smtp:\n  host: " + smtp.Host() + "\n  port: " + strconv.Itoa(smtp.Port()) + "\n  tls: none\n  from: 2fa@localhost\nnotify: true\nemail_codes: true\n" +
		"admin:\n  enabled: true\n  token_sha256: " + hex.EncodeToString(sum[:]) + "\n"
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
	// A recovery code used at login, a lockout, 2FA disabled, and (after
	// enrolling again) an admin reset: one mail each.
	recovery := regenerateCodes(t, post, code)
	wantMail(t, smtp, "new recovery codes")
	login := postAnon(t, gw+"/login", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	if done := postAnon(t, gw+"/login", map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "session": login["session"], "code": recovery[0]}}); done["access_token"] == nil {
		t.Fatalf("login with a recovery code: %v", done)
	}
	wantMail(t, smtp, "recovery code")
	login = postAnon(t, gw+"/login", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password})
	for range 5 {
		postAnon(t, gw+"/login", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": login["session"], "code": "000000"}})
	}
	wantMail(t, smtp, "locked")
	adminPost(t, "http://"+addr+"/_matrix2fa/admin/v1/users/"+u.UserID+"/unlock", adminToken)
	del := func(body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("DELETE", gw+"/account/two-factor/totp", bytes.NewReader(b))
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
	_, dch := del(map[string]any{})
	pw := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password, "session": dch["session"]}
	del(map[string]any{"auth": pw})
	if st, out := del(map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "session": dch["session"], "code": recovery[1]}}); st != 200 {
		t.Fatalf("disable: %d %v", st, out)
	}
	wantMail(t, smtp, "recovery code") // disabling took one
	wantMail(t, smtp, "turned off")
	enrolThrough(t, gw, u)
	wantMail(t, smtp, "turned on")
	adminPost(t, "http://"+addr+"/_matrix2fa/admin/v1/users/"+u.UserID+"/reset", adminToken)
	wantMail(t, smtp, "reset")
	if n := len(smtp.Received("notified@example.org")); n != 9 {
		t.Fatalf("%d mails; want one per event (9)", n)
	}

	// SMTP down: enrolling again still succeeds, at once (its notice is
	// dropped and counted).
	smtp.Stop()
	start := time.Now()
	enrolThrough(t, gw, u)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the request waited %s for the mail", took)
	}
}

// wantMail waits for the next mail to the test user and checks its subject.
func wantMail(t *testing.T, smtp *smtptest.Server, subject string) {
	t.Helper()
	m := smtp.WaitFor(t, "notified@example.org", 10*time.Second)
	if !strings.Contains(strings.ToLower(m.Subject), subject) {
		t.Fatalf("mail %q; want one about %q", m.Subject, subject)
	}
}

// regenerateCodes regenerates the recovery codes through the API (a TOTP
// stage one step ahead) and returns them.
func regenerateCodes(t *testing.T, post func(string, any) (int, map[string]any), code func(int64) string) []string {
	t.Helper()
	_, ch := post("/account/two-factor/recovery", map[string]any{})
	_, out := post("/account/two-factor/recovery", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch["session"], "code": code(1)}})
	list, _ := out["recovery_codes"].([]any)
	var codes []string
	for _, c := range list {
		codes = append(codes, c.(string))
	}
	if len(codes) == 0 {
		t.Fatalf("regenerate: %v", out)
	}
	return codes
}

func postAnon(t *testing.T, url string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func adminPost(t *testing.T, url, token string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d", url, resp.StatusCode)
	}
}
