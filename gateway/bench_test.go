package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// benchGateway starts a gateway in front of hsURL (as newEnvWith does, for a
// benchmark) and returns its URL.
func benchGateway(tb testing.TB, hsURL string) string {
	tb.Helper()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	db, box, acc := newCore(tb, account.DefaultConfig(), account.WithLogger(quiet))
	client, err := homeserver.New(hsURL, homeserver.Options{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	gw := gateway.New(gateway.Options{
		Config:     gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute},
		Homeserver: client, Accounts: acc, Store: db, Box: box, Logger: quiet,
	})
	srv := httptest.NewServer(gw.Handler())
	tb.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkPassThrough measures what the gateway adds to a passed-through
// request: GET /account/whoami against one loopback Dendrite, directly and
// through the gateway, over keep-alive connections. The "ratio" sub-benchmark
// runs both itself, alternating, and reports gateway/direct.
func BenchmarkPassThrough(b *testing.B) {
	hs := tesths.Dendrite(b)
	u := tesths.RegisterUser(b, hs, "bench")
	gwURL := benchGateway(b, hs.URL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}}
	b.Cleanup(client.CloseIdleConnections)

	get := func(b *testing.B, base string) {
		req, err := http.NewRequest(http.MethodGet, base+e2eWhoAmIPath, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+u.AccessToken)
		hr, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
		if hr.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", req.URL, hr.StatusCode)
		}
	}
	loop := func(base string) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				get(b, base)
			}
		}
	}
	b.Run("direct", loop(hs.URL))
	b.Run("gateway", loop(gwURL))

	// The ratio: both loops, b.N requests each, timed here. (testing.Benchmark
	// cannot be nested in a running benchmark: it waits for the benchmark
	// lock the running one holds.)
	b.Run("ratio", func(b *testing.B) {
		timed := func(base string) time.Duration {
			start := time.Now()
			get(b, base)
			return time.Since(start)
		}
		var td, tg time.Duration
		for range b.N {
			// one request each, alternating, so both see the same conditions
			td += timed(hs.URL)
			tg += timed(gwURL)
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(td.Nanoseconds())/float64(b.N), "direct-ns/op")
		b.ReportMetric(float64(tg.Nanoseconds())/float64(b.N), "gateway-ns/op")
		b.ReportMetric(float64(tg)/float64(td), "gateway/direct")
		if b.N > 1 {
			b.Logf("%d requests each: direct %.0f ns/op, gateway %.0f ns/op, gateway/direct %.2f",
				b.N, float64(td.Nanoseconds())/float64(b.N), float64(tg.Nanoseconds())/float64(b.N), float64(tg)/float64(td))
		}
	})
}
