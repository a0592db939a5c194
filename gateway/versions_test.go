package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// versionsUpstream is a homeserver whose /versions answer is header and
// status, counting the requests it gets.
type versionsUpstream struct {
	calls  atomic.Int64
	status int
	header http.Header
}

func (u *versionsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	for k, vs := range u.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(u.status)
	io.WriteString(w, `{"versions":["v1.11"]}`)
}

// versionsGateway is a gateway in front of up with the versions cache at ttl
// and a clock the test moves.
func versionsGateway(t *testing.T, up http.Handler, ttl time.Duration, now func() time.Time) string {
	t.Helper()
	hs := httptest.NewServer(up)
	t.Cleanup(hs.Close)
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	db, box, acc := newCore(t, account.DefaultConfig(), account.WithLogger(quiet))
	client, err := homeserver.New(hs.URL, homeserver.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{
		Config: gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute,
			VersionsCacheTTL: ttl},
		Homeserver: client, Accounts: acc, Store: db, Box: box, Logger: quiet, Now: now,
	})
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestVersionsCache: an unauthenticated GET /_matrix/client/versions spelled
// exactly is answered from memory for the TTL, when the homeserver's answer
// is a 200 that varies with nothing; anything else goes through every time.
func TestVersionsCache(t *testing.T) {
	for _, c := range []struct {
		name      string
		ttl       time.Duration
		status    int
		header    http.Header
		path      string
		token     string
		wantCalls int64 // for three requests, the clock moved 1 s after each
	}{
		{"cached", 2 * time.Second, 200, nil, "/_matrix/client/versions", "", 2},
		{"off", 0, 200, nil, "/_matrix/client/versions", "", 3},
		{"with a token", 2 * time.Second, 200, nil, "/_matrix/client/versions", "tok", 3},
		{"with a query", 2 * time.Second, 200, nil, "/_matrix/client/versions?access_token=tok", "", 3},
		{"another spelling", 2 * time.Second, 200, nil, "/_matrix/client//versions", "", 3},
		{"a refusal", 2 * time.Second, 429, nil, "/_matrix/client/versions", "", 3},
		{"Vary", 2 * time.Second, 200, http.Header{"Vary": {"Origin"}}, "/_matrix/client/versions", "", 3},
		{"no-store", 2 * time.Second, 200, http.Header{"Cache-Control": {"no-store"}}, "/_matrix/client/versions", "", 3},
		{"private", 2 * time.Second, 200, http.Header{"Cache-Control": {"Private, max-age=5"}}, "/_matrix/client/versions", "", 3},
		{"a cookie", 2 * time.Second, 200, http.Header{"Set-Cookie": {"a=b"}}, "/_matrix/client/versions", "", 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := &versionsUpstream{status: c.status, header: c.header}
			var mu sync.Mutex
			clock := time.Unix(1_800_000_000, 0)
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			base := versionsGateway(t, up, c.ttl, now)
			for range 3 {
				req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status || string(body) != `{"versions":["v1.11"]}` || resp.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
				}
				mu.Lock()
				clock = clock.Add(time.Second)
				mu.Unlock()
			}
			if got := up.calls.Load(); got != c.wantCalls {
				t.Errorf("homeserver asked %d times, want %d", got, c.wantCalls)
			}
		})
	}
}
