package main

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
)

const testHomeserver = "http://127.0.0.1:8008"

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCLI runs the program with args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// testCLI is a cli with the given stdin, for commands that read it.
func testCLI(stdin string, tty bool) (*cli, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	env := map[string]string{"USER": "tester"}
	return &cli{
		stdout: &out, stderr: &errOut, stdin: strings.NewReader(stdin), stdinTTY: tty,
		getenv: func(k string) string { return env[k] },
	}, &out, &errOut
}

// testConfig is a valid configuration over a fresh data directory, with cheap
// recovery-code hashing.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Homeserver = testHomeserver
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.TwoFactor.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	return cfg
}

func quietLogger() (*logrus.Logger, *logtest.Hook) {
	return logtest.NewNullLogger()
}

// mustOpenCore opens the core for cfg, failing the test on error.
func mustOpenCore(t *testing.T, cfg config.Config) *core {
	t.Helper()
	log, _ := quietLogger()
	c, err := openCore(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("openCore: %v", err)
	}
	return c
}

// enrol gives user a confirmed authenticator and returns its secret.
func enrol(t *testing.T, svc *account.Service, user string) []byte {
	t.Helper()
	ctx := context.Background()
	e, err := svc.Enrol(ctx, user)
	if err != nil {
		t.Fatalf("Enrol: %v", err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
	if err != nil {
		t.Fatalf("decode secret: %v", err)
	}
	code, err := account.CodeAt(secret, account.Step(time.Now(), svc.Params().Period), svc.Params())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Confirm(ctx, user, code); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	return secret
}

// nextCode is the code of the step after now: newer than any code accepted
// so far, and still inside the ±1 step window.
func nextCode(t *testing.T, secret []byte, p account.Params) string {
	t.Helper()
	code, err := account.CodeAt(secret, account.Step(time.Now(), p.Period)+1, p)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no arguments", nil, exitUsage, "", "Usage:"},
		{"help flag", []string{"--help"}, exitOK, "admin rotate-key", ""},
		{"help command", []string{"help"}, exitOK, "generate-config", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"demo takes no arguments", []string{"demo", "extra"}, exitUsage, "", "demo"},
		{"admin without subcommand", []string{"admin"}, exitUsage, "", "missing subcommand"},
		{"unknown admin subcommand", []string{"admin", "nuke"}, exitUsage, "", `unknown subcommand "nuke"`},
		{"unknown flag", []string{"serve", "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{"serve help", []string{"serve", "--help"}, exitOK, "", "--listen"},
		{"stray argument", []string{"serve", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{"status without user", []string{"admin", "status"}, exitUsage, "", "want USER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, stderr)
			}
		})
	}
}

func TestGenerateConfig(t *testing.T) {
	t.Run("stdout", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "generate-config", "--homeserver", testHomeserver, "--data-dir", "/srv/2fa")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		want := config.Default()
		want.Homeserver, want.DataDir = testHomeserver, "/srv/2fa"
		if stdout != string(config.Template(want)) {
			t.Errorf("stdout is not the template:\n%s", stdout)
		}
	})

	t.Run("file, no overwrite without --force", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if code, _, stderr := runCLI(t, "generate-config", "--homeserver", testHomeserver, "-o", path); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("config file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Homeserver != testHomeserver {
			t.Errorf("homeserver = %q", cfg.Homeserver)
		}

		writeFile(t, path, "# mine\n")
		code, _, stderr := runCLI(t, "generate-config", "--homeserver", testHomeserver, "-o", path)
		if code == exitOK || !strings.Contains(stderr, "--force") {
			t.Errorf("overwrite without --force: exit %d, stderr %q; want a refusal naming --force", code, stderr)
		}
		if got := readFile(t, path); got != "# mine\n" {
			t.Errorf("file was changed to:\n%s", got)
		}
		if code, _, stderr := runCLI(t, "generate-config", "--homeserver", testHomeserver, "-o", path, "--force"); code != exitOK {
			t.Fatalf("--force: exit %d: %s", code, stderr)
		}
		if got := readFile(t, path); !strings.Contains(got, testHomeserver) {
			t.Errorf("--force did not overwrite:\n%s", got)
		}
	})

	t.Run("invalid homeserver", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "generate-config", "--homeserver", "localhost:8008")
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "homeserver:") {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 naming homeserver", code, stdout, stderr)
		}
	})
}

var listeningRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// startServe runs serve with args in the background; it returns the address
// once the server listens, and a stop function returning run's exit code.
func startServe(t *testing.T, args ...string) (addr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), &stdout, &stderr) }()
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatalf("serve did not stop after its context was cancelled; stderr:\n%s", stderr.String())
			return -1
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited with %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	t.Fatalf("serve did not log its address; stderr:\n%s", stderr.String())
	return "", nil
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "config.yaml")
	if code, _, stderr := runCLI(t, "generate-config", "--homeserver", testHomeserver, "--data-dir", dataDir, "-o", cfgPath); code != exitOK {
		t.Fatalf("generate-config: exit %d: %s", code, stderr)
	}

	addr, stop := startServe(t, "--config", cfgPath, "--listen", "127.0.0.1:0")
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var health map[string]string
	if err := json.Unmarshal(body, &health); err != nil || health["status"] != "ok" {
		t.Errorf("body = %s (%v), want {\"status\":\"ok\"}", body, err)
	}
	// Anything not ours goes to the homeserver, which in this test does not
	// exist: the gateway answers 502 with a Matrix error, never a hang or a 500.
	if resp, err := http.Post("http://"+addr+"/_matrix/client/v3/sync", "application/json", nil); err != nil {
		t.Errorf("pass-through request: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("pass-through to an absent homeserver = %d, want 502", resp.StatusCode)
		}
	}
	if code := stop(); code != exitOK {
		t.Errorf("serve exit code after cancel = %d, want 0", code)
	}

	for _, name := range []string{"secret.key", "matrix-2fa.db"} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}

	// A second start uses the same key file and database.
	key := readFile(t, filepath.Join(dataDir, "secret.key"))
	_, stop = startServe(t, "--homeserver", testHomeserver, "--data-dir", dataDir, "--listen", "127.0.0.1:0")
	if code := stop(); code != exitOK {
		t.Errorf("second serve exit code = %d", code)
	}
	if got := readFile(t, filepath.Join(dataDir, "secret.key")); got != key {
		t.Error("the key file changed on the second start")
	}
}

func TestServeInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	badFile := filepath.Join(dir, "bad.yaml")
	writeFile(t, badFile, "homeserver: ftp://example.org\nlisten: \"8009\"\nlog:\n  level: loud\n"+
		"two_factor:\n  digits: 7\ndata_dir: "+dataDir+"\n")
	unknownKey := filepath.Join(dir, "unknown.yaml")
	writeFile(t, unknownKey, "homeserver: "+testHomeserver+"\nlisten_address: 1.2.3.4:5\n")

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"every problem in the file", []string{"--config", badFile},
			[]string{"homeserver:", "listen:", "log.level:", "two_factor:"}},
		{"flags are validated too", []string{"--homeserver", "example.org", "--listen", "nowhere", "--data-dir", dataDir},
			[]string{"homeserver:", "listen:"}},
		{"no homeserver at all", []string{"--data-dir", dataDir, "--listen", "127.0.0.1:0"}, []string{"homeserver: required"}},
		{"unknown key", []string{"--config", unknownKey}, []string{"listen_address"}},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"serve"}, tc.args...)...)
			if code != exitUsage {
				t.Errorf("exit code = %d, want 2", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if exists(dataDir) {
				t.Errorf("an invalid configuration created the data directory")
			}
		})
	}
}

func TestServeWrongKey(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, cfg config.Config) []string // returns extra serve args
	}{
		{"inline key in config", func(t *testing.T, cfg config.Config) []string {
			path := filepath.Join(t.TempDir(), "config.yaml")
			c := cfg
			c.Key = account.EncodeKey(account.NewKey())
			writeFile(t, path, string(config.Template(c)))
			return []string{"--config", path}
		}},
		{"replaced key file", func(t *testing.T, cfg config.Config) []string {
			os.Remove(cfg.KeyFilePath())
			if err := account.WriteKeyFile(cfg.KeyFilePath(), account.NewKey()); err != nil {
				t.Fatal(err)
			}
			return []string{"--data-dir", cfg.DataDir, "--homeserver", testHomeserver}
		}},
		{"lost key file", func(t *testing.T, cfg config.Config) []string {
			if err := os.Remove(cfg.KeyFilePath()); err != nil {
				t.Fatal(err)
			}
			return []string{"--data-dir", cfg.DataDir, "--homeserver", testHomeserver}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			c := mustOpenCore(t, cfg)
			enrol(t, c.svc, "@alice:example.org")
			c.Close()
			extra := tc.setup(t, cfg)
			keyBefore, _ := os.ReadFile(cfg.KeyFilePath())

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			code := run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, extra...), &stdout, &stderr)
			if code != exitError {
				t.Errorf("exit code = %d, want 1", code)
			}
			out := stderr.String()
			for _, w := range []string{"does not match the database", "refusing to start"} {
				if !strings.Contains(out, w) {
					t.Errorf("stderr does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "listening on") {
				t.Errorf("serve listened with a wrong key:\n%s", out)
			}
			keyAfter, _ := os.ReadFile(cfg.KeyFilePath())
			if !bytes.Equal(keyBefore, keyAfter) {
				t.Errorf("the key file changed: before %d bytes, after %d bytes", len(keyBefore), len(keyAfter))
			}
		})
	}
}

func TestOpenCoreWrongKeyIsErrWrongKey(t *testing.T) {
	cfg := testConfig(t)
	mustOpenCore(t, cfg).Close()
	cfg.Key = account.EncodeKey(account.NewKey())
	log, _ := quietLogger()
	c, err := openCore(context.Background(), cfg, log)
	if err == nil {
		c.Close()
		t.Fatal("openCore with a wrong key succeeded")
	}
	if !errors.Is(err, account.ErrWrongKey) {
		t.Errorf("error %v does not wrap account.ErrWrongKey", err)
	}
}

func TestAdminStatus(t *testing.T) {
	cfg := testConfig(t)
	c := mustOpenCore(t, cfg)
	enrol(t, c.svc, "@alice:example.org")
	c.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in stdout, or stderr when the code is not 0
	}{
		{"enrolled user", []string{"@alice:example.org"}, exitOK,
			[]string{"enabled:", "yes", "enabled_at:", "pending enrolment:", "recovery codes remaining:", strconv.Itoa(config.Default().TwoFactor.RecoveryCodes),
				"generated_at:", "audit events", "confirm"}},
		{"unknown user", []string{"@bob:example.org"}, exitOK, []string{"not enabled", "audit events: none"}},
		{"flag after user", []string{"@bob:example.org", "--data-dir", cfg.DataDir}, exitOK, []string{"not enabled"}},
		{"no sigil", []string{"alice:example.org"}, exitUsage, []string{"not a Matrix user ID"}},
		{"no server", []string{"@alice"}, exitUsage, []string{"not a Matrix user ID"}},
		{"empty localpart", []string{"@:example.org"}, exitUsage, []string{"not a Matrix user ID"}},
		{"bad server name", []string{"@alice:exa mple.org"}, exitUsage, []string{"not a Matrix user ID"}},
		{"two users", []string{"@a:example.org", "@b:example.org"}, exitUsage, []string{"want USER"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"admin", "status", "--data-dir", cfg.DataDir}, tc.args...)
			code, stdout, stderr := runCLI(t, args...)
			if code != tc.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			out := stdout
			if code != exitOK {
				out = stderr
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("no database", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "typo")
		code, _, stderr := runCLI(t, "admin", "status", "--data-dir", missing, "@alice:example.org")
		if code != exitError || !strings.Contains(stderr, "no database") {
			t.Errorf("exit %d, stderr %q; want 1 and 'no database'", code, stderr)
		}
		if exists(missing) {
			t.Error("admin status created a data directory")
		}
	})
}

func TestAdminReset(t *testing.T) {
	const alice = "@alice:example.org"
	cfg := testConfig(t)
	c := mustOpenCore(t, cfg)
	enrol(t, c.svc, alice)
	c.Close()
	enabled := func(t *testing.T) bool {
		t.Helper()
		c := mustOpenCore(t, cfg)
		defer c.Close()
		ok, err := c.svc.Enabled(context.Background(), alice)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	args := []string{"admin", "reset", "--data-dir", cfg.DataDir}

	tests := []struct {
		name        string
		args        []string
		stdin       string
		tty         bool
		wantCode    int
		wantStderr  string
		wantEnabled bool
	}{
		{"no --yes and no terminal", []string{alice}, "", false, exitUsage, "pass --yes", true},
		{"terminal, wrong confirmation", []string{alice}, "@bob:example.org\n", true, exitError, "not confirmed", true},
		{"terminal, no answer", []string{alice}, "", true, exitError, "not confirmed", true},
		{"bad user ID", []string{"--yes", "alice"}, "", false, exitUsage, "not a Matrix user ID", true},
		{"terminal, confirmed", []string{alice}, alice + "\n", true, exitOK, "Type the user ID", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, _, stderr := testCLI(tc.stdin, tc.tty)
			if code := cl.run(context.Background(), append(args, tc.args...)); code != tc.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, stderr)
			}
			if got := enabled(t); got != tc.wantEnabled {
				t.Errorf("enabled after = %v, want %v", got, tc.wantEnabled)
			}
		})
	}

	t.Run("--yes", func(t *testing.T) {
		c := mustOpenCore(t, cfg)
		enrol(t, c.svc, alice)
		c.Close()
		code, stdout, stderr := runCLI(t, append(args, "--yes", alice)...)
		if code != exitOK || !strings.Contains(stdout, "reset two-factor authentication of "+alice) {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if enabled(t) {
			t.Error("still enabled after reset --yes")
		}
		_, status, _ := runCLI(t, "admin", "status", "--data-dir", cfg.DataDir, alice)
		if !strings.Contains(status, "admin_reset") || !strings.Contains(status, "not enabled") {
			t.Errorf("status after reset does not show the reset:\n%s", status)
		}
		c = mustOpenCore(t, cfg)
		defer c.Close()
		events, err := c.svc.AuditEvents(context.Background(), alice, 1)
		if err != nil || len(events) != 1 || events[0].Kind != "admin_reset" || !strings.HasPrefix(events[0].Detail, "by ") {
			t.Errorf("newest audit event = %+v (%v), want admin_reset by the operator", events, err)
		}
		code, stdout, _ = runCLI(t, append(args, "--yes", alice)...)
		if code != exitOK || !strings.Contains(stdout, "nothing to delete") {
			t.Errorf("second reset: exit %d, stdout %q", code, stdout)
		}
	})
}

func TestOperator(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SUDO_USER": "root-by-ann", "USER": "root"}, "root-by-ann"},
		{map[string]string{"USER": "ann"}, "ann"},
		{map[string]string{}, "admin-cli"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			c := &cli{getenv: func(k string) string { return tc.env[k] }}
			if got := c.operator(); got != tc.want {
				t.Errorf("operator = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRotateKey(t *testing.T) {
	const alice, bob = "@alice:example.org", "@bob:example.org"
	ctx := context.Background()
	cfg := testConfig(t)
	c := mustOpenCore(t, cfg)
	secretA := enrol(t, c.svc, alice)
	secretB := enrol(t, c.svc, bob)
	c.Close()
	keyPath := cfg.KeyFilePath()
	oldKey := readFile(t, keyPath)
	// A stale .new from an attempt that failed before its commit.
	if err := account.WriteKeyFile(keyPath+".new", account.NewKey()); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCLI(t, "admin", "rotate-key", "--data-dir", cfg.DataDir)
	if code != exitOK {
		t.Fatalf("rotate-key: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "re-encrypted 2 secrets") || !strings.Contains(stdout, "new key ID") {
		t.Errorf("stdout = %q, want the count and the new key ID", stdout)
	}
	newKey := readFile(t, keyPath)
	if newKey == oldKey {
		t.Fatal("the key file did not change")
	}
	if strings.Contains(stdout+stderr, strings.TrimSpace(newKey)) || strings.Contains(stdout+stderr, strings.TrimSpace(oldKey)) {
		t.Error("rotate-key printed a key")
	}
	if exists(keyPath + ".new") {
		t.Error(keyPath + ".new is still there")
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	c = mustOpenCore(t, cfg)
	if !strings.Contains(stdout, c.box.KeyID()) {
		t.Errorf("stdout %q does not name the new key ID %s", stdout, c.box.KeyID())
	}
	for user, secret := range map[string][]byte{alice: secretA, bob: secretB} {
		if err := c.svc.VerifyTOTP(ctx, user, nextCode(t, secret, c.svc.Params())); err != nil {
			t.Errorf("VerifyTOTP(%s) with the new key: %v", user, err)
		}
	}
	c.Close()

	old := cfg
	old.Key = oldKey
	log, _ := quietLogger()
	if c, err := openCore(ctx, old, log); !errors.Is(err, account.ErrWrongKey) {
		if c != nil {
			c.Close()
		}
		t.Errorf("openCore with the old key: %v, want ErrWrongKey", err)
	}
}

func TestRotateKeyRefusals(t *testing.T) {
	t.Run("inline key", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Key = account.EncodeKey(account.NewKey())
		mustOpenCore(t, cfg).Close()
		path := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, path, string(config.Template(cfg)))
		code, _, stderr := runCLI(t, "admin", "rotate-key", "--config", path)
		if code == exitOK || !strings.Contains(stderr, "key_file") {
			t.Errorf("exit %d, stderr %q; want a refusal telling to use key_file", code, stderr)
		}
	})
	t.Run("no key file", func(t *testing.T) {
		cfg := testConfig(t)
		mustOpenCore(t, cfg).Close()
		os.Remove(cfg.KeyFilePath())
		code, _, stderr := runCLI(t, "admin", "rotate-key", "--data-dir", cfg.DataDir)
		if code == exitOK || exists(cfg.KeyFilePath()) {
			t.Errorf("exit %d (stderr %q), key file created: %v; want a refusal", code, stderr, exists(cfg.KeyFilePath()))
		}
	})
}

func TestInterruptedRotationRecovers(t *testing.T) {
	const alice = "@alice:example.org"
	ctx := context.Background()
	cfg := testConfig(t)
	c := mustOpenCore(t, cfg)
	secret := enrol(t, c.svc, alice)

	// What rotate-key does, stopped before the rename.
	keyPath := cfg.KeyFilePath()
	key := account.NewKey()
	newBox, err := account.NewSecretBox(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := account.WriteKeyFile(keyPath+".new", key); err != nil {
		t.Fatal(err)
	}
	if n, err := account.RotateKey(ctx, c.store, c.box, newBox); err != nil || n != 1 {
		t.Fatalf("RotateKey = %d, %v", n, err)
	}
	c.Close()

	log, hook := quietLogger()
	c, err = openCore(ctx, cfg, log)
	if err != nil {
		t.Fatalf("openCore after an interrupted rotation: %v", err)
	}
	defer c.Close()
	if c.box.KeyID() != newBox.KeyID() {
		t.Errorf("key ID = %s, want the rotated key %s", c.box.KeyID(), newBox.KeyID())
	}
	if exists(keyPath + ".new") {
		t.Error(".new was not renamed")
	}
	if got := strings.TrimSpace(readFile(t, keyPath)); got != account.EncodeKey(key) {
		t.Error("the key file does not hold the rotated key")
	}
	var logged bool
	for _, e := range hook.AllEntries() {
		logged = logged || strings.Contains(e.Message, "interrupted key rotation")
	}
	if !logged {
		t.Error("the recovery was not logged")
	}
	if err := c.svc.VerifyTOTP(ctx, alice, nextCode(t, secret, c.svc.Params())); err != nil {
		t.Errorf("VerifyTOTP after recovery: %v", err)
	}

	// And serve starts on it.
	_, stop := startServe(t, "--homeserver", testHomeserver, "--data-dir", cfg.DataDir, "--listen", "127.0.0.1:0")
	if code := stop(); code != exitOK {
		t.Errorf("serve exit code = %d", code)
	}
}

// TestAdminUnlock: an operator lifts a lockout; the user's right code is
// checked again at once, and the unlock is in the audit log.
func TestAdminUnlock(t *testing.T) {
	cfg := testConfig(t)
	c := mustOpenCore(t, cfg)
	const user = "@alice:example.org"
	secret := enrol(t, c.svc, user)
	for i := 0; i < 5; i++ {
		c.svc.VerifyTOTP(context.Background(), user, "000000")
	}
	if _, locked := account.IsLocked(c.svc.VerifyTOTP(context.Background(), user, nextCode(t, secret, c.svc.Params()))); !locked {
		t.Fatal("not locked after 5 failures")
	}
	c.Close()

	if code, _, stderr := runCLI(t, "admin", "unlock", "--data-dir", cfg.DataDir, "alice"); code != exitUsage || !strings.Contains(stderr, "not a Matrix user ID") {
		t.Errorf("unlock of a bad user ID: exit %d, %q", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "admin", "unlock", "--data-dir", cfg.DataDir, user)
	if code != exitOK || !strings.Contains(stdout, "cleared") {
		t.Fatalf("admin unlock: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	c = mustOpenCore(t, cfg)
	defer c.Close()
	if err := c.svc.VerifyTOTP(context.Background(), user, nextCode(t, secret, c.svc.Params())); err != nil {
		t.Fatalf("right code after unlock: %v", err)
	}
	_, stdout, _ = runCLI(t, "admin", "status", "--data-dir", cfg.DataDir, user)
	if !strings.Contains(stdout, "unlock") || !strings.Contains(stdout, "lockout") {
		t.Errorf("status does not show the lockout and the unlock:\n%s", stdout)
	}
}

// TestPostgresDatabase: with a postgres:// URL as database (the flag or the
// file), serve's core and the admin commands use PostgreSQL; two cores (two
// replicas) with the same key share one database.
func TestPostgresDatabase(t *testing.T) {
	cfg := testConfig(t)
	cfg.Database = pgtest.FreshDatabase(t)
	c := mustOpenCore(t, cfg)
	enrol(t, c.svc, "@alice:example.org")
	key, err := os.ReadFile(cfg.KeyFilePath())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	replica := testConfig(t) // another data directory, the same key and database
	replica.Database, replica.Key = cfg.Database, strings.TrimSpace(string(key))
	r := mustOpenCore(t, replica)
	if on, err := r.svc.Enabled(context.Background(), "@alice:example.org"); err != nil || !on {
		t.Fatalf("replica sees alice's 2FA: %v, %v", on, err)
	}
	r.Close()
	code, stdout, stderr := runCLI(t, "admin", "status", "--data-dir", cfg.DataDir, "--database", cfg.Database, "@alice:example.org")
	if code != exitOK || !strings.Contains(stdout, "enabled:") || !strings.Contains(stdout, "yes") {
		t.Fatalf("admin status on PostgreSQL: %d\n%s%s", code, stdout, stderr)
	}
	if exists(filepath.Join(cfg.DataDir, "matrix-2fa.db")) {
		t.Error("a SQLite file was created although the database is PostgreSQL")
	}
}
