// Command build-dendrite builds the test-only Dendrite binaries into
// internal/tools/dendrite/bin (if missing or stale) and prints that directory.
// Run it from anywhere inside the repository: go run ./internal/dendrite/cmd/build-dendrite
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	root, err := dendrite.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	binDir, err := dendrite.Build(ctx, root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "dendrite binaries ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Println(binDir)
}
