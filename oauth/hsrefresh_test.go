package oauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// The homeserver's own refresh tokens, against a fake homeserver (no
// Synapse runs in these tests): it hands out refresh tokens only when asked
// and when it "has" them (Synapse with refreshable_access_token_lifetime),
// and serves /refresh like Synapse: a new pair, the old refresh token used up.

const hsUser = "@alice:hs.test"

// fakeHS is the homeserver's login, refresh, whoami and logout.
type fakeHS struct {
	mu        sync.Mutex
	refresh   bool // it has refresh tokens
	down      bool // /refresh answers 502
	asked     bool // the last login asked for a refresh token
	n         int
	valid     map[string]bool // live access tokens
	refreshes map[string]bool // live refresh tokens
	loggedOut []string
}

func (f *fakeHS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch r.URL.Path {
	case "/_matrix/client/v3/login":
		f.asked = body["refresh_token"] == true
		f.n++
		at := fmt.Sprintf("at-%d", f.n)
		f.valid[at] = true
		resp := map[string]any{"user_id": hsUser, "device_id": "DEV", "access_token": at}
		if f.asked && f.refresh {
			rt := fmt.Sprintf("rt-%d", f.n)
			f.refreshes[rt] = true
			resp["refresh_token"], resp["expires_in_ms"] = rt, 300000
		}
		answer(200, resp)
	case "/_matrix/client/v3/refresh":
		rt, _ := body["refresh_token"].(string)
		switch {
		case !f.refresh:
			answer(404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "no"})
		case f.down:
			answer(502, map[string]string{})
		case !f.refreshes[rt]:
			answer(401, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "used", "soft_logout": false})
		default:
			delete(f.refreshes, rt)
			f.n++
			at, next := fmt.Sprintf("at-%d", f.n), fmt.Sprintf("rt-%d", f.n)
			f.valid[at], f.refreshes[next] = true, true
			answer(200, map[string]any{"access_token": at, "refresh_token": next, "expires_in_ms": 300000})
		}
	case "/_matrix/client/v3/account/whoami":
		if !f.valid[token] {
			answer(401, map[string]string{"errcode": "M_UNKNOWN_TOKEN", "error": "unknown"})
			return
		}
		answer(200, map[string]string{"user_id": hsUser, "device_id": "DEV"})
	case "/_matrix/client/v3/logout":
		delete(f.valid, token)
		f.loggedOut = append(f.loggedOut, token)
		answer(200, map[string]string{})
	default:
		answer(404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "no"})
	}
}

type refreshEnv struct {
	t   *testing.T
	s   *Server
	hs  *fakeHS
	db  *sqlite.DB
	now time.Time
}

func newRefreshEnv(t *testing.T, hasRefresh, configured bool) *refreshEnv {
	e := &refreshEnv{t: t, hs: &fakeHS{refresh: hasRefresh, valid: map[string]bool{}, refreshes: map[string]bool{}},
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	srv := httptest.NewServer(e.hs)
	t.Cleanup(srv.Close)
	log := logrus.New()
	log.SetOutput(io.Discard)
	hc, err := homeserver.New(srv.URL, homeserver.Options{WhoAmITTL: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.db, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	box, err := account.NewSecretBox(account.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	e.s = New(Config{Enabled: true, HomeserverRefreshTokens: configured, Issuer: "https://gw.test"}, e.db, hc, box, log,
		func() time.Time { return e.now })
	return e
}

// post posts form to handler h and decodes the JSON answer.
func (e *refreshEnv) post(h http.HandlerFunc, form url.Values) (int, map[string]any) {
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest("POST", TokenPath, strings.NewReader(form.Encode())))
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// grant signs in (GrantLogin), issues a code and redeems it.
func (e *refreshEnv) grant() map[string]any {
	e.t.Helper()
	ctx := context.Background()
	login, err := e.s.GrantLogin(ctx, hsUser, "pw", "DEV", "test client")
	if err != nil {
		e.t.Fatal(err)
	}
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	req := &Request{Client: &Client{ID: "client"}, RedirectURI: "https://app.test/cb", Mode: "query",
		Challenge: base64.RawURLEncoding.EncodeToString(sum[:]), Scope: "urn:matrix:client:api:*"}
	loc, err := e.s.IssueCode(ctx, req, login)
	if err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	status, tok := e.post(e.s.Token, url.Values{"grant_type": {grantCode}, "code": {u.Query().Get("code")}, "client_id": {"client"},
		"redirect_uri": {req.RedirectURI}, "code_verifier": {verifier}})
	if status != 200 {
		e.t.Fatalf("redeem: %d %v", status, tok)
	}
	return tok
}

func (e *refreshEnv) refresh(rt string) (int, map[string]any) {
	return e.post(e.s.Token, url.Values{"grant_type": {grantRefresh}, "refresh_token": {rt}, "client_id": {"client"}})
}

func (e *refreshEnv) isGrant(at string) bool {
	ok, err := e.s.IsGrantToken(context.Background(), at)
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// TestHomeserverRefreshTokens: a refresh token is asked for only when
// configured; a homeserver without them keeps today's behaviour (the same
// access token back, no expires_in).
func TestHomeserverRefreshTokens(t *testing.T) {
	for _, c := range []struct {
		name                   string
		hasRefresh, configured bool
		wantAsked, wantRenewed bool
	}{
		{"no refresh tokens at the homeserver (Dendrite), asked", false, true, true, false},
		{"refresh tokens at the homeserver, not configured", true, false, false, false},
		{"refresh tokens at the homeserver, configured", true, true, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newRefreshEnv(t, c.hasRefresh, c.configured)
			tok := e.grant()
			if e.hs.asked != c.wantAsked {
				t.Errorf("login asked for a refresh token: %v", e.hs.asked)
			}
			at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
			if got, _ := tok["expires_in"].(float64); (got == 300) != c.wantRenewed || (!c.wantRenewed && got != 0) {
				t.Errorf("expires_in %v", tok["expires_in"])
			}
			e.now = e.now.Add(4 * time.Minute)
			status, next := e.refresh(rt)
			if status != 200 {
				t.Fatalf("refresh: %d %v", status, next)
			}
			nat := next["access_token"].(string)
			if (nat != at) != c.wantRenewed {
				t.Fatalf("refreshed access token %q (was %q)", nat, at)
			}
			if !e.isGrant(nat) || (c.wantRenewed && e.isGrant(at)) {
				t.Errorf("grant lookup: new %v, old %v", e.isGrant(nat), e.isGrant(at))
			}
			if status, _ := e.refresh(rt); status != 400 {
				t.Errorf("the used refresh token again: %d", status)
			}
		})
	}
}

// TestHomeserverRefreshFailures: the renewal's failures, and the renewed
// login at rest.
func TestHomeserverRefreshFailures(t *testing.T) {
	e := newRefreshEnv(t, true, true)
	tok := e.grant()
	rt := tok["refresh_token"].(string)

	// The homeserver out of reach: an error, and the client's refresh token still works.
	e.hs.down = true
	if status, body := e.refresh(rt); status < 500 {
		t.Fatalf("refresh while the homeserver is down: %d %v", status, body)
	}
	e.hs.down = false
	status, next := e.refresh(rt)
	if status != 200 {
		t.Fatalf("refresh after the outage: %d %v", status, next)
	}
	at := next["access_token"].(string)

	// The homeserver's tokens are sealed at rest.
	g, err := e.db.OAuthGrantByAccess(context.Background(), hash(at))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(g.Login, []byte("rt-")) || bytes.Contains(g.Login, []byte(at)) {
		t.Fatal("the homeserver's tokens are stored in the clear")
	}

	// Revocation follows the renewed access token.
	e.post(e.s.Revoke, url.Values{"token": {at}, "client_id": {"client"}})
	if e.isGrant(at) || len(e.hs.loggedOut) != 1 || e.hs.loggedOut[0] != at {
		t.Fatalf("revoke by the renewed token: grant %v, logged out %v", e.isGrant(at), e.hs.loggedOut)
	}

	// The homeserver refusing its refresh token ends the grant.
	tok = e.grant()
	e.hs.refreshes = map[string]bool{}
	if status, body := e.refresh(tok["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refused homeserver refresh: %d %v", status, body)
	}
	if e.isGrant(tok["access_token"].(string)) {
		t.Fatal("the grant outlived its homeserver refresh token")
	}
}

// TestHomeserverRefreshConcurrent: of concurrent uses of one refresh token
// only one renews, and the homeserver's refresh token is used once.
func TestHomeserverRefreshConcurrent(t *testing.T) {
	e := newRefreshEnv(t, true, true)
	rt := e.grant()["refresh_token"].(string)
	before := e.hs.n
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
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
