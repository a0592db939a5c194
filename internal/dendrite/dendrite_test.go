package dendrite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

func TestRepoRoot(t *testing.T) {
	root, err := dendrite.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "module "+dendrite.ModulePath+"\n") {
		t.Errorf("%s/go.mod does not declare %s", root, dendrite.ModulePath)
	}
	if strings.Contains(string(gomod), "element-hq/dendrite") {
		t.Error("the product go.mod mentions Dendrite; it must stay in the tools module")
	}
	if _, err := os.Stat(filepath.Join(root, dendrite.ToolsDir, "go.mod")); err != nil {
		t.Errorf("tools module: %v", err)
	}
	if got, want := dendrite.BinDir(root), filepath.Join(root, "internal", "tools", "dendrite", "bin"); got != want {
		t.Errorf("BinDir = %q, want %q", got, want)
	}
}

func TestStartErrors(t *testing.T) {
	binDir := tesths.DendriteBinDir(t)
	for _, tc := range []struct {
		name    string
		opts    func(t *testing.T) dendrite.Options
		wantErr string
	}{
		{"no bin dir", func(t *testing.T) dendrite.Options {
			return dendrite.Options{Dir: t.TempDir()}
		}, "BinDir is empty"},
		{"missing binaries", func(t *testing.T) dendrite.Options {
			return dendrite.Options{BinDir: t.TempDir(), Dir: t.TempDir()}
		}, "missing binary"},
		{"invalid config", func(t *testing.T) dendrite.Options {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, dendrite.ConfigFile), []byte("version: 2\nglobal: [\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dendrite.Options{BinDir: binDir, Dir: dir}
		}, "exited before it was ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			s, err := dendrite.Start(ctx, tc.opts(t))
			if err == nil {
				_ = s.Stop()
				t.Fatal("Start succeeded")
			}
			t.Logf("Start error: %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Start error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestRestartKeepsAccounts covers the demo's use: a persistent Dir reuses its
// key, config and databases across restarts.
func TestRestartKeepsAccounts(t *testing.T) {
	binDir := tesths.DendriteBinDir(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	s, err := dendrite.Start(ctx, dendrite.Options{BinDir: binDir, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	password := tesths.RandomPassword(t)
	u, err := s.Register(ctx, "alice", password)
	if err != nil {
		_ = s.Stop()
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, dendrite.ConfigFile)); err != nil {
		t.Fatalf("Stop removed a caller's Dir: %v", err)
	}

	s2, err := dendrite.Start(ctx, dendrite.Options{BinDir: binDir, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s2.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	again, err := s2.Login(ctx, "alice", password)
	if err != nil {
		t.Fatalf("Login after restart: %v", err)
	}
	if again.UserID != u.UserID {
		t.Errorf("UserID after restart = %q, want %q", again.UserID, u.UserID)
	}
	_, err = s2.Register(ctx, "alice", password)
	var he *dendrite.HTTPError
	if !errors.As(err, &he) || he.ErrCode != "M_USER_IN_USE" {
		t.Errorf("Register(alice) after restart = %v, want M_USER_IN_USE", err)
	}
}

func TestTempDirRemovedOnStop(t *testing.T) {
	binDir := tesths.DendriteBinDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := dendrite.Start(ctx, dendrite.Options{BinDir: binDir})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL == "" || !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.ServerName != "localhost" {
		t.Errorf("Server = %+v", s)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there after Stop: %v", s.Dir, err)
	}
}
