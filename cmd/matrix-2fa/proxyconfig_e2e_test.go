package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// These tests run the generated split-routing configuration in real nginx
// and Caddy, in front of a real Dendrite and the gateway, all on loopback.
// They fail (never skip) when nginx or Caddy is missing: scripts/test.sh
// installs them (Debian packages nginx-light and caddy).

// proxyBinary finds a proxy's executable or fails the test saying what to install.
func proxyBinary(t *testing.T, name, pkg string, alsoAt ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alsoAt {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Fatalf("%s is not installed: the split-routing tests need it (apt-get install %s; scripts/test.sh installs it)", name, pkg)
	return ""
}

// proxyProcess is a running nginx or Caddy.
type proxyProcess struct {
	name string
	base string // http://127.0.0.1:PORT
	log  string // its log file
}

// startProxy runs cmd (a proxy serving on port) until the test ends and waits
// until it answers on port.
func startProxy(t *testing.T, name string, cmd *exec.Cmd, port int, logPath string) *proxyProcess {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log ends with:\n%s", name, tail(string(b), 10))
		}
	})
	p := &proxyProcess{name: name, base: "http://127.0.0.1:" + strconv.Itoa(port), log: logPath}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(p.base + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited before serving:\n%s", name, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s did not answer on port %d within 20s:\n%s", name, port, b)
		}
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// gatewayLog reads the gateway's JSON log for the requests it handled.
type gatewayLog struct{ buf *syncBuffer }

type loggedRequest struct {
	Msg    string `json:"msg"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
}

func (g gatewayLog) requests() []loggedRequest {
	var out []loggedRequest
	sc := bufio.NewScanner(strings.NewReader(g.buf.String()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r loggedRequest
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg == "request" {
			out = append(out, r)
		}
	}
	return out
}

// waitRequests waits until the log holds more than n requests and returns them.
func (g gatewayLog) waitRequests(n int) []loggedRequest {
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := g.requests()
		if len(r) > n || time.Now().After(deadline) {
			return r
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatewayPassedThrough reads from the gateway's metrics how many requests it
// has passed through to the homeserver: those it does not log (a method it
// does not serve on one of its paths, a harmless spelling the proxy sent it
// by its raw URI).
func gatewayPassedThrough(t *testing.T, metricsAddr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n float64
	for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		n += sample(b, `matrix2fa_http_request_duration_seconds_count{route="passthrough",status="`+class+`"}`)
	}
	return n
}

// canonicalPath is what a path means once decoded and cleaned, in lower case.
func canonicalPath(raw string) string {
	p, err := url.PathUnescape(raw)
	if err != nil {
		p = raw
	}
	return strings.ToLower(path.Clean("/" + p))
}

// splitCase is one request through the proxy.
type splitCase struct {
	name   string
	method string
	path   string // raw request path, sent as is
	query  string
	token  bool   // send the user's access token
	body   string // JSON, or a media body with ctype
	ctype  string
	// gateway: the request must reach the gateway; otherwise it must not.
	gateway bool
	// status and contains, if set, are what the answer must be with the
	// gateway running (the gateway's own answers, or the homeserver's).
	status   int
	contains string
	// nginxRefuses: nginx itself answers 400 (a method it does not parse);
	// it must then reach neither the gateway nor the homeserver.
	nginxRefuses bool
}

func (tc splitCase) do(t *testing.T, base, token string) (int, string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	// Path holds what the raw path means, RawPath the spelling to send:
	// net/http then writes the raw spelling on the wire.
	decoded, err := url.PathUnescape(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	u.Path, u.RawPath, u.RawQuery = decoded, tc.path, tc.query
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	req, err := http.NewRequest(tc.method, u.String(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	if tc.body != "" {
		ct := tc.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if tc.token {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", tc.method, tc.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestProxyConfigSplitRouting generates the nginx and Caddy configurations
// with proxy-config, runs them in front of Dendrite and the gateway, and
// checks that every request that must be checked reaches the gateway (its
// log shows it), in every spelling, and that pass-through requests never do;
// then it stops the gateway: pass-through still works, the rest gets 502.
func TestProxyConfigSplitRouting(t *testing.T) {
	nginxBin := proxyBinary(t, "nginx", "nginx-light", "/usr/sbin/nginx")
	caddyBin := proxyBinary(t, "caddy", "caddy", "/usr/bin/caddy")

	hs := tesths.Dendrite(t)
	user := tesths.RegisterUser(t, hs, "split")
	dir := t.TempDir()

	// The gateway, logging every request it handles (debug, JSON).
	// Its metrics count the requests it passes through, which it does not log.
	cfgPath := filepath.Join(dir, "gateway.yaml")
	metricsAddr := freeAddr(t)
	writeFile(t, cfgPath, fmt.Sprintf("homeserver: %s\nlisten: 127.0.0.1:0\ndata_dir: %s\nlog:\n  level: debug\n  format: json\nmetrics:\n  listen: %s\n",
		hs.URL, filepath.Join(dir, "data"), metricsAddr))
	ctx, cancel := context.WithCancel(context.Background())
	gwOut, gwErr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfgPath}, gwOut, gwErr) }()
	stopped := false
	stopGateway := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("the gateway did not stop")
		}
	}
	t.Cleanup(stopGateway)
	var gwAddr string
	for deadline := time.Now().Add(10 * time.Second); gwAddr == ""; {
		if m := listeningRE.FindStringSubmatch(gwErr.String()); m != nil {
			gwAddr = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not start:\n%s", gwErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	gwLog := gatewayLog{gwErr}

	// The configurations, as an operator makes them.
	generate := func(format string, port int) string {
		file := filepath.Join(dir, format+".conf")
		code, _, stderr := runCLI(t, "proxy-config", format, "--gateway", "http://"+gwAddr, "--homeserver", hs.URL,
			"--http", "--listen", "127.0.0.1:"+strconv.Itoa(port), "--max-body-size", "8M", "-o", file)
		if code != exitOK {
			t.Fatalf("proxy-config %s: exit %d: %s", format, code, stderr)
		}
		return file
	}
	nginxPort, caddyPort := tesths.FreePort(t), tesths.FreePort(t)
	nginxDir := filepath.Join(dir, "nginx")
	if err := os.Mkdir(nginxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	nginxConf := generate("nginx", nginxPort)
	// master_process off: one process that keeps the caller's user (as
	// root, workers would run as nobody, who cannot enter the temp dir).
	nginx := startProxy(t, "nginx", exec.Command(nginxBin, "-c", nginxConf, "-p", nginxDir+"/", "-e", filepath.Join(nginxDir, "error.log"),
		"-g", "daemon off; master_process off;"), nginxPort, filepath.Join(nginxDir, "stderr.log"))
	// The generated Caddyfile leaves Caddy's admin API at its default
	// (localhost:2019, for systemctl reload); here it is turned off, so
	// that the test never meets another Caddy on that port.
	caddyConf := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyConf, "{\n\tadmin off\n}\nimport "+generate("caddy", caddyPort)+"\n")
	caddyCmd := exec.Command(caddyBin, "run", "--config", caddyConf, "--adapter", "caddyfile")
	caddyHome := filepath.Join(dir, "caddy")
	caddyCmd.Env = append(os.Environ(), "HOME="+caddyHome, "XDG_DATA_HOME="+caddyHome, "XDG_CONFIG_HOME="+caddyHome)
	caddy := startProxy(t, "caddy", caddyCmd, caddyPort, filepath.Join(dir, "caddy.log"))

	// Requests that must be checked: every one reaches the gateway (which
	// logs it, or passes it through: a method it does not serve there, a
	// harmless spelling).
	const mediaBody = "hello, media"
	bigBody := strings.Repeat("x", 2<<20) // above nginx's default client_max_body_size (1m)
	mustCheck := []splitCase{
		{name: "login flows", method: "GET", path: "/_matrix/client/v3/login", status: 200, contains: "two-factor sign-in"},
		{name: "login flows, r0", method: "GET", path: "/_matrix/client/r0/login", status: 200, contains: "two-factor sign-in"},
		{name: "login flows, api/v1", method: "GET", path: "/_matrix/client/api/v1/login"}, // Dendrite has no api/v1: 404 through the gateway
		{name: "login flows, trailing slash", method: "GET", path: "/_matrix/client/v3/login/"},
		{name: "login", method: "POST", path: "/_matrix/client/v3/login", body: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nobody"},"password":"x"}`},
		{name: "login token", method: "POST", path: "/_matrix/client/v1/login/get_token", body: `{}`},
		{name: "login token, MSC3882", method: "POST", path: "/_matrix/client/unstable/org.matrix.msc3882/login/token", body: `{}`},
		{name: "sign-in page", method: "GET", path: "/_matrix/client/v3/login/sso/redirect", query: "redirectUrl=http%3A%2F%2Flocalhost%2F"},
		{name: "fallback page", method: "GET", path: "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web", query: "session=x"},
		{name: "two-factor status", method: "GET", path: "/_matrix/client/v3/account/two-factor", token: true, status: 200},
		{name: "self-service page", method: "GET", path: "/_matrix2fa/", status: 200},
		{name: "health", method: "GET", path: "/health", status: 200, contains: `"ok"`},
		{name: "delete_devices", method: "POST", path: "/_matrix/client/v3/delete_devices", body: `{"devices":[]}`},
		{name: "delete_devices, unstable", method: "POST", path: "/_matrix/client/unstable/delete_devices", body: `{}`},
		{name: "delete_devices, unknown prefix", method: "POST", path: "/_matrix/client/v4/delete_devices", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, api/v1", method: "POST", path: "/_matrix/client/api/v1/delete_devices", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, double slash", method: "POST", path: "/_matrix/client/v3//delete_devices", body: `{}`},
		{name: "delete_devices, leading double slash", method: "POST", path: "//_matrix/client/v3/delete_devices", body: `{}`},
		{name: "delete_devices, percent-encoded letter", method: "POST", path: "/_matrix/client/v3/%64elete_devices", body: `{}`},
		{name: "delete_devices, encoded slash", method: "POST", path: "/_matrix/client/v3%2Fdelete_devices", body: `{}`},
		{name: "delete_devices, trailing slash", method: "POST", path: "/_matrix/client/v3/delete_devices/", body: `{}`},
		{name: "delete_devices, dot segment", method: "POST", path: "/_matrix/client/v3/./delete_devices", body: `{}`},
		{name: "delete_devices, dot-dot segment", method: "POST", path: "/_matrix/client/v3/rooms/../delete_devices", body: `{}`},
		{name: "delete_devices, upper case", method: "POST", path: "/_matrix/client/v3/DELETE_DEVICES", body: `{}`},
		{name: "delete_devices, upper-case namespace", method: "POST", path: "/_MATRIX/client/V3/delete_devices", body: `{}`},
		{name: "delete_devices, PUT", method: "PUT", path: "/_matrix/client/v3/delete_devices", body: `{}`},
		{name: "delete_devices, preflight", method: "OPTIONS", path: "/_matrix/client/v3/delete_devices"},
		{name: "delete_devices, lower-case method", method: "post", path: "/_matrix/client/v3/delete_devices", body: `{}`, nginxRefuses: true},
		// Synapse serves delete_devices with anything after it, and reads the
		// raw path: whatever the proxy makes of these, they go to the
		// gateway, which refuses them.
		{name: "delete_devices, suffix", method: "POST", path: "/_matrix/client/v3/delete_devicesX", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, .json", method: "POST", path: "/_matrix/client/v3/delete_devices.json", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, escaped question mark", method: "POST", path: "/_matrix/client/v3/delete_devices%3Fx", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, escaped space", method: "POST", path: "/_matrix/client/unstable/delete_devices%20", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, escaped dot-dot", method: "POST", path: "/_matrix/client/r0/delete_devices%2F%2E%2E", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, dot-dot after it", method: "POST", path: "/_matrix/client/v3/delete_devices/../../v3/sync", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "delete_devices, upper-case suffix", method: "POST", path: "/_matrix/client/v3/DELETE_DEVICESx", body: `{}`, status: 404, contains: "M_UNRECOGNIZED"},
		{name: "password, empty segment", method: "POST", path: "/_matrix/client/v3/account//password", body: `{}`},
		{name: "password, escaped letter and dot-dot", method: "POST", path: "/_matrix/client/v3/account/x/..%2F%70assword", body: `{}`},
		{name: "delete device", method: "DELETE", path: "/_matrix/client/v3/devices/NOSUCHDEVICE", body: `{}`},
		{name: "delete device, r0 double slash", method: "DELETE", path: "/_matrix/client/r0//devices/NOSUCHDEVICE", body: `{}`},
		{name: "password", method: "POST", path: "/_matrix/client/v3/account/password", body: `{}`},
		{name: "deactivate", method: "POST", path: "/_matrix/client/r0/account/deactivate", body: `{}`},
		{name: "3pid", method: "POST", path: "/_matrix/client/v3/account/3pid", body: `{}`},
		{name: "3pid add", method: "POST", path: "/_matrix/client/v3/account/3pid/add", body: `{}`},
		{name: "cross-signing upload", method: "POST", path: "/_matrix/client/unstable/keys/device_signing/upload", body: `{}`},
		{name: "cross-signing upload, encoded", method: "POST", path: "/_matrix/client/v3/keys/device%5Fsigning/upload", body: `{}`},
		{name: "synapse admin", method: "GET", path: "/_synapse/admin/v1/users/@split:localhost", status: 403, contains: "M_FORBIDDEN"},
		{name: "dendrite admin", method: "POST", path: "/_dendrite/admin/evacuateUser/@split:localhost", status: 403, contains: "M_FORBIDDEN"},
		{name: "dendrite admin, encoded", method: "POST", path: "/_dendrite/%61dmin/evacuateUser/@split:localhost", status: 403, contains: "M_FORBIDDEN"},
	}
	// Pass-through requests: none reaches the gateway; the homeserver answers.
	passThrough := []splitCase{
		{name: "versions", method: "GET", path: "/_matrix/client/versions", status: 200, contains: "versions"},
		{name: "whoami", method: "GET", path: "/_matrix/client/v3/account/whoami", token: true, status: 200, contains: user.UserID},
		{name: "sync", method: "GET", path: "/_matrix/client/v3/sync", query: "timeout=0", token: true, status: 200, contains: "next_batch"},
		{name: "pushrules", method: "GET", path: "/_matrix/client/v3/pushrules/", token: true, status: 200},
		{name: "devices list", method: "GET", path: "/_matrix/client/v3/devices", token: true, status: 200, contains: user.DeviceID},
		{name: "keys query", method: "POST", path: "/_matrix/client/v3/keys/query", token: true, body: `{"device_keys":{}}`, status: 200},
		{name: "media upload", method: "POST", path: "/_matrix/media/v3/upload", token: true, body: mediaBody, ctype: "text/plain", status: 200, contains: "mxc://"},
		{name: "media upload above 1 MiB", method: "POST", path: "/_matrix/media/v3/upload", token: true, body: bigBody, ctype: "application/octet-stream", status: 200, contains: "mxc://"},
		// Escaped room and user IDs, as clients send them, and guarded words
		// in the query: still straight to the homeserver.
		{name: "messages, escaped room ID", method: "GET", path: "/_matrix/client/v3/rooms/%21nosuchroom%3Alocalhost/messages", token: true, status: 403},
		{name: "profile, escaped user ID", method: "GET", path: "/_matrix/client/v3/profile/%40split%3Alocalhost", status: 200},
		{name: "versions, guarded words in the query", method: "GET", path: "/_matrix/client/versions", query: "x=delete_devices%2F..&y=login", status: 200, contains: "versions"},
	}

	for i := range mustCheck {
		mustCheck[i].gateway = true
	}
	all := append(mustCheck, passThrough...)

	check := func(t *testing.T, p *proxyProcess, gatewayUp bool) {
		for _, tc := range all {
			t.Run(tc.name, func(t *testing.T) {
				before := len(gwLog.requests())
				var passedBefore float64
				if gatewayUp {
					passedBefore = gatewayPassedThrough(t, metricsAddr)
				}
				status, body := tc.do(t, p.base, user.AccessToken)
				if tc.nginxRefuses && p.name == "nginx" {
					if status != http.StatusBadRequest {
						t.Fatalf("got %d %s; want nginx's 400", status, tail(body, 3))
					}
					tc.gateway = false // and not the homeserver either: nginx answered
				}
				if !gatewayUp {
					switch {
					case tc.gateway && status != http.StatusBadGateway:
						t.Fatalf("with the gateway stopped got %d %s; want 502 (the request must go to the gateway)", status, tail(body, 3))
					case !tc.gateway && status == http.StatusBadGateway:
						t.Fatalf("with the gateway stopped got 502 %s; a pass-through request must not need the gateway", tail(body, 3))
					case !tc.gateway && tc.status != 0 && status != tc.status:
						t.Fatalf("with the gateway stopped got %d %s; want %d", status, tail(body, 3), tc.status)
					}
					return
				}
				if tc.status != 0 && status != tc.status {
					t.Errorf("got %d %s; want %d", status, tail(body, 3), tc.status)
				}
				if tc.contains != "" && !strings.Contains(body, tc.contains) {
					t.Errorf("answer %d %s does not contain %q", status, tail(body, 3), tc.contains)
				}
				if tc.gateway {
					reqs := gwLog.waitRequests(before)
					if len(reqs) <= before {
						// Not logged: the gateway may have passed it through.
						if gatewayPassedThrough(t, metricsAddr) > passedBefore {
							return
						}
						t.Fatalf("did not reach the gateway (answer %d %s)", status, tail(body, 3))
					}
					got := reqs[len(reqs)-1]
					if !strings.EqualFold(got.Method, tc.method) || canonicalPath(got.Path) != canonicalPath(tc.path) {
						t.Errorf("the gateway saw %s %s; want %s %s", got.Method, got.Path, tc.method, tc.path)
					}
					return
				}
				// A request to the gateway after it: once that is logged, the
				// log would hold this one too had it gone there.
				sentinel := splitCase{method: "GET", path: "/health"}
				sentinel.do(t, p.base, "")
				reqs := gwLog.waitRequests(before)
				if len(reqs) != before+1 || reqs[len(reqs)-1].Path != "/health" {
					t.Fatalf("the gateway saw %+v; want only the sentinel GET /health", reqs[before:])
				}
				if n := gatewayPassedThrough(t, metricsAddr); n != passedBefore {
					t.Fatalf("the gateway passed %v requests through; want none (the proxy must send this straight to the homeserver)", n-passedBefore)
				}
			})
		}
	}
	for _, p := range []*proxyProcess{nginx, caddy} {
		t.Run(p.name, func(t *testing.T) { check(t, p, true) })
	}
	stopGateway()
	for _, p := range []*proxyProcess{nginx, caddy} {
		t.Run(p.name+" without the gateway", func(t *testing.T) { check(t, p, false) })
	}
}

// TestProxyConfigFilesLoad: every kind of file proxy-config writes (TLS or
// plain, whole file or fragment, https upstreams) loads in nginx (nginx -t)
// and Caddy (caddy validate).
func TestProxyConfigFilesLoad(t *testing.T) {
	nginxBin := proxyBinary(t, "nginx", "nginx-light", "/usr/sbin/nginx")
	caddyBin := proxyBinary(t, "caddy", "caddy", "/usr/bin/caddy")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, cert, key)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"nginx plain", []string{"nginx", "--http", "--listen", "127.0.0.1:8080"}},
		{"nginx TLS, https upstreams", []string{"nginx", "--tls-cert", cert, "--tls-key", key, "--server-name", "matrix.example.org",
			"--gateway", "https://127.0.0.1:8009", "--homeserver", "https://localhost:8448", "--max-body-size", "100M"}},
		{"nginx fragment", []string{"nginx", "--fragment", "--http", "--listen", "[::1]:8080"}},
		{"caddy plain", []string{"caddy", "--http", "--listen", "127.0.0.1:8080", "--server-name", "matrix.example.org"}},
		{"caddy TLS files", []string{"caddy", "--tls-cert", cert, "--tls-key", key, "--listen", "8448", "--homeserver", "https://localhost:8448"}},
		{"caddy automatic HTTPS", []string{"caddy", "--server-name", "matrix.example.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			file := filepath.Join(sub, "generated.conf")
			if code, _, stderr := runCLI(t, append([]string{"proxy-config"}, append(tc.args, "-o", file)...)...); code != exitOK {
				t.Fatalf("proxy-config: exit %d: %s", code, stderr)
			}
			var cmd *exec.Cmd
			switch {
			case tc.args[0] == "nginx" && containsArg(tc.args, "--fragment"):
				mainFile := filepath.Join(sub, "main.conf")
				writeFile(t, mainFile, "pid nginx.pid;\nevents {}\nhttp {\n\tinclude "+file+";\n}\n")
				file = mainFile
				fallthrough
			case tc.args[0] == "nginx":
				cmd = exec.Command(nginxBin, "-t", "-c", file, "-p", sub+"/", "-e", filepath.Join(sub, "error.log"))
			default:
				cmd = exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile")
				cmd.Env = append(os.Environ(), "HOME="+sub, "XDG_DATA_HOME="+sub, "XDG_CONFIG_HOME="+sub)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				b, _ := os.ReadFile(file)
				t.Fatalf("%s: %v\n%s\nfile:\n%s", cmd, err, out, b)
			}
		})
	}
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// writeSelfSigned writes a throwaway self-signed certificate and key (PEM).
func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "matrix.example.org"},
		DNSNames: []string{"matrix.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
}
