// Command benchtool runs matrix-2fa's benchmark (issue 14's table) and prints
// every ratio from one run on one machine; scripts/bench.sh builds what it
// needs and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/benchtool"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

func main() {
	root, _ := dendrite.RepoRoot()
	o := benchtool.Options{Progress: os.Stderr}
	flag.StringVar(&o.RepoRoot, "repo", root, "repository root (for the Go benchmarks)")
	flag.StringVar(&o.GatewayBin, "gateway", "", "the built matrix-2fa `binary`")
	flag.StringVar(&o.DendriteBinDir, "dendrite-bin", dendrite.BinDir(root), "`directory` of the built Dendrite")
	flag.StringVar(&o.WorkDir, "work", "", "`directory` for the servers' files (default: a new temporary one)")
	flag.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each wrk and login-throughput run")
	flag.IntVar(&o.Conns, "c", 16, "concurrent connections")
	flag.IntVar(&o.Threads, "t", 2, "wrk threads")
	flag.IntVar(&o.TOTPLogins, "totp-logins", 10000, "held logins completed with a TOTP code, one per user")
	flag.IntVar(&o.Sessions, "sessions", 10000, "UIA sessions and held logins for the RSS row")
	flag.BoolVar(&o.PassThroughOnly, "passthrough", false, "measure only the pass-through rows (wrk; no logins, TOTP, RSS or Go benchmarks)")
	flag.StringVar(&o.VersionsCacheTTL, "versions-cache-ttl", "", "the gateway's versions_cache_ttl (0s: off; default: the gateway's default)")
	flag.Parse()
	if o.GatewayBin == "" {
		fmt.Fprintln(os.Stderr, "benchtool: -gateway is required")
		os.Exit(2)
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "matrix-2fa-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			os.Exit(1)
		}
		o.WorkDir = dir
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start, load := time.Now(), loadAvg()
	rows, err := benchtool.Run(ctx, o)
	fmt.Printf("\nmatrix-2fa benchmark — %s, %d CPUs (nproc), %s, Go %s; wrk -c %d -t %d -d %s per run, loopback, Dendrite in %s\n",
		cpuModel(), runtime.NumCPU(), time.Now().Format("2006-01-02"), runtime.Version(), o.Conns, o.Threads, o.Duration, o.WorkDir)
	fmt.Printf("load average before: %s, after: %s (anything else running skews every figure)\n\n", load, loadAvg())
	benchtool.WriteTable(os.Stdout, rows)
	fmt.Printf("\ntook %s\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg is the 1-, 5- and 15-minute load average of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
