package benchtool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process (nginx, the gateway) with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts cmd with its output in logPath and waits until GET
// readyURL answers 200.
func startProc(ctx context.Context, name string, cmd *exec.Cmd, logPath, readyURL string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start: %s", name, tailFile(logPath))
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("%s not ready at %s: %s", name, readyURL, tailFile(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process group with SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// rss returns the process's resident set and its peak (VmRSS, VmHWM) in bytes.
func (p *proc) rss() (cur, peak int64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			cur = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if cur == 0 {
		return 0, 0, errors.New("no VmRSS")
	}
	return cur, peak, nil
}

func tailFile(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// nginxBaseline is nginx as an operator runs it in front of the homeserver
// alone: the same upstream and proxy settings as the generated split-routing
// configuration (proxyconf), every path to the homeserver.
const nginxBaseline = `worker_processes auto;
pid nginx.pid;
error_log error.log;
events {
	worker_connections 1024;
}
http {
	access_log off;
	client_body_temp_path client_body_temp;
	proxy_temp_path proxy_temp;
	fastcgi_temp_path fastcgi_temp;
	uwsgi_temp_path uwsgi_temp;
	scgi_temp_path scgi_temp;
	upstream matrix2fa_homeserver {
		server %s;
		keepalive 64;
	}
	server {
		listen %s;
		client_max_body_size 50m;
		merge_slashes on;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_set_header Host $host;
		proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
		proxy_set_header X-Forwarded-Proto $scheme;
		location / {
			proxy_pass http://matrix2fa_homeserver;
		}
	}
}
`

// startNginx runs nginx (master and one worker per CPU) with the
// configuration conf in dir, listening on addr.
func startNginx(ctx context.Context, name, dir, conf, addr string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // Debian's, off a non-root PATH
	}
	cmd := exec.Command(bin, "-c", file, "-p", dir+"/", "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	return startProc(ctx, name, cmd, filepath.Join(dir, "stderr.log"), "http://"+addr+"/_matrix/client/versions")
}
