package gateway_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/held"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
	"github.com/matrix-2fa/matrix-2fa/uia"
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

// BenchmarkLiveSessions measures the memory of a gateway holding 10,000 live
// UIA sessions and 10,000 held logins (goal: RSS < 50 MB). Both are created
// over HTTP through the real handler, in front of the fake homeserver (the
// held logins' passwords are checked by it, not by a slow hash), on a real
// SQLite file: 100 users with 2FA, each with 100 held logins (the most
// login.max_held_per_user allows) and 100 UIA sessions (POST
// /account/two-factor/recovery without auth). After the fake's own records
// of those calls are dropped and a GC, it reports the process's resident set
// (rss-MB, the test binary's included), the same after the Go runtime has
// returned its free memory to the system (rss-freed-MB) and the Go heap in
// use (heap-MB).
// scripts/bench.sh measures the same on a real gateway process in front of
// Dendrite.
func BenchmarkLiveSessions(b *testing.B) {
	const users, perUser = 100, 100
	for b.Loop() {
		rss, heap := liveSessions(b, users, perUser)
		b.ReportMetric(rss, "rss-MB")
		debug.FreeOSMemory()
		b.ReportMetric(float64(processRSS(b))/(1<<20), "rss-freed-MB")
		b.ReportMetric(heap, "heap-MB")
	}
}

func liveSessions(b *testing.B, users, perUser int) (rssMB, heapMB float64) {
	acfg := account.DefaultConfig()
	acfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	quiet := quietLogger()
	quiet.SetLevel(logrus.InfoLevel)
	db, box, acc := newCore(b, acfg, account.WithLogger(quiet))
	hs := newFakeHS(b)
	ctx := context.Background()
	names := make([]string, users)
	for i := range users {
		names[i] = fmt.Sprintf("@user%03d:%s", i, fakeServer)
		hs.addUser(names[i], "pw", "tok"+strconv.Itoa(i), "DEV"+strconv.Itoa(i))
		en, err := acc.Enrol(ctx, names[i])
		if err != nil {
			b.Fatal(err)
		}
		secret, err := decodeB32(en.Secret)
		if err != nil {
			b.Fatal(err)
		}
		code, err := account.CodeAt(secret, account.Step(time.Now(), acc.Params().Period), acc.Params())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := acc.Confirm(ctx, names[i], code); err != nil {
			b.Fatal(err)
		}
	}
	gw := gateway.New(gateway.Options{
		Config: gateway.Config{LoginTTL: time.Hour, TokenTTL: 2 * time.Minute, UIATTL: time.Hour, MaxHeld: perUser,
			SSOProviderID: "matrix-2fa", SSOProviderName: "Sign in with 2FA"},
		Homeserver: hs, Accounts: acc, Store: db, Box: box, Logger: quiet,
	})
	srv := httptest.NewServer(gw.Handler())
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	post := func(path, token, body string) error {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		hr, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
		if hr.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("POST %s: %d, want 401", path, hr.StatusCode)
		}
		return nil
	}
	jobs := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				u := j % users
				login := fmt.Sprintf(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":%q},"password":"pw"}`, names[u])
				err := post("/_matrix/client/v3/login", "", login)
				if err == nil {
					err = post("/_matrix/client/v3/account/two-factor/recovery", "tok"+strconv.Itoa(u), `{}`)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for j := range users * perUser {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	// The fake homeserver's records and tokens are the homeserver's memory,
	// not the gateway's.
	hs.mu.Lock()
	hs.logins, hs.issued, hs.whoamis = nil, nil, nil
	for tok := range hs.tokens {
		if strings.HasPrefix(tok, "syt_") {
			delete(hs.tokens, tok)
		}
	}
	hs.mu.Unlock()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(processRSS(b)) / (1 << 20), float64(ms.HeapInuse) / (1 << 20)
}

// processRSS is this process's resident set in bytes (VmRSS).
func processRSS(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// benchSecret is the TOTP secret of every user of BenchmarkTOTPCompletions
// (each has its own replay state).
var benchSecret = []byte("matrix-2fa benchmark secret!")

// BenchmarkTOTPCompletions measures TOTP stage completions of held logins
// over HTTP (issue 14's "TOTP stage completions per second"): b.N users with
// 2FA on, each with one held login, on a real SQLite file (the defaults:
// WAL, synchronous=NORMAL), each completed once with a current code through
// the real handler by 16 concurrent clients. It reports completions/s and the
// process's CPU time per completion (cpu-µs/op: clients, server and SQLite).
// scripts/bench.sh measures the same against a real gateway process.
func BenchmarkTOTPCompletions(b *testing.B) {
	ctx := context.Background()
	quiet := quietLogger()
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
	acc, err := account.NewService(db, box, account.DefaultConfig(), account.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	sessions := seedHeldLogins(b, path, db, box, b.N)
	gw := gateway.New(gateway.Options{
		Config:     gateway.Config{LoginTTL: time.Hour, TokenTTL: 2 * time.Minute, UIATTL: time.Hour, MaxHeld: 100},
		Homeserver: newFakeHS(b), Accounts: acc, Store: db, Box: box, Logger: quiet,
	})
	srv := httptest.NewServer(gw.Handler())
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)
	p := account.DefaultConfig()
	params := account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period}

	next := make(chan string)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				if err := completeHeld(client, srv.URL, s, params); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, s := range sessions {
		next <- s
	}
	close(next)
	wg.Wait()
	took, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "completions/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time (user and system) this process has used: on a
// shared machine it moves less than the wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// completeHeld completes held login session with the current code of
// benchSecret; it wants 200.
func completeHeld(client *http.Client, base, session string, p account.Params) error {
	code, err := account.CodeAt(benchSecret, account.Step(time.Now(), p.Period), p)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`{"auth":{"type":"m.login.2fa.totp","session":%q,"code":%q}}`, session, code)
	hr, err := client.Post(base+loginPath, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	raw, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return fmt.Errorf("completing %s: %d %s", session, hr.StatusCode, raw)
	}
	return nil
}

// seedHeldLogins gives n users an authenticator (secret benchSecret), in one
// transaction on the database file at path, and each one held login, through
// held.Keeper as the gateway holds them; it returns the held sessions.
func seedHeldLogins(b *testing.B, path string, db *sqlite.DB, box *account.SecretBox, n int) []string {
	ctx := context.Background()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	p := account.DefaultConfig()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("@totp%06d:%s", i, fakeServer)
		sealed, err := box.Seal(users[i], benchSecret)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO totp (user_id, secret, key_id, algorithm, digits, period, last_step, enabled_at)
			VALUES (?, ?, ?, ?, ?, ?, 0, ?)`, users[i], sealed, box.KeyID(), p.Algorithm, p.Digits, p.Period, time.Now().UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	engine := uia.New(db, time.Hour)
	keeper := held.New(held.Config{LoginTTL: time.Hour, TokenTTL: 2 * time.Minute, MaxPerUser: 100}, newFakeHS(b), db, box, engine, quietLogger(), time.Now)
	sessions := make([]string, n)
	for i, u := range users {
		body := fmt.Sprintf(`{"user_id":%q,"access_token":"syt_bench_%d","device_id":"BENCH%d","home_server":%q}`, u, i, i, fakeServer)
		s, err := keeper.Hold(ctx, storage.KindHeldLogin, u, flows.After(flows.StagePassword), flows.StagePassword, []byte(body), held.Origin{Addr: "127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = s.ID
	}
	return sessions
}
