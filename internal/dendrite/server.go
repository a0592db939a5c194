package dendrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Files that Start creates in the server directory.
const (
	KeyFile    = "matrix_key.pem"
	ConfigFile = "dendrite.yaml"
	LogFile    = "dendrite.log"
)

// Options configures Start.
type Options struct {
	// BinDir holds the binaries listed in Binaries, usually the result of Build.
	BinDir string
	// Dir is the server's working directory (key, config, SQLite files, log).
	// An existing key and config in Dir are reused, so a persistent Dir keeps
	// accounts across restarts. When empty, Start makes a temporary directory
	// that Stop removes.
	Dir string
	// ServerName is the Matrix server name; "localhost" when empty.
	ServerName string
	// LogLevel is Dendrite's log level for a newly generated config: "trace",
	// "debug", "info" (the default), "warn" or "error".
	LogLevel string
	// ReadyTimeout bounds the wait for /_matrix/client/versions to answer 200;
	// 60 seconds when zero.
	ReadyTimeout time.Duration
	// RegistrationDisabled turns registration off in a newly generated
	// config (POST /register answers 403 M_FORBIDDEN; the shared-secret
	// admin registration still works).
	RegistrationDisabled bool
}

// Server is a running Dendrite monolith listening on a loopback port.
type Server struct {
	URL        string // http://127.0.0.1:PORT, no trailing slash
	ServerName string // e.g. "localhost"
	Dir        string // working directory
	LogPath    string // Dendrite's stdout and stderr

	client *http.Client
	cmd    *exec.Cmd
	log    *os.File
	ownDir bool

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start generates a signing key and a CI config (SQLite files, in-memory
// JetStream, no rate limiting, open registration unless
// opts.RegistrationDisabled) in opts.Dir unless they
// already exist, starts Dendrite on a free 127.0.0.1 port and waits until it
// answers GET /_matrix/client/versions with 200. Only plain HTTP is served:
// Dendrite opens its HTTPS listener only when given a certificate. Errors
// include the tail of Dendrite's log. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.BinDir == "" {
		return nil, errors.New("dendrite: Options.BinDir is empty (see Build)")
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("dendrite: missing binary (see Build): %w", err)
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}

	s := &Server{ServerName: opts.ServerName, client: &http.Client{Timeout: 30 * time.Second}}
	var err error
	if opts.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "dendrite-"); err != nil {
			return nil, fmt.Errorf("dendrite: %w", err)
		}
		s.ownDir = true
	} else {
		if s.Dir, err = filepath.Abs(opts.Dir); err == nil {
			err = os.MkdirAll(s.Dir, 0o755)
		}
		if err != nil {
			return nil, fmt.Errorf("dendrite: %w", err)
		}
	}
	fail := func(err error) (*Server, error) {
		if s.ownDir {
			_ = os.RemoveAll(s.Dir)
		}
		return nil, err
	}
	if err := s.prepare(ctx, opts); err != nil {
		return fail(err)
	}
	s.LogPath = filepath.Join(s.Dir, LogFile)
	if s.log, err = os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return fail(fmt.Errorf("dendrite: %w", err))
	}

	// The free port may be taken between choosing and binding it; retry then.
	const attempts = 3
	for i := 1; ; i++ {
		err := s.launch(ctx, opts)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) || i == attempts {
			_ = s.log.Close()
			return fail(err)
		}
	}
}

var errAddrInUse = errors.New("address already in use")

// prepare writes the signing key and the config unless they exist.
func (s *Server) prepare(ctx context.Context, opts Options) error {
	if _, err := os.Stat(filepath.Join(s.Dir, KeyFile)); errors.Is(err, os.ErrNotExist) {
		if _, err := s.run(ctx, opts.BinDir, "generate-keys", "--private-key", KeyFile); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(s.Dir, ConfigFile)
	if _, err := os.Stat(cfgPath); !errors.Is(err, os.ErrNotExist) {
		return err // nil: reuse the existing config
	}
	cfg, err := s.run(ctx, opts.BinDir, "generate-config", "-ci", "-dir", s.Dir, "-server", opts.ServerName)
	if err != nil {
		return err
	}
	// -ci logs at trace level to stdout: several lines per request.
	const traceHook = "logging:\n- type: std\n  level: trace\n"
	if !bytes.Contains(cfg, []byte(traceHook)) {
		return fmt.Errorf("dendrite: generate-config -ci output has no %q", traceHook)
	}
	cfg = bytes.Replace(cfg, []byte(traceHook), []byte("logging:\n- type: std\n  level: "+opts.LogLevel+"\n"), 1)
	if opts.RegistrationDisabled {
		const open = "registration_disabled: false\n"
		if !bytes.Contains(cfg, []byte(open)) {
			return fmt.Errorf("dendrite: generate-config -ci output has no %q", open)
		}
		cfg = bytes.Replace(cfg, []byte(open), []byte("registration_disabled: true\n"), 1)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("dendrite: %w", err)
	}
	return nil
}

// run runs one of the helper binaries in s.Dir and returns its stdout.
func (s *Server) run(ctx context.Context, binDir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Dir = s.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dendrite: %s %v: %w\n%s", name, args, err, tail(stderr.Bytes(), 20))
	}
	return stdout.Bytes(), nil
}

// launch starts the dendrite process on a fresh port and waits for readiness.
func (s *Server) launch(ctx context.Context, opts Options) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logStart, _ := s.log.Seek(0, io.SeekEnd)

	cmd := exec.Command(filepath.Join(opts.BinDir, "dendrite"),
		"--config", filepath.Join(s.Dir, ConfigFile),
		"--http-bind-address", addr,
		"--really-enable-open-registration",
	)
	cmd.Dir = s.Dir
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dendrite: start: %w", err)
	}
	s.cmd = cmd
	s.URL = "http://" + addr
	s.done = make(chan struct{})
	s.waitErr = nil
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()

	err = s.waitReady(ctx, opts.ReadyTimeout)
	if err == nil {
		return nil
	}
	s.kill()
	newLog := s.logSince(logStart)
	if bytes.Contains(newLog, []byte(errAddrInUse.Error())) {
		return fmt.Errorf("dendrite: %s: %w", addr, errAddrInUse)
	}
	return fmt.Errorf("%w; log %s ends with:\n%s", err, s.LogPath, tail(newLog, 30))
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	probe := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/_matrix/client/versions", nil)
		if err != nil {
			return fmt.Errorf("dendrite: %w", err)
		}
		if resp, err := probe.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("dendrite: exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("dendrite: waiting for %s: %w", s.URL, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("dendrite: %s not ready after %s", s.URL, timeout)
		case <-tick.C:
		}
	}
}

// kill stops the process at once and waits for it.
func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Stop sends SIGTERM, waits up to 10 seconds, then sends SIGKILL. It removes
// the directory if Start created it. It returns an error if Dendrite had
// already exited on its own (a crash) or had to be killed. Calling Stop again
// returns the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.done:
			s.stopErr = fmt.Errorf("dendrite: exited before Stop: %v; log %s ends with:\n%s",
				s.waitErr, s.LogPath, s.LogTail(30))
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				s.kill()
				s.stopErr = errors.New("dendrite: did not exit within 10s of SIGTERM; killed")
			}
		}
		_ = s.log.Close()
		if s.ownDir {
			if err := os.RemoveAll(s.Dir); err != nil && s.stopErr == nil {
				s.stopErr = fmt.Errorf("dendrite: %w", err)
			}
		}
	})
	return s.stopErr
}

// LogTail returns the last n lines of Dendrite's log.
func (s *Server) LogTail(n int) string {
	return tail(s.logSince(0), n)
}

// logSince reads the log from offset, at most the last 256 KiB of it.
func (s *Server) logSince(offset int64) []byte {
	f, err := os.Open(s.LogPath)
	if err != nil {
		return []byte(err.Error())
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 256<<10 {
		offset = fi.Size() - 256<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return []byte(err.Error())
	}
	b, _ := io.ReadAll(f)
	return b
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dendrite: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
