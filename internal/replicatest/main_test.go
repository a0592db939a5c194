package replicatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
)

// buildDir holds the matrix-2fa binary built for this test run.
var buildDir string

// TestMain fails the package at once, with one clear message, without a
// PostgreSQL test server, and removes the built binary afterwards.
func TestMain(m *testing.M) {
	if os.Getenv("MATRIX2FA_TEST_PG") == "" {
		fmt.Fprintln(os.Stderr, "internal/replicatest: "+pgtest.NoServer)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "m2fa-replicatest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var binary struct {
	once sync.Once
	path string
	err  error
}

// gatewayBinary builds cmd/matrix-2fa once per test run (go build -o) and
// returns its path; it fails the test if the build fails. MATRIX2FA_BIN,
// when set, names a binary to run instead (one built from another tree).
func gatewayBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if bin := os.Getenv("MATRIX2FA_BIN"); bin != "" {
			binary.path = bin
			return
		}
		root, err := dendrite.RepoRoot()
		if err != nil {
			binary.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out := filepath.Join(buildDir, "matrix-2fa")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/matrix-2fa")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/matrix-2fa: %v\n%s", err, b)
			return
		}
		binary.path = out
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}
