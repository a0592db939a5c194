package benchtool

import (
	"context"
	"encoding/base32"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// Options configures Run.
type Options struct {
	// RepoRoot is the repository (for the Go benchmarks); GatewayBin the
	// built matrix-2fa; DendriteBinDir the built Dendrite (dendrite.Build).
	RepoRoot, GatewayBin, DendriteBinDir string
	// WorkDir holds every server's files; it is left in place for inspection.
	WorkDir string
	// Duration of each wrk and login-throughput run; Conns concurrent
	// connections; Threads wrk threads.
	Duration       time.Duration
	Conns, Threads int
	// TOTPLogins is how many held logins (each of its own user) are completed
	// with a TOTP code; Sessions how many UIA sessions and held logins the
	// gateway holds for the RSS row.
	TOTPLogins, Sessions int
	// Progress gets a line per step.
	Progress io.Writer
	// PassThroughOnly measures only the pass-through rows (wrk against
	// Dendrite, nginx, the split configuration, the bare Go proxy and the
	// gateway): no seeding, logins, TOTP completions, RSS or Go benchmarks.
	PassThroughOnly bool
	// VersionsCacheTTL, when not empty, is the gateway's versions_cache_ttl
	// ("0s": the /versions row without the cache); empty keeps its default.
	VersionsCacheTTL string
}

// Paths measured with wrk.
const (
	versionsPath  = "/_matrix/client/versions"
	whoamiPath    = "/_matrix/client/v3/account/whoami"
	pushrulesPath = "/_matrix/client/v3/pushrules/"
	loginPath     = "/_matrix/client/v3/login"
	enrolPath     = "/_matrix/client/v3/account/two-factor/totp"
	password      = "bench-password-1"
	heldUsers     = 100 // users holding Sessions held logins between them (login.max_held_per_user ≤ 100)
	twoFAUsers    = 16  // users logging in with password + TOTP, once each
	loginConns    = 4
)

type runner struct {
	o      Options
	ctx    context.Context
	client *http.Client
	rows   []Row
	procs  []*proc
	// retries counts logins retried after Dendrite's SQLite failure.
	retries atomic.Int64
}

// retried runs f again (up to 5 times) while it fails with a 500: Dendrite's
// answer when concurrent logins collide on its SQLite database ("cannot start
// a transaction within a transaction", "Unable to fetch account by
// password"); the login did not happen.
func (r *runner) retried(f func() error) error {
	for i := 0; ; i++ {
		err := f()
		if err == nil || i == 4 || !strings.Contains(err.Error(), ": 500 {") {
			return err
		}
		r.retries.Add(1)
	}
}

func (r *runner) logf(format string, a ...any) {
	fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", a...)
}

// Run starts Dendrite, the gateway, nginx (alone and with the split-routing
// configuration) and a bare Go reverse proxy, all on loopback, measures, and
// returns the table's rows.
func Run(ctx context.Context, o Options) ([]Row, error) {
	r := &runner{o: o, ctx: ctx, client: newClient(o.Conns)}
	defer func() {
		for i := len(r.procs) - 1; i >= 0; i-- {
			r.procs[i].stop()
		}
	}()
	err := r.run()
	return r.rows, err
}

func (r *runner) run() error {
	ctx, o := r.ctx, r.o
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return err
	}

	// Dendrite: users registered under the test config's bcrypt cost (4)
	// first, then the server restarts with Dendrite's default cost (10) and
	// the users whose logins are measured are registered (a hash keeps its
	// cost).
	r.logf("starting Dendrite (bcrypt cost 4) in %s", filepath.Join(o.WorkDir, "dendrite"))
	hsDir := filepath.Join(o.WorkDir, "dendrite")
	hs, err := dendrite.Start(ctx, dendrite.Options{BinDir: o.DendriteBinDir, Dir: hsDir, LogLevel: "warn"})
	if err != nil {
		return err
	}
	cheap := []string{"fast"}
	for i := range heldUsers {
		cheap = append(cheap, fmt.Sprintf("held%03d", i))
	}
	if err := r.register(hs, cheap); err != nil {
		hs.Stop()
		return err
	}
	if err := hs.Stop(); err != nil {
		return err
	}
	if err := setBcryptCost(filepath.Join(hsDir, dendrite.ConfigFile), 10); err != nil {
		return err
	}
	r.logf("restarting Dendrite with bcrypt cost 10")
	if hs, err = dendrite.Start(ctx, dendrite.Options{BinDir: o.DendriteBinDir, Dir: hsDir, LogLevel: "warn"}); err != nil {
		return err
	}
	defer hs.Stop()
	costly := []string{"plain"}
	for i := range twoFAUsers {
		costly = append(costly, fmt.Sprintf("tfa%02d", i))
	}
	if err := r.register(hs, costly); err != nil {
		return err
	}
	plain, err := hs.Login(ctx, "plain", password)
	if err != nil {
		return err
	}

	// The gateway's database: TOTPLogins users, each with a held login, and
	// the heldUsers with 2FA on.
	gwDir := filepath.Join(o.WorkDir, "gateway")
	os.RemoveAll(gwDir)
	if err := os.MkdirAll(gwDir, 0o700); err != nil {
		return err
	}
	key := account.NewKey()
	keyFile := filepath.Join(gwDir, "secret.key")
	if err := account.WriteKeyFile(keyFile, key); err != nil {
		return err
	}
	box, err := account.NewSecretBox(key)
	if err != nil {
		return err
	}
	totpUsers := make([]string, o.TOTPLogins)
	for i := range totpUsers {
		totpUsers[i] = fmt.Sprintf("@totp%06d:%s", i, hs.ServerName)
	}
	enrolled := append([]string(nil), totpUsers...)
	for _, u := range cheap[1:] {
		enrolled = append(enrolled, hs.UserID(u))
	}
	var seed seeded
	if !o.PassThroughOnly {
		r.logf("seeding the gateway database: %d users with 2FA, %d held logins", len(enrolled), len(totpUsers))
		start := time.Now()
		quiet := logrus.New()
		quiet.SetOutput(io.Discard)
		if seed, err = seedGateway(ctx, filepath.Join(gwDir, "matrix-2fa.db"), box, enrolled, totpUsers, quiet); err != nil {
			return err
		}
		r.logf("seeded in %s", time.Since(start).Round(time.Millisecond))
	}

	// The servers.
	gwAddr, err := freeAddr()
	if err != nil {
		return err
	}
	gw, err := r.startGateway(gwDir, gwAddr, hs.URL)
	if err != nil {
		return err
	}
	gwURL := "http://" + gwAddr
	hsAddr := strings.TrimPrefix(hs.URL, "http://")
	nginxAddr, _ := freeAddr()
	if _, err := r.nginx("nginx", fmt.Sprintf(nginxBaseline, hsAddr, nginxAddr), nginxAddr); err != nil {
		return err
	}
	splitAddr, _ := freeAddr()
	split, err := exec.CommandContext(ctx, o.GatewayBin, "proxy-config", "nginx", "--http", "--listen", splitAddr,
		"--gateway", gwURL, "--homeserver", hs.URL).Output()
	if err != nil {
		return fmt.Errorf("matrix-2fa proxy-config nginx: %w", err)
	}
	if _, err := r.nginx("nginx-split", string(split), splitAddr); err != nil {
		return err
	}
	goURL, stopGo, err := bareProxy(hs.URL)
	if err != nil {
		return err
	}
	defer stopGo()
	if o.PassThroughOnly {
		return r.passThrough(hs.URL, "http://"+nginxAddr, "http://"+splitAddr, goURL, gwURL, plain.AccessToken)
	}

	// 2FA for the twoFAUsers, through the gateway's API.
	r.logf("enrolling %d users with 2FA through the gateway API", twoFAUsers)
	tfa := make(map[string][]byte)
	var enrolledAt time.Time
	for _, u := range costly[1:] {
		secret, err := r.enrol(hs, gwURL, u)
		if err != nil {
			return err
		}
		tfa[u] = secret
	}
	enrolledAt = time.Now()

	// Password logins of users without 2FA, loginConns at a time (Dendrite's
	// SQLite device writes fail under more: "cannot start a transaction
	// within a transaction").
	for _, c := range []struct{ user, cost string }{{"plain", "10"}, {"fast", "4"}} {
		login := passwordLogin(c.user)
		// direct, gateway, gateway, direct: half the duration each, so that
		// both see the same drift of a shared machine.
		var count [2]int
		var spent [2]time.Duration
		for _, i := range []int{0, 1, 1, 0} {
			base := []string{hs.URL, gwURL}[i]
			n, took, err := during(ctx, loginConns, o.Duration/2, func(ctx context.Context) error {
				return r.retried(func() error {
					return expect(ctx, r.client, http.StatusOK, http.MethodPost, base+loginPath, "", login, nil)
				})
			})
			if err != nil {
				return err
			}
			count[i], spent[i] = count[i]+n, spent[i]+took
		}
		rates := [2]float64{float64(count[0]) / spent[0].Seconds(), float64(count[1]) / spent[1].Seconds()}
		r.logf("password login (no 2FA, bcrypt %s): direct %.1f/s, gateway %.1f/s", c.cost, rates[0], rates[1])
		var goal *Goal
		name := "(password login, no 2FA, gateway ÷ direct, bcrypt cost 4: time per login)"
		if c.cost == "10" {
			goal, name = &Goal{Limit: 1.05, AtMost: true}, "password login, no 2FA, gateway ÷ direct: time per login"
		}
		r.rows = append(r.rows, Row{Name: name, Value: rates[0] / rates[1], Goal: goal,
			Figures: fmt.Sprintf("direct %.1f/s, gateway %.1f/s (%d connections, bcrypt cost %s)", rates[0], rates[1], loginConns, c.cost)})
	}

	// Password + TOTP logins, one per user (a code works once).
	if wait := time.Until(enrolledAt.Add(30 * time.Second)); wait > 0 {
		r.logf("waiting %s for the next TOTP step after enrolment", wait.Round(time.Second))
		time.Sleep(wait)
	}
	cheapTFA := map[string][]byte{}
	for _, u := range cheap[1 : 1+twoFAUsers] {
		cheapTFA[u] = benchSecret
	}
	for _, c := range []struct {
		users map[string][]byte
		cost  string
	}{{tfa, "10"}, {cheapTFA, "4"}} {
		var direct, gateway time.Duration
		for u, secret := range c.users {
			t0 := time.Now()
			if err := r.retried(func() error {
				return expect(ctx, r.client, http.StatusOK, http.MethodPost, hs.URL+loginPath, "", passwordLogin(u), nil)
			}); err != nil {
				return err
			}
			t1 := time.Now()
			if err := r.twoFactorLogin(gwURL, u, secret); err != nil {
				return err
			}
			direct, gateway = direct+t1.Sub(t0), gateway+time.Since(t1)
		}
		n := time.Duration(len(c.users))
		var goal *Goal
		name := "(password + TOTP login ÷ homeserver password login, bcrypt cost 4)"
		if c.cost == "10" {
			goal, name = &Goal{Limit: 1.1, AtMost: true}, "password + TOTP login ÷ homeserver password login"
		}
		r.rows = append(r.rows, Row{Name: name, Value: float64(gateway) / float64(direct), Goal: goal,
			Figures: fmt.Sprintf("%.1f ms vs %.1f ms per login, mean of %d users, one at a time (bcrypt cost %s)",
				ms(gateway/n), ms(direct/n), n, c.cost)})
		r.logf("password+TOTP (bcrypt %s): %.1f ms vs direct %.1f ms", c.cost, ms(gateway/n), ms(direct/n))
	}

	// TOTP stage completions over HTTP: each seeded held login completed once.
	r.logf("completing %d held logins with a TOTP code each", len(seed.heldSessions))
	took, err := jobs(ctx, o.Conns, len(seed.heldSessions), func(ctx context.Context, i int) error {
		code, err := benchCode(time.Now())
		if err != nil {
			return err
		}
		body := map[string]any{"auth": map[string]string{"type": flows.StageTOTP, "session": seed.heldSessions[i], "code": code}}
		return expect(ctx, r.client, http.StatusOK, http.MethodPost, gwURL+loginPath, "", body, nil)
	})
	if err != nil {
		return err
	}
	rate := float64(len(seed.heldSessions)) / took.Seconds()
	r.rows = append(r.rows, Row{Name: "TOTP stage completions over HTTP (SQLite, synchronous=NORMAL)", Value: rate, Unit: "/s",
		Goal: &Goal{Limit: 5000}, Figures: fmt.Sprintf("%d held logins of %d users completed in %s, %d connections",
			len(seed.heldSessions), len(seed.heldSessions), took.Round(time.Millisecond), o.Conns)})

	// RSS with Sessions UIA sessions and Sessions held logins.
	r.logf("creating %d UIA sessions and %d held logins through the gateway", o.Sessions, o.Sessions)
	if _, err := jobs(ctx, o.Conns, o.Sessions, func(ctx context.Context, i int) error {
		return expect(ctx, r.client, http.StatusUnauthorized, http.MethodPost, gwURL+enrolPath, plain.AccessToken, map[string]any{}, nil)
	}); err != nil {
		return err
	}
	took, err = jobs(ctx, o.Conns, o.Sessions, func(ctx context.Context, i int) error {
		return r.retried(func() error {
			return expect(ctx, r.client, http.StatusUnauthorized, http.MethodPost, gwURL+loginPath, "", passwordLogin(cheap[1+i%heldUsers]), nil)
		})
	})
	if err != nil {
		return err
	}
	// Pass-through throughput, last: wrk cuts its requests off when it
	// stops, which can leave Dendrite's SQLite connections broken for logins.
	if err := r.passThrough(hs.URL, "http://"+nginxAddr, "http://"+splitAddr, goURL, gwURL, plain.AccessToken); err != nil {
		return err
	}

	cur, peak, err := gw.rss()
	if err != nil {
		return err
	}
	r.rows = append(r.rows, Row{Name: "RSS of the gateway process, 10k UIA sessions + 10k held logins", Value: mb(cur), Unit: "MB",
		Goal: &Goal{Limit: 50, AtMost: true}, Figures: fmt.Sprintf("VmRSS %.1f MB, peak (VmHWM) %.1f MB, after every row above; held logins: %d password logins through the gateway in %s",
			mb(cur), mb(peak), o.Sessions, took.Round(time.Millisecond))})

	if n := r.retries.Load(); n > 0 {
		r.logf("%d logins retried after a 500 from Dendrite (SQLite contention)", n)
	}

	// In-process Go benchmarks.
	return r.goBenchmarks()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b int64) float64         { return float64(b) / (1 << 20) }

// ratio appends a row a ÷ b.
func (r *runner) ratio(name string, a, b float64, unit string, goal *Goal) {
	r.rows = append(r.rows, Row{Name: name, Value: a / b, Goal: goal, Figures: fmt.Sprintf("%.0f ÷ %.0f %s", a, b, unit)})
}

func passwordLogin(localpart string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": localpart},
		"password": password}
}

// register creates the users on Dendrite, 8 at a time.
func (r *runner) register(hs *dendrite.Server, users []string) error {
	start := time.Now()
	_, err := jobs(r.ctx, 8, len(users), func(ctx context.Context, i int) error {
		_, err := hs.Register(ctx, users[i], password)
		return err
	})
	r.logf("registered %d users in %s", len(users), time.Since(start).Round(time.Millisecond))
	return err
}

var bcryptCost = regexp.MustCompile(`(?m)^(\s*bcrypt_cost:)\s*\d+`)

// setBcryptCost sets Dendrite's bcrypt_cost in its config file.
func setBcryptCost(path string, cost int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bcryptCost.Match(data) {
		return fmt.Errorf("no bcrypt_cost in %s", path)
	}
	return os.WriteFile(path, bcryptCost.ReplaceAll(data, []byte("${1} "+strconv.Itoa(cost))), 0o600)
}

func freeAddr() (string, error) {
	port, err := dendrite.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// startGateway runs `matrix-2fa serve` on addr in front of hsURL with the
// defaults but for: no rate limit (one load generator is one client
// address), 100 held logins per user, 30-minute sessions.
func (r *runner) startGateway(dir, addr, hsURL string) (*proc, error) {
	cfg := fmt.Sprintf(`listen: %q
homeserver: %q
data_dir: %q
login:
  max_held_per_user: 100
  session_ttl: 30m
uia:
  session_ttl: 30m
rate_limit:
  burst: 0
log:
  level: info
`, addr, hsURL, dir)
	if r.o.VersionsCacheTTL != "" {
		cfg += fmt.Sprintf("versions_cache_ttl: %q\n", r.o.VersionsCacheTTL)
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc(r.ctx, "gateway", exec.Command(r.o.GatewayBin, "serve", "--config", file),
		filepath.Join(dir, "gateway.log"), "http://"+addr+"/health")
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	return p, nil
}

func (r *runner) nginx(name, conf, addr string) (*proc, error) {
	p, err := startNginx(r.ctx, name, filepath.Join(r.o.WorkDir, name), conf, addr)
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	return p, nil
}

// bareProxy serves httputil.ReverseProxy to hsURL on loopback, with the
// gateway's transport settings: the in-path floor for Go.
func bareProxy(hsURL string) (string, func(), error) {
	u, err := url.Parse(hsURL)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport:     &http.Transport{Proxy: nil, MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // wrk's cut-off requests at the end of each run
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// enrol turns 2FA on for localpart through the gateway's API (password
// stage, then the confirmation code) and returns the secret.
func (r *runner) enrol(hs *dendrite.Server, gwURL, localpart string) ([]byte, error) {
	ctx := r.ctx
	u, err := hs.Login(ctx, localpart, password)
	if err != nil {
		return nil, err
	}
	var challenge struct {
		Session string `json:"session"`
	}
	if err := expect(ctx, r.client, http.StatusUnauthorized, http.MethodPost, gwURL+enrolPath, u.AccessToken, map[string]any{}, &challenge); err != nil {
		return nil, err
	}
	auth := passwordLogin(localpart)
	auth["session"] = challenge.Session
	var en struct {
		Secret string `json:"secret"`
	}
	if err := expect(ctx, r.client, http.StatusOK, http.MethodPost, gwURL+enrolPath, u.AccessToken, map[string]any{"auth": auth}, &en); err != nil {
		return nil, err
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	if err != nil {
		return nil, err
	}
	code, err := codeNow(secret)
	if err != nil {
		return nil, err
	}
	return secret, expect(ctx, r.client, http.StatusOK, http.MethodPost, gwURL+enrolPath+"/confirm", u.AccessToken, map[string]string{"code": code}, nil)
}

func codeNow(secret []byte) (string, error) {
	p := account.DefaultConfig()
	return account.CodeAt(secret, account.Step(time.Now(), p.Period), account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period})
}

// twoFactorLogin logs localpart in through the gateway: password (401 with
// the held login's session), then the TOTP code (200).
func (r *runner) twoFactorLogin(gwURL, localpart string, secret []byte) error {
	var challenge struct {
		Session string `json:"session"`
	}
	if err := expect(r.ctx, r.client, http.StatusUnauthorized, http.MethodPost, gwURL+loginPath, "", passwordLogin(localpart), &challenge); err != nil {
		return err
	}
	code, err := codeNow(secret)
	if err != nil {
		return err
	}
	body := map[string]any{"auth": map[string]string{"type": flows.StageTOTP, "session": challenge.Session, "code": code}}
	return expect(r.ctx, r.client, http.StatusOK, http.MethodPost, gwURL+loginPath, "", body, nil)
}

var benchLine = regexp.MustCompile(`(?m)^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBenchmarks runs the in-process Go benchmarks and adds their rows.
func (r *runner) goBenchmarks() error {
	run := func(pkg, bench, benchtime string) (map[string]map[string]float64, error) {
		r.logf("go test -bench %s %s", bench, pkg)
		cmd := exec.CommandContext(r.ctx, "go", "test", "-run", "^$", "-bench", "^"+bench+"$", "-benchtime", benchtime, pkg)
		cmd.Dir = r.o.RepoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", bench, pkg, err, out)
		}
		return parseBench(string(out)), nil
	}
	totp, err := run("./account", "BenchmarkVerifyTOTPUsers", "20000x")
	if err != nil {
		return err
	}
	small, large := totp["BenchmarkVerifyTOTPUsers/users=1000"]["ns/op"], totp["BenchmarkVerifyTOTPUsers/users=1000000"]["ns/op"]
	if small == 0 || large == 0 {
		return fmt.Errorf("BenchmarkVerifyTOTPUsers: no ns/op in %v", totp)
	}
	r.rows = append(r.rows, Row{Name: "TOTP verification latency, 1,000,000 users ÷ 1,000", Value: large / small,
		Goal: &Goal{Limit: 1.2, AtMost: true}, Figures: fmt.Sprintf("%.0f µs ÷ %.0f µs per VerifyTOTP (Go benchmark, real SQLite file, 20,000 codes)", large/1000, small/1000)})
	live, err := run("./gateway", "BenchmarkLiveSessions", "1x")
	if err != nil {
		return err
	}
	m := live["BenchmarkLiveSessions"]
	r.rows = append(r.rows, Row{Name: "(RSS, same sessions in-process, fake homeserver)", Value: m["rss-MB"], Unit: "MB",
		Figures: fmt.Sprintf("Go benchmark: Go heap in use %.1f MB, RSS after returning free memory %.1f MB", m["heap-MB"], m["rss-freed-MB"])})
	return nil
}

// parseBench reads `go test -bench` output: benchmark name → unit → value.
func parseBench(out string) map[string]map[string]float64 {
	res := map[string]map[string]float64{}
	for _, m := range benchLine.FindAllStringSubmatch(out, -1) {
		fields := strings.Fields(m[2])
		vals := map[string]float64{}
		for i := 0; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				vals[fields[i+1]] = v
			}
		}
		res[m[1]] = vals
	}
	return res
}

// passThrough measures the pass-through rows with wrk: each path against
// Dendrite directly, nginx, the split configuration, the bare Go proxy and
// the gateway, one after the other.
func (r *runner) passThrough(hsURL, nginxURL, splitURL, goURL, gwURL, token string) error {
	ctx, o := r.ctx, r.o
	targets := []struct{ name, url string }{
		{"direct", hsURL}, {"nginx", nginxURL}, {"nginx-split", splitURL}, {"go-proxy", goURL}, {"gateway", gwURL},
	}
	paths := []struct{ name, path, token string }{
		{"/versions", versionsPath, ""}, {"whoami", whoamiPath, token}, {"pushrules", pushrulesPath, token},
	}
	rps := map[string]float64{}
	for _, p := range paths {
		for _, t := range targets {
			runWrk(ctx, t.url+p.path, p.token, 2*time.Second, o.Conns, o.Threads) // warm-up; Dendrite sometimes stalls for a second or two
			res, err := runWrk(ctx, t.url+p.path, p.token, o.Duration, o.Conns, o.Threads)
			if err != nil && strings.Contains(err.Error(), "no request answered") {
				r.logf("wrk %s %s: no answer at all, once more: %v", t.name, p.name, err)
				res, err = runWrk(ctx, t.url+p.path, p.token, o.Duration, o.Conns, o.Threads)
			}
			if err != nil {
				return err
			}
			rps[t.name+" "+p.name] = res.RPS
			r.logf("wrk %-11s %-9s %8.0f req/s", t.name, p.name, res.RPS)
		}
	}
	for _, p := range []string{"whoami", "pushrules", "/versions"} {
		goal := 0.9
		if p == "/versions" {
			goal = 0.6
		}
		r.ratio("in-path pass-through ÷ nginx, "+p, rps["gateway "+p], rps["nginx "+p], "req/s", &Goal{Limit: goal})
	}
	for _, p := range []string{"whoami", "pushrules", "/versions"} {
		r.ratio("split routing ÷ nginx alone, "+p, rps["nginx-split "+p], rps["nginx "+p], "req/s", &Goal{Limit: 0.98})
	}
	for _, p := range []string{"whoami", "pushrules", "/versions"} {
		r.ratio("(bare Go ReverseProxy ÷ nginx, "+p+")", rps["go-proxy "+p], rps["nginx "+p], "req/s", nil)
		r.ratio("(nginx ÷ direct, "+p+")", rps["nginx "+p], rps["direct "+p], "req/s", nil)
	}
	return nil
}
