package homeserver_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// whoamiFake answers whoami for the tokens "alice-token" and "bob-token" and
// 401 M_UNKNOWN_TOKEN for anything else.
func whoamiFake(t *testing.T) *fakeHS {
	return newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path != "/_matrix/client/v3/account/whoami" || r.Method != http.MethodGet {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			writeRaw(w, http.StatusNotFound, `{"errcode":"M_UNRECOGNIZED"}`)
			return
		}
		switch r.Header.Get("Authorization") {
		case "Bearer alice-token":
			writeRaw(w, http.StatusOK, `{"user_id":"@alice:localhost","device_id":"ALICEDEV","is_guest":false}`)
		case "Bearer bob-token":
			writeRaw(w, http.StatusOK, `{"user_id":"@bob:localhost","device_id":"BOBDEV","is_guest":true}`)
		default:
			writeRaw(w, http.StatusUnauthorized, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token","soft_logout":true}`)
		}
	})
}

func TestWhoAmICache(t *testing.T) {
	type step struct {
		op       string // "whoami", "forget" or "advance"
		token    string
		d        time.Duration
		wantHits int // whoami requests upstream so far, after this step
	}
	tests := []struct {
		name  string
		ttl   time.Duration
		steps []step
	}{
		{name: "second call served from cache", ttl: time.Minute, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "whoami", token: "alice-token", wantHits: 1},
		}},
		{name: "entry expires after TTL", ttl: time.Minute, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "advance", d: time.Minute - time.Nanosecond},
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "advance", d: time.Nanosecond},
			{op: "whoami", token: "alice-token", wantHits: 2},
			{op: "whoami", token: "alice-token", wantHits: 2},
		}},
		{name: "zero TTL means 30s", ttl: 0, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "advance", d: 29 * time.Second},
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "advance", d: time.Second},
			{op: "whoami", token: "alice-token", wantHits: 2},
		}},
		{name: "negative TTL disables cache", ttl: -1, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "whoami", token: "alice-token", wantHits: 2},
		}},
		{name: "errors not cached", ttl: time.Minute, steps: []step{
			{op: "whoami", token: "revoked-token", wantHits: 1},
			{op: "whoami", token: "revoked-token", wantHits: 2},
		}},
		{name: "tokens cached separately", ttl: time.Minute, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "whoami", token: "bob-token", wantHits: 2},
			{op: "whoami", token: "alice-token", wantHits: 2},
			{op: "whoami", token: "bob-token", wantHits: 2},
		}},
		{name: "ForgetToken drops the entry", ttl: time.Minute, steps: []step{
			{op: "whoami", token: "alice-token", wantHits: 1},
			{op: "whoami", token: "bob-token", wantHits: 2},
			{op: "forget", token: "alice-token"},
			{op: "whoami", token: "alice-token", wantHits: 3},
			{op: "whoami", token: "bob-token", wantHits: 3},
		}},
	}
	want := map[string]homeserver.WhoAmI{
		"alice-token": {UserID: "@alice:localhost", DeviceID: "ALICEDEV"},
		"bob-token":   {UserID: "@bob:localhost", DeviceID: "BOBDEV", IsGuest: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := whoamiFake(t)
			clock := newTestClock()
			c := newClient(t, f.URL, homeserver.Options{WhoAmITTL: tt.ttl, Now: clock.Now})
			for i, s := range tt.steps {
				switch s.op {
				case "advance":
					clock.Advance(s.d)
					continue
				case "forget":
					c.ForgetToken(s.token)
					continue
				}
				got, err := c.WhoAmI(t.Context(), s.token)
				if w, known := want[s.token]; known {
					if err != nil || got != w {
						t.Errorf("step %d: WhoAmI(%s) = %+v, %v; want %+v", i, s.token, got, err, w)
					}
				} else if err == nil {
					t.Errorf("step %d: WhoAmI(%s) succeeded, want an error", i, s.token)
				}
				if n := f.count(http.MethodGet, "/_matrix/client/v3/account/whoami"); n != s.wantHits {
					t.Errorf("step %d: %d whoami requests upstream, want %d", i, n, s.wantHits)
				}
			}
		})
	}
}

// TestWhoAmIForgetDuringFlight checks that an answer fetched while the token
// was forgotten (logged out) is not cached.
func TestWhoAmIForgetDuringFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if first {
			first = false
			close(entered)
			<-release
		}
		writeRaw(w, http.StatusOK, `{"user_id":"@alice:localhost","device_id":"D"}`)
	})
	c := newClient(t, f.URL, homeserver.Options{WhoAmITTL: time.Hour})
	done := make(chan error)
	go func() {
		_, err := c.WhoAmI(t.Context(), "alice-token")
		done <- err
	}()
	<-entered
	c.ForgetToken("alice-token")
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	if _, err := c.WhoAmI(t.Context(), "alice-token"); err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests upstream, want 2: the answer from before ForgetToken must not be cached", n)
	}
}

func TestWhoAmIErrors(t *testing.T) {
	tests := []struct {
		name        string
		token       string
		status      int
		body        string
		wantRespErr *mautrix.RespError // nil: an ordinary error
		wantExtra   map[string]any
		wantHits    int
	}{
		{
			name: "unknown token preserved with soft_logout", token: "t", status: 401,
			body:        `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token","soft_logout":true}`,
			wantRespErr: &mautrix.RespError{ErrCode: "M_UNKNOWN_TOKEN", Err: "Unknown token", StatusCode: 401},
			wantExtra:   map[string]any{"soft_logout": true},
			wantHits:    1,
		},
		{
			name: "missing token from homeserver", token: "t", status: 401,
			body:        `{"errcode":"M_MISSING_TOKEN","error":"Missing access token"}`,
			wantRespErr: &mautrix.RespError{ErrCode: "M_MISSING_TOKEN", Err: "Missing access token", StatusCode: 401},
			wantHits:    1,
		},
		{
			name: "empty token answered locally", token: "",
			wantRespErr: &mautrix.RespError{ErrCode: "M_MISSING_TOKEN", Err: "Missing access token", StatusCode: 401},
			wantHits:    0,
		},
		{
			name: "rate limited", token: "t", status: 429,
			body:        `{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}`,
			wantRespErr: &mautrix.RespError{ErrCode: "M_LIMIT_EXCEEDED", Err: "Too many requests", StatusCode: 429},
			wantExtra:   map[string]any{"retry_after_ms": float64(2000)},
			wantHits:    1,
		},
		{name: "server error with errcode", token: "t", status: 500, body: `{"errcode":"M_UNKNOWN","error":"db"}`, wantHits: 1},
		{name: "401 without errcode", token: "t", status: 401, body: `<html>nope</html>`, wantHits: 1},
		{name: "bad gateway html", token: "t", status: 502, body: `<html>bad gateway</html>`, wantHits: 1},
		{name: "200 garbage", token: "t", status: 200, body: `not json`, wantHits: 1},
		{name: "200 without user_id", token: "t", status: 200, body: `{"device_id":"D"}`, wantHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, tt.status, tt.body) })
			c := newClient(t, f.URL, homeserver.Options{})
			_, err := c.WhoAmI(t.Context(), tt.token)
			if err == nil {
				t.Fatal("WhoAmI succeeded, want an error")
			}
			var re mautrix.RespError
			isRespErr := errors.As(err, &re)
			if tt.wantRespErr == nil {
				if isRespErr {
					t.Errorf("error %v is a RespError, want an ordinary error", err)
				}
			} else {
				if !isRespErr {
					t.Fatalf("error %v (%T) is not a mautrix.RespError", err, err)
				}
				if re.ErrCode != tt.wantRespErr.ErrCode || re.Err != tt.wantRespErr.Err || re.StatusCode != tt.wantRespErr.StatusCode {
					t.Errorf("RespError{%s, %q, %d}, want {%s, %q, %d}", re.ErrCode, re.Err, re.StatusCode,
						tt.wantRespErr.ErrCode, tt.wantRespErr.Err, tt.wantRespErr.StatusCode)
				}
				if !errors.Is(err, *tt.wantRespErr) {
					t.Errorf("errors.Is(err, %s) = false", tt.wantRespErr.ErrCode)
				}
				for k, v := range tt.wantExtra {
					if re.ExtraData[k] != v {
						t.Errorf("ExtraData[%q] = %v, want %v", k, re.ExtraData[k], v)
					}
				}
			}
			if n := len(f.requests()); n != tt.wantHits {
				t.Errorf("%d requests upstream, want %d", n, tt.wantHits)
			}
		})
	}
}

// TestWhoAmIErrorIsMUnknownToken documents the comparison the gateway uses.
func TestWhoAmIErrorIsMUnknownToken(t *testing.T) {
	f := whoamiFake(t)
	c := newClient(t, f.URL, homeserver.Options{})
	_, err := c.WhoAmI(t.Context(), "nobody")
	if !errors.Is(err, mautrix.MUnknownToken) {
		t.Errorf("errors.Is(%v, MUnknownToken) = false", err)
	}
	if errors.Is(err, mautrix.MMissingToken) {
		t.Errorf("errors.Is(%v, MMissingToken) = true", err)
	}
}

// TestNoSecretsLogged runs every operation with a debug logger and checks
// that no token or password reaches the log.
func TestNoSecretsLogged(t *testing.T) {
	const (
		token    = "syt_c2VjcmV0_TOKENVALUE_1234"
		newToken = "syt_bmV3_NEWTOKENVALUE_5678"
		password = "hunter2-PASSWORD-value"
	)
	f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.URL.Path {
		case "/_matrix/client/v3/account/whoami":
			if r.Header.Get("Authorization") == "Bearer "+token {
				writeRaw(w, 200, `{"user_id":"@alice:localhost","device_id":"D"}`)
				return
			}
			writeRaw(w, 401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`)
		case "/_matrix/client/v3/login":
			if strings.Contains(string(body), password) {
				writeRaw(w, 200, `{"user_id":"@alice:localhost","device_id":"NEW","access_token":"`+newToken+`"}`)
				return
			}
			writeRaw(w, 403, `{"errcode":"M_FORBIDDEN","error":"Invalid password"}`)
		case "/_matrix/client/v3/logout":
			writeRaw(w, 500, `{"errcode":"M_UNKNOWN","error":"boom"}`)
		default:
			writeRaw(w, 200, `{}`)
		}
	})
	logger, hook := newTestLogger()
	c := newClient(t, f.URL, homeserver.Options{Logger: logger})
	ctx := t.Context()
	_, _ = c.WhoAmI(ctx, token)
	_, _ = c.WhoAmI(ctx, token+"x")
	_, _ = c.PasswordLogin(ctx, "alice", password, "", "")
	_, _ = c.CheckPassword(ctx, id.UserID("@alice:localhost"), password) // logout fails: logged as error
	_, _ = c.CheckPassword(ctx, id.UserID("@alice:localhost"), "wrong-"+password)
	_ = c.Logout(ctx, token)
	_, _ = c.Do(ctx, http.MethodGet, "/_matrix/client/v3/sync?access_token="+token, nil, nil)

	entries := hook.AllEntries()
	if len(entries) == 0 {
		t.Fatal("nothing was logged; the test would prove nothing")
	}
	for _, e := range entries {
		line, err := e.String()
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{token, newToken, password, "TOKENVALUE", "PASSWORD"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line contains a secret: %s", line)
			}
		}
	}
}
