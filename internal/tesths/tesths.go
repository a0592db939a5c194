package tesths

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

var build struct {
	once   sync.Once
	binDir string
	err    error
	took   time.Duration
}

// DendriteBinDir builds the Dendrite binaries once per process (see
// dendrite.Build) and returns their directory. It fails the test if the build
// fails.
func DendriteBinDir(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		start := time.Now()
		defer func() { build.took = time.Since(start) }()
		root, err := dendrite.RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		build.binDir, build.err = dendrite.Build(ctx, root)
	})
	if build.err != nil {
		t.Fatalf("building Dendrite (%s): %v", build.took.Round(time.Second), build.err)
	}
	return build.binDir
}

// Dendrite starts a fresh Dendrite homeserver in a test temp directory and
// stops it when the test ends. On failure the test's log gets the tail of
// Dendrite's log. It fails the test if Dendrite cannot be built or started.
func Dendrite(t testing.TB) *dendrite.Server {
	t.Helper()
	return DendriteWith(t, dendrite.Options{})
}

// DendriteWith is Dendrite with opts (its BinDir and Dir are set here).
func DendriteWith(t testing.TB, opts dendrite.Options) *dendrite.Server {
	t.Helper()
	opts.BinDir, opts.Dir = DendriteBinDir(t), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	s, err := dendrite.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting Dendrite: %v", err)
	}
	t.Logf("Dendrite %s ready in %s (dir %s)", s.URL, time.Since(start).Round(time.Millisecond), s.Dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Dendrite log %s ends with:\n%s", s.LogPath, s.LogTail(40))
		}
		stopStart := time.Now()
		if err := s.Stop(); err != nil {
			t.Errorf("stopping Dendrite: %v", err)
		}
		t.Logf("Dendrite stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	})
	return s
}

// RegisterUser registers localpart on s with a random password and returns
// the logged-in user. It fails the test on error.
func RegisterUser(t testing.TB, s *dendrite.Server, localpart string) *dendrite.User {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := s.Register(ctx, localpart, RandomPassword(t))
	if err != nil {
		t.Fatalf("registering %q: %v", localpart, err)
	}
	return u
}

// RandomPassword returns a random 32-character password.
func RandomPassword(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random password: %v", err)
	}
	return hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := dendrite.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
