package oauth

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// Red team of the homeserver's own refresh tokens (hsrefresh.go) and the
// refresh grant, against the fake homeserver of hsrefresh_test.go. Each
// test fails when its attack succeeds. Failing at the time of writing:
// TestRTRefreshRefusedLogsOut (a refused homeserver refresh ends the grant
// without logging its homeserver login out).

// rtEnv is a refreshEnv whose server logs at debug level into log, whose
// database lives in dir, and whose fake homeserver runs hook before
// answering each request (nil: none).
type rtEnv struct {
	*refreshEnv
	log   *bytes.Buffer
	dir   string
	hook  func(r *http.Request)
	after func(r *http.Request)
}

func newRTEnv(t *testing.T, hasRefresh bool) *rtEnv {
	e := &rtEnv{refreshEnv: &refreshEnv{t: t, hs: &fakeHS{refresh: hasRefresh, valid: map[string]bool{}, refreshes: map[string]bool{}},
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, log: &bytes.Buffer{}, dir: t.TempDir()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.hook != nil {
			e.hook(r)
		}
		e.hs.ServeHTTP(w, r)
		if e.after != nil {
			e.after(r)
		}
	}))
	t.Cleanup(srv.Close)
	log := logrus.New()
	log.SetOutput(&lockedWriter{w: e.log})
	log.SetLevel(logrus.TraceLevel)
	hc, err := homeserver.New(srv.URL, homeserver.Options{WhoAmITTL: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.db, err = sqlite.Open(context.Background(), filepath.Join(e.dir, "db.sqlite"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	box, err := account.NewSecretBox(account.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	e.s = New(Config{Enabled: true, HomeserverRefreshTokens: true, Issuer: "https://gw.test"}, e.db, hc, box, log,
		func() time.Time { return e.now })
	return e
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRTRefreshConcurrentWithoutHomeserverTokens: with a homeserver that
// has no refresh tokens (Dendrite), of concurrent uses of one refresh token
// exactly one wins.
func TestRTRefreshConcurrentWithoutHomeserverTokens(t *testing.T) {
	e := newRTEnv(t, false)
	rt := e.grant()["refresh_token"].(string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _ := e.refresh(rt); status == 200 {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent refreshes of one token won", wins)
	}
}

var reHomeToken = regexp.MustCompile(`\b(rt|at)-[0-9]+\b`)

// TestRTRefreshSecretsAtRest: no homeserver token nor gateway refresh token
// in a log line (debug level) or in the database files, after a grant,
// two renewals, a refused renewal and a revocation.
func TestRTRefreshSecretsAtRest(t *testing.T) {
	e := newRTEnv(t, true)
	tok := e.grant()
	secrets := []string{tok["refresh_token"].(string)}
	rt := tok["refresh_token"].(string)
	var at string
	for range 2 {
		e.now = e.now.Add(time.Minute)
		status, next := e.refresh(rt)
		if status != 200 {
			t.Fatalf("refresh: %d %v", status, next)
		}
		rt, at = next["refresh_token"].(string), next["access_token"].(string)
		secrets = append(secrets, rt)
	}
	e.refresh("not-a-token")
	e.post(e.s.Revoke, url.Values{"token": {at}, "client_id": {"client"}})
	second := e.grant()
	e.hs.refreshes = map[string]bool{}
	e.refresh(second["refresh_token"].(string))

	logs := e.log.String()
	if m := reHomeToken.FindString(logs); m != "" {
		t.Errorf("a homeserver token (%s) in the log:\n%s", m, logs)
	}
	for _, s := range secrets {
		if bytes.Contains([]byte(logs), []byte(s)) {
			t.Errorf("a gateway refresh token in the log")
		}
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "db.sqlite*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := reHomeToken.Find(raw); m != nil {
			t.Errorf("%s holds the homeserver token %s in the clear", filepath.Base(f), m)
		}
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("%s holds a gateway refresh token in the clear", filepath.Base(f))
			}
		}
	}
}

// TestRTRefreshRefusedLogsOut: when the homeserver refuses its refresh
// token the grant ends; its homeserver access token must not outlive it
// (the client can no longer revoke it: the grant is gone).
func TestRTRefreshRefusedLogsOut(t *testing.T) {
	e := newRTEnv(t, true)
	tok := e.grant()
	at := tok["access_token"].(string)
	e.hs.refreshes = map[string]bool{}
	if status, body := e.refresh(tok["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refused homeserver refresh: %d %v", status, body)
	}
	// The client now revokes what it holds: nothing is found.
	e.post(e.s.Revoke, url.Values{"token": {at}, "client_id": {"client"}})
	e.hs.mu.Lock()
	live := e.hs.valid[at]
	e.hs.mu.Unlock()
	if live {
		t.Errorf("the grant ended on a refused homeserver refresh, but its homeserver access token %s is still live "+
			"and no one can revoke it (logged out: %v)", at, e.hs.loggedOut)
	}
}

// TestRTRefreshRevokeRace: a revocation that lands while the gateway is
// renewing at the homeserver (before the homeserver's answer, or between it
// and keeping the new login) must not leave a homeserver access token live
// that no grant holds. The fake's logout here is Synapse's: it deletes the
// device, with every access and refresh token of it.
func TestRTRefreshRevokeRace(t *testing.T) {
	for _, after := range []bool{false, true} {
		name := "revoked before the homeserver answers"
		if after {
			name = "revoked after the homeserver answered"
		}
		t.Run(name, func(t *testing.T) {
			e := newRTEnv(t, true)
			tok := e.grant()
			at := tok["access_token"].(string)
			var once sync.Once
			revoke := func() { e.post(e.s.Revoke, url.Values{"token": {at}, "client_id": {"client"}}) }
			e.hook = func(r *http.Request) {
				if r.URL.Path == "/_matrix/client/v3/logout" {
					e.hs.mu.Lock()
					e.hs.valid, e.hs.refreshes = map[string]bool{}, map[string]bool{} // the device is deleted
					e.hs.mu.Unlock()
				}
				if r.URL.Path == "/_matrix/client/v3/refresh" && !after {
					once.Do(revoke)
				}
			}
			e.after = func(r *http.Request) {
				if r.URL.Path == "/_matrix/client/v3/refresh" && after {
					once.Do(revoke)
				}
			}
			status, body := e.refresh(tok["refresh_token"].(string))
			t.Logf("refresh during revocation: %d %v", status, body)
			e.hs.mu.Lock()
			var live []string
			for token, ok := range e.hs.valid {
				if ok {
					live = append(live, token)
				}
			}
			e.hs.mu.Unlock()
			if status == 200 && !e.isGrant(body["access_token"].(string)) {
				t.Errorf("the client holds %v, which no grant knows (it cannot be revoked)", body["access_token"])
			}
			if status != 200 && len(live) != 0 {
				t.Errorf("homeserver tokens %v still live, held by no grant (logged out %v)", live, e.hs.loggedOut)
			}
		})
	}
}

// TestRTRefreshOtherClient: another client's client_id cannot refresh or
// revoke a grant, and its attempt does not burn the refresh token.
func TestRTRefreshOtherClient(t *testing.T) {
	e := newRTEnv(t, true)
	tok := e.grant()
	rt, at := tok["refresh_token"].(string), tok["access_token"].(string)
	if status, _ := e.post(e.s.Token, url.Values{"grant_type": {grantRefresh}, "refresh_token": {rt}, "client_id": {"other"}}); status == 200 {
		t.Fatal("another client refreshed the grant")
	}
	e.post(e.s.Revoke, url.Values{"token": {rt}, "client_id": {"other"}})
	e.post(e.s.Revoke, url.Values{"token": {at}, "client_id": {"other"}})
	if !e.isGrant(at) {
		t.Fatal("another client revoked the grant")
	}
	if status, body := e.refresh(rt); status != 200 {
		t.Fatalf("the owner's refresh after another client's attempts: %d %v", status, body)
	}
}

// TestRTRefreshOutageThenConcurrent: after the homeserver was out of reach
// (the refresh token given back), two concurrent retries still renew once.
func TestRTRefreshOutageThenConcurrent(t *testing.T) {
	e := newRTEnv(t, true)
	rt := e.grant()["refresh_token"].(string)
	e.hs.down = true
	e.refresh(rt)
	e.hs.down = false
	before := e.hs.n
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _ := e.refresh(rt); status == 200 {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 || e.hs.n != before+1 {
		t.Fatalf("%d refreshes won, %d homeserver renewals", wins, e.hs.n-before)
	}
}
