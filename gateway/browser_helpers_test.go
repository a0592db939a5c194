package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
)

// Browser tests: scripts under tests/browser drive the system Chromium with
// playwright-core (tests/browser/lib.mjs). The Go test sets up the gateway and
// Dendrite, passes URLs, credentials and codes in the environment, and fails
// when the script exits non-zero. They never skip: a machine without node,
// Chromium or the npm packages fails with what is missing (scripts/test.sh
// installs all three).

const (
	chromiumPath   = "/usr/bin/chromium"
	browserTimeout = 3 * time.Minute
)

// repoRoot walks up from the package directory to the directory with go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("browser test: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// runBrowser runs `node tests/browser/<script>` from the repository root with
// env added to the test's environment, logs its output and fails the test
// when it exits non-zero or runs longer than three minutes.
func runBrowser(t *testing.T, script string, env map[string]string) {
	t.Helper()
	root := repoRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("browser test %s: node is not installed (apt-get install nodejs npm, or run scripts/test.sh)", script)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("browser test %s: %s is missing (apt-get install chromium, or run scripts/test.sh)", script, chromiumPath)
	}
	if _, err := os.Stat(filepath.Join(root, "tests/browser/node_modules/playwright-core")); err != nil {
		t.Fatalf("browser test %s: tests/browser/node_modules/playwright-core is missing (npm ci --prefix tests/browser, or run scripts/test.sh)", script)
	}
	path := filepath.Join(root, "tests/browser", script)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("browser test: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, path)
	cmd.Dir = root
	// Own process group, so a timeout also kills Chromium, not only node.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = os.Environ()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("node tests/browser/%s (%s):\n%s", script, time.Since(start).Round(time.Millisecond), out.String())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("browser test %s: timed out after %s", script, browserTimeout)
	}
	if err != nil {
		t.Fatalf("browser test %s failed: %v", script, err)
	}
}

// browserVars are the environment every browser script gets for a user:
// GATEWAY_URL, HS_URL, USER_ID, LOCALPART, PASSWORD, ACCESS_TOKEN, and for an
// enrolled user TOTP_SECRET (base32) and GATEWAY_TIME (the gateway clock, Unix
// seconds) for lib.mjs totp(), plus SCREENSHOTS_DIR when the test runs with
// it set. Further variables go in extra.
func (e *env) browserVars(u *enrolled, extra map[string]string) map[string]string {
	v := map[string]string{
		"GATEWAY_URL":  e.srv.URL,
		"HS_URL":       e.hs.URL,
		"GATEWAY_TIME": strconv.FormatInt(e.clock.Now().Unix(), 10),
	}
	if u != nil {
		v["USER_ID"] = u.UserID
		v["LOCALPART"] = u.Localpart
		v["PASSWORD"] = u.Password
		v["ACCESS_TOKEN"] = u.AccessToken
		if len(u.secret) > 0 {
			v["TOTP_SECRET"] = base32NoPad(u.secret)
		}
	}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// peekCode returns the TOTP code of the step offset steps from the gateway
// clock's current one, WITHOUT moving the clock (the gateway accepts ±1 step,
// each step once, in ascending order). For browser scripts, which cannot move
// the clock themselves.
func (e *env) peekCode(u *enrolled, offset int) string {
	e.t.Helper()
	p := e.acc.Params()
	c, err := account.CodeAt(u.secret, account.Step(e.clock.Now(), p.Period)+int64(offset), p)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TestBrowserSmoke checks the browser infrastructure itself: Chromium starts
// headless, a page renders, lib.mjs totp() matches RFC 6238.
func TestBrowserSmoke(t *testing.T) {
	runBrowser(t, "smoke.mjs", nil)
}
