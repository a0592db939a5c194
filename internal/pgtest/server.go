package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// Server is a PostgreSQL cluster of one test's own, made by scripts/pg.sh in
// a directory and on a port of its own: a test that stops and starts the
// server (an outage) must not take the shared MATRIX2FA_TEST_PG server from
// the tests running beside it.
type Server struct {
	// URL is the server's postgres:// URL (database postgres).
	URL    string
	script string
	env    []string
}

// OwnServer creates and starts a cluster for tb (initdb takes a few seconds),
// and stops and removes it when the test ends. It fails the test when
// PostgreSQL 15 is not installed or does not start.
func OwnServer(tb testing.TB) *Server {
	tb.Helper()
	root, err := dendrite.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	// Not tb.TempDir(): the server runs as the postgres user when we are
	// root, and must reach its directory through every parent.
	dir, err := os.MkdirTemp("", "m2fa-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	port, err := dendrite.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{script: filepath.Join(root, "scripts", "pg.sh"),
		env: append(os.Environ(), "MATRIX2FA_PG_DIR="+dir, "MATRIX2FA_PG_PORT="+strconv.Itoa(port))}
	tb.Cleanup(func() {
		if _, err := s.run("stop"); err != nil {
			tb.Errorf("stopping PostgreSQL in %s: %v", dir, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("removing %s: %v", dir, err)
		}
	})
	s.Start(tb)
	return s
}

// Start starts the server (again) and waits until it accepts connections.
func (s *Server) Start(tb testing.TB) {
	tb.Helper()
	out, err := s.run("start")
	if err != nil {
		tb.Fatalf("scripts/pg.sh start: %v", err)
	}
	s.URL = strings.TrimSpace(out)
}

// Stop stops the server the way an operator's restart does (pg_ctl stop
// -m fast: connections are ended with 57P01 admin shutdown).
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if _, err := s.run("stop"); err != nil {
		tb.Fatalf("scripts/pg.sh stop: %v", err)
	}
}

// FreshDatabase creates an empty database on s, as FreshDatabase does on
// the shared server.
func (s *Server) FreshDatabase(tb testing.TB) string {
	tb.Helper()
	return freshDatabase(tb, s.URL)
}

func (s *Server) run(arg string) (string, error) {
	cmd := exec.Command("bash", s.script, arg)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w after %s: %s", err, time.Since(start).Round(time.Millisecond), stderr.String())
	}
	return stdout.String(), nil
}
