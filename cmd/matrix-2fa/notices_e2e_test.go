package main

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// TestServerNotices: with a homeserver admin's token configured, enabling
// 2FA puts a server notice in front of the user at Dendrite (an invitation
// to the server notices room, whose message says 2FA was turned on).
func TestServerNotices(t *testing.T) {
	hs := tesths.Dendrite(t)
	adminUser, err := hs.RegisterAdmin(context.Background(), "notices_admin", "admin-password-123")
	if err != nil {
		t.Fatal(err)
	}
	admin := adminUser.AccessToken
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte("server_notices_token: "+admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, stop := startServe(t, "--config", cfgPath, "--homeserver", hs.URL, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	defer stop()
	u := tesths.RegisterUser(t, hs, "noticed")
	enrolThrough(t, "http://"+addr+"/_matrix/client/v3", u)

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st, body, err := hs.Do(context.Background(), "GET", "/_matrix/client/v3/sync?timeout=0", u.AccessToken, nil)
		if err != nil || st != 200 {
			t.Fatalf("sync: %d %v", st, err)
		}
		var sync struct {
			Rooms struct {
				Invite map[string]json.RawMessage `json:"invite"`
			} `json:"rooms"`
		}
		json.Unmarshal(body, &sync)
		for roomID := range sync.Rooms.Invite {
			if st, _, _ := hs.Do(context.Background(), "POST", "/_matrix/client/v3/join/"+roomID, u.AccessToken, map[string]any{}); st != 200 {
				t.Fatalf("joining the notice room: %d", st)
			}
			var msgs []byte
			for time.Now().Before(deadline) { // the notice may land just after the invitation
				_, msgs, _ = hs.Do(context.Background(), "GET", "/_matrix/client/v3/rooms/"+roomID+"/messages?dir=b&limit=20", u.AccessToken, nil)
				if bytes.Contains(msgs, []byte("turned on")) {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Fatalf("the notice room has no message about 2FA: %s", msgs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no server notice reached the user")
}

// enrolThrough turns 2FA on for u through the gateway at gw (its API).
func enrolThrough(t *testing.T, gw string, u *dendrite.User) {
	t.Helper()
	post := func(path string, body any) map[string]any {
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
		return out
	}
	password := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}
	password["session"] = post("/account/two-factor/totp", map[string]any{})["session"]
	en := post("/account/two-factor/totp", map[string]any{"auth": password})
	secret, _ := en["secret"].(string)
	code := totpNow(t, secret, -1)
	if out := post("/account/two-factor/totp/confirm", map[string]any{"code": code}); out["recovery_codes"] == nil {
		t.Fatalf("confirm: %v", out)
	}
}

// totpNow is the TOTP code of base32 secret at the current step plus offset,
// with the default parameters.
func totpNow(t *testing.T, secret string, offset int64) string {
	t.Helper()
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	p := account.DefaultConfig()
	c, err := account.CodeAt(raw, account.Step(time.Now(), p.Period)+offset, account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
