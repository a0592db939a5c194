package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// Red team: split routing (proxy-config nginx|caddy) in front of Synapse.
//
// Synapse registers DeleteDevicesRestServlet with
// client_patterns("/delete_devices") — no "$" — and routes with
// pattern.match(request.path) on the raw (undecoded) path, so it serves
// POST /_matrix/client/v3/delete_devicesANYTHING as delete_devices. The
// gateway knows this (its guarded regexp has "delete_devices.*" and refuses
// such spellings), but the generated proxy rules only send
// "delete_devices(?:/|$)" to the gateway. Under split routing such a request
// goes straight to the homeserver, which then deletes devices with the
// password alone (Synapse's own UIA asks only m.login.password).
//
// The homeserver here is a recorder that routes the way Synapse does (start
// anchored, raw path); the gateway upstream is a recorder too. The test fails
// when a request Synapse would serve as delete_devices reaches the homeserver.

type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.EscapedPath())
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{}`))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.seen
	r.seen = nil
	return out
}

// synapseDeleteDevices is Synapse's pattern for the servlet (client_patterns:
// r0, v3, unstable), matched with re.match on the raw path.
var synapseDeleteDevices = regexp.MustCompile(`^/_matrix/client/(r0|v3|unstable)/delete_devices`)

func TestRedteamProxyConfigDeleteDevicesSuffixReachesSynapse(t *testing.T) {
	nginxBin := proxyBinary(t, "nginx", "nginx-light", "/usr/sbin/nginx")
	caddyBin := proxyBinary(t, "caddy", "caddy", "/usr/bin/caddy")
	gw, hs := &recorder{}, &recorder{}
	gwSrv, hsSrv := httptest.NewServer(gw), httptest.NewServer(hs)
	defer gwSrv.Close()
	defer hsSrv.Close()
	dir := t.TempDir()
	gwURL, _ := url.Parse(gwSrv.URL)
	generate := func(format string, port int) string {
		file := filepath.Join(dir, format+".conf")
		code, _, stderr := runCLI(t, "proxy-config", format, "--gateway", "http://"+gwURL.Host, "--homeserver", hsSrv.URL,
			"--http", "--listen", "127.0.0.1:"+strconv.Itoa(port), "--max-body-size", "8M", "-o", file)
		if code != exitOK {
			t.Fatalf("proxy-config %s: exit %d: %s", format, code, stderr)
		}
		return file
	}
	nginxPort, caddyPort := tesths.FreePort(t), tesths.FreePort(t)
	nginxDir := filepath.Join(dir, "nginx")
	os.Mkdir(nginxDir, 0o700)
	nginx := startProxy(t, "nginx", exec.Command(nginxBin, "-c", generate("nginx", nginxPort), "-p", nginxDir+"/", "-e", filepath.Join(nginxDir, "error.log"),
		"-g", "daemon off; master_process off;"), nginxPort, filepath.Join(nginxDir, "stderr.log"))
	caddyConf := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyConf, "{\n\tadmin off\n}\nimport "+generate("caddy", caddyPort)+"\n")
	caddyCmd := exec.Command(caddyBin, "run", "--config", caddyConf, "--adapter", "caddyfile")
	caddyHome := filepath.Join(dir, "caddy")
	caddyCmd.Env = append(os.Environ(), "HOME="+caddyHome, "XDG_DATA_HOME="+caddyHome, "XDG_CONFIG_HOME="+caddyHome)
	caddy := startProxy(t, "caddy", caddyCmd, caddyPort, filepath.Join(dir, "caddy.log"))
	gw.take()
	hs.take()

	paths := []string{
		"/_matrix/client/v3/delete_devices",          // control: reaches the gateway
		"/_matrix/client/v3/delete_devicesX",         // Synapse: delete_devices
		"/_matrix/client/v3/delete_devices.json",     // Synapse: delete_devices
		"/_matrix/client/r0/delete_devices%2F%2E%2E", // normalised by the proxy to /_matrix/client/r0
		"/_matrix/client/v3/delete_devices%3Fx",      // Synapse: delete_devices
		"/_matrix/client/unstable/delete_devices%20", // Synapse: delete_devices
		// More of the same class: anything after delete_devices, in the raw
		// path, whatever the proxy's normalised path says.
		"/_matrix/client/r0/delete_devices%2f%2e%2e",         // lower-case escapes
		"/_matrix/client/v3/delete_devices%2F..%2F..%2Fsync", // normalised: /_matrix/client/sync
		"/_matrix/client/v3/delete_devices/../../v3/sync",    // normalised: /_matrix/client/v3/sync
		"/_matrix/client/v3/delete_devices/./",               // normalised: …/delete_devices/
		"/_matrix/client/v3/delete_devices;x",
		"/_matrix/client/v3/delete_devices%23x",
		"/_matrix/client/v3/delete_devices%00",
		"/_matrix/client/v3/delete_devices%252F%252E%252E",
		"/_matrix/client/unstable/delete_devices..",
		"/_matrix/client/r0/delete_devices-",
	}
	var bypass []string
	for _, p := range []*proxyProcess{nginx, caddy} {
		for _, raw := range paths {
			u, _ := url.Parse(p.base)
			decoded, _ := url.PathUnescape(raw)
			u.Path, u.RawPath = decoded, raw
			req, _ := http.NewRequest("POST", u.String(), strings.NewReader(`{"devices":["VICTIMDEVICE"],"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":"victim"},"password":"hunter2"}}`))
			req.URL = u
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer STOLEN")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", p.name, raw, err)
			}
			resp.Body.Close()
			for _, got := range hs.take() {
				path := strings.TrimPrefix(got, "POST ")
				if synapseDeleteDevices.MatchString(path) {
					bypass = append(bypass, fmt.Sprintf("%s: POST %s reached the homeserver unchecked (Synapse serves it as delete_devices)", p.name, raw))
				}
			}
			gw.take()
			// The same in absolute form (POST http://host/path HTTP/1.1),
			// which a proxy may keep whole in its raw request URI.
			host := strings.TrimPrefix(p.base, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			fmt.Fprintf(conn, "POST http://%s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", host, raw, host)
			io.Copy(io.Discard, conn)
			conn.Close()
			for _, got := range hs.take() {
				if synapseDeleteDevices.MatchString(strings.TrimPrefix(got, "POST ")) {
					bypass = append(bypass, fmt.Sprintf("%s: POST http://…%s (absolute form) reached the homeserver unchecked (Synapse serves it as delete_devices)", p.name, raw))
				}
			}
			gw.take()
		}
	}
	if len(bypass) > 0 {
		t.Errorf("split routing sends delete_devices spellings Synapse serves straight to the homeserver:\n  %s", strings.Join(bypass, "\n  "))
	}
}
