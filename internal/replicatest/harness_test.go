package replicatest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// Settings every cluster runs with; the held-login TTL is the shortest the
// configuration allows, the sweeper's interval is held's default.
const (
	heldTTL       = 30 * time.Second
	sweepInterval = 10 * time.Second
	lockoutLimit  = 5 // account.DefaultConfig's
	allowedTarget = "http://client.example/app/"
)

// configYAML is the gateways' shared configuration: one key for all of them
// (it also derives the cookie and CSRF keys), JSON logs to read, no
// per-address rate limit (every test client is 127.0.0.1), cheap argon2 (the
// recovery codes' slow hash is not what these tests measure).
func configYAML(key, dataDir string) string {
	return fmt.Sprintf(`key: %q
data_dir: %q
log: {level: info, format: json}
rate_limit: {burst: 0}
login:
  session_ttl: %s
  redirect_allowlist: [%q]
two_factor:
  argon2: {time: 1, memory_kib: 256, threads: 1}
`, key, dataDir, heldTTL, allowedTarget)
}

// gatewayProc is one `matrix-2fa serve` process.
type gatewayProc struct {
	name    string
	addr    string // 127.0.0.1:PORT
	base    string // http://addr
	args    []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startGateway runs `matrix-2fa serve` with args and waits for GET /ready 200.
func startGateway(t testing.TB, name string, args []string, addr, logPath string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{name: name, addr: addr, base: "http://" + addr, args: args, logPath: logPath}
	if err := g.launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.stop(t) })
	g.waitReady(t, 30*time.Second)
	return g
}

func (g *gatewayProc) launch() error {
	logFile, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(binary.path, g.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with the test binary, so no gateway outlives a timed-out run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %v", g.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	g.cmd, g.exited = cmd, exited
	return nil
}

// running reports whether the process is alive.
func (g *gatewayProc) running() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// kill9 kills the process with SIGKILL (a crash: no shutdown, nothing flushed).
func (g *gatewayProc) kill9() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
}

// restart starts the process again with the same arguments (same port, same
// data) and waits until it is ready.
func (g *gatewayProc) restart() error {
	if g.running() {
		return fmt.Errorf("%s: restart while running", g.name)
	}
	if err := g.launch(); err != nil {
		return err
	}
	if err := g.awaitReady(200, "", 30*time.Second); err != nil {
		return fmt.Errorf("%s restarted: %v", g.name, err)
	}
	return nil
}

// stop ends the process (SIGTERM, SIGKILL after 10 s); the log's tail goes to
// the test log when the test failed.
func (g *gatewayProc) stop(t testing.TB) {
	if g.running() {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			g.kill9()
		}
	}
	if t.Failed() {
		b, _ := os.ReadFile(g.logPath)
		t.Logf("%s log %s ends with:\n%s", g.name, g.logPath, tail(string(b), 15))
	}
}

// ready is GET /ready: its status and body.
func (g *gatewayProc) ready() (int, map[string]string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(g.base + "/ready")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// waitReady waits until GET /ready answers 200.
func (g *gatewayProc) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := g.awaitReady(200, "", timeout); err != nil {
		b, _ := os.ReadFile(g.logPath)
		t.Fatalf("%s: %v; log ends with:\n%s", g.name, err, tail(string(b), 15))
	}
}

// awaitReady waits until GET /ready answers status and, when status is 503,
// names down ("database" or "homeserver") as unavailable.
func (g *gatewayProc) awaitReady(status int, down string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var got int
	var body map[string]string
	for time.Now().Before(deadline) {
		if !g.running() {
			return fmt.Errorf("exited while waiting for /ready %d", status)
		}
		got, body = g.ready()
		if got == status && (down == "" || body[down] == "unavailable") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("GET /ready: %d %v after %s; want %d (%s unavailable)", got, body, timeout, status, down)
}

// logLine is one line of a gateway's JSON log.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// logLines reads the gateway's log.
func (g *gatewayProc) logLines(t testing.TB) []logLine {
	t.Helper()
	f, err := os.Open(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// clusterOptions say what newCluster starts.
type clusterOptions struct {
	replicas int
	// database is a postgres:// URL; empty means one SQLite file (replicas must be 1).
	database string
	// nginx puts a real nginx in front, balancing the replicas round robin.
	nginx bool
	// homeserver, when set, is the URL the gateways use instead of hs's.
	homeserver string
}

// cluster is a Dendrite, gateways in front of it and maybe nginx in front of them.
type cluster struct {
	hs      *dendrite.Server
	hsBin   string
	gws     []*gatewayProc
	lb      string // the address clients use: nginx, or the only gateway
	dir     string
	nginxLg string
}

// newCluster starts the gateways (and nginx) in front of hs.
func newCluster(t testing.TB, hs *dendrite.Server, opts clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "matrix-2fa.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(account.EncodeKey(account.NewKey()), filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cluster{hs: hs, hsBin: tesths.DendriteBinDir(t), dir: dir}
	gatewayBinary(t)
	hsURL := hs.URL
	if opts.homeserver != "" {
		hsURL = opts.homeserver
	}
	for i := range opts.replicas {
		addr := "127.0.0.1:" + strconv.Itoa(tesths.FreePort(t))
		args := []string{"serve", "--config", cfgPath, "--homeserver", hsURL, "--listen", addr}
		if opts.database != "" {
			args = append(args, "--database", opts.database)
		}
		name := fmt.Sprintf("replica%d", i)
		c.gws = append(c.gws, startGateway(t, name, args, addr, filepath.Join(dir, name+".log")))
	}
	c.lb = c.gws[0].base
	if opts.nginx {
		c.lb = c.startNginx(t)
	}
	return c
}

// startNginx runs nginx (master_process off, as the proxy-config tests do)
// balancing the gateways round robin, with a new connection per request so
// a dead replica is a refused connect that nginx passes on to the next one;
// X-Upstream names the replica that answered.
func (c *cluster) startNginx(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("nginx is not installed: the replica tests need it (apt-get install nginx-light; scripts/test.sh installs it)")
		}
	}
	ndir := filepath.Join(c.dir, "nginx")
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		t.Fatal(err)
	}
	var servers strings.Builder
	for _, g := range c.gws {
		fmt.Fprintf(&servers, "\t\tserver %s max_fails=1 fail_timeout=5s;\n", g.addr)
	}
	port := tesths.FreePort(t)
	conf := fmt.Sprintf(`pid nginx.pid;
worker_processes 1;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path body;
	proxy_temp_path proxy;
	upstream gateways {
%s	}
	server {
		listen 127.0.0.1:%d;
		location / {
			proxy_pass http://gateways;
			proxy_set_header Host $http_host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_read_timeout 60s;
			add_header X-Upstream $upstream_addr always;
		}
	}
}
`, servers.String(), port)
	confPath := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c.nginxLg = filepath.Join(ndir, "error.log")
	cmd := exec.Command(bin, "-c", confPath, "-p", ndir+"/", "-e", c.nginxLg, "-g", "daemon off; master_process off;")
	out, err := os.Create(filepath.Join(ndir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(c.nginxLg)
			t.Fatalf("nginx exited before serving:\n%s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not serve within 20s")
		}
	}
}

// haltHomeserver stops Dendrite (SIGTERM), keeping its data and address.
func (c *cluster) haltHomeserver(t testing.TB) {
	t.Helper()
	if err := c.hs.Halt(); err != nil {
		t.Fatal(err)
	}
}

// resumeHomeserver starts Dendrite again on the same address and data and
// waits until it is ready.
func (c *cluster) resumeHomeserver(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.hs.Resume(ctx, c.hsBin, 0); err != nil {
		t.Fatal(err)
	}
}

// awaitAll waits until every running gateway's /ready answers status (naming
// down as unavailable when 503).
func (c *cluster) awaitAll(t testing.TB, status int, down string, timeout time.Duration) {
	t.Helper()
	for _, g := range c.gws {
		if !g.running() {
			continue
		}
		if err := g.awaitReady(status, down, timeout); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
	}
}

// errorLogs returns the error-level lines of every gateway's log.
func (c *cluster) errorLogs(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, g := range c.gws {
		for _, l := range g.logLines(t) {
			if l.str("level") == "error" || l.str("level") == "fatal" || l.str("level") == "panic" {
				b, _ := json.Marshal(l)
				out = append(out, g.name+": "+string(b))
			}
		}
	}
	return out
}
