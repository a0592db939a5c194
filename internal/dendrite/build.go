package dendrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ModulePath is the module path of the product; RepoRoot looks for a go.mod
// that declares it.
const ModulePath = "github.com/matrix-2fa/matrix-2fa"

// ToolsDir is the tools module that pins Dendrite, relative to the repository root.
const ToolsDir = "internal/tools/dendrite"

// Binaries are the programs Build produces in the bin directory.
var Binaries = []string{"dendrite", "generate-keys", "generate-config"}

const dendritePkg = "github.com/element-hq/dendrite/cmd/"

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares ModulePath. It returns an error if there is none.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("dendrite: working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(data, ModulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("dendrite: no go.mod declaring module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, path string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == path {
			return true
		}
	}
	return false
}

// BinDir is the directory, under repoRoot, that Build fills.
func BinDir(repoRoot string) string {
	return filepath.Join(repoRoot, filepath.FromSlash(ToolsDir), "bin")
}

// Build makes sure the Dendrite binaries (see Binaries) exist in BinDir(repoRoot)
// and are newer than the tools go.mod, building them with
// `CGO_ENABLED=0 go build` in the tools module otherwise. A lock file in the
// bin directory keeps concurrent callers (parallel test packages) from building
// at the same time; the others wait and then reuse the result. The first build
// downloads modules and takes one to two minutes. Errors include the tail of
// the build output, which is also kept in bin/build.log.
func Build(ctx context.Context, repoRoot string) (binDir string, err error) {
	toolsDir := filepath.Join(repoRoot, filepath.FromSlash(ToolsDir))
	gomod := filepath.Join(toolsDir, "go.mod")
	if _, err := os.Stat(gomod); err != nil {
		return "", fmt.Errorf("dendrite: tools module: %w", err)
	}
	binDir = BinDir(repoRoot)
	if fresh(binDir, gomod) {
		return binDir, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("dendrite: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(binDir, ".build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Someone else may have built while we waited for the lock.
	if fresh(binDir, gomod) {
		return binDir, nil
	}

	goTool, err := findGo()
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, b := range Binaries {
		args = append(args, dendritePkg+b)
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	runErr := cmd.Run()
	_ = os.WriteFile(filepath.Join(binDir, "build.log"), out.Bytes(), 0o644)
	if runErr != nil {
		return "", fmt.Errorf("dendrite: go %s (in %s) after %s: %w\n%s",
			strings.Join(args, " "), toolsDir, time.Since(start).Round(time.Second), runErr, tail(out.Bytes(), 40))
	}
	// go build leaves an up-to-date output untouched; mark the binaries as
	// fresh so the mtime check does not trigger another build.
	now := time.Now()
	for _, b := range Binaries {
		if err := os.Chtimes(filepath.Join(binDir, b), now, now); err != nil {
			return "", fmt.Errorf("dendrite: %w", err)
		}
	}
	return binDir, nil
}

// fresh reports whether every binary exists and is newer than gomod.
func fresh(binDir, gomod string) bool {
	ref, err := os.Stat(gomod)
	if err != nil {
		return false
	}
	for _, b := range Binaries {
		fi, err := os.Stat(filepath.Join(binDir, b))
		if err != nil || !fi.Mode().IsRegular() || fi.ModTime().Before(ref.ModTime()) {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock on path, polling so that ctx is honoured.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dendrite: build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("dendrite: build lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("dendrite: waiting for build lock %s: %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// findGo returns the go command: the one on PATH, else $GOROOT/bin/go.
func findGo() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("dendrite: the go command is not on PATH and GOROOT is not set")
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
