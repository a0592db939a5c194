package benchtool

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	RPS      float64
	Requests int
	Non2xx   int
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*([0-9]+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`(?m)Non-2xx or 3xx responses:\s+([0-9]+)`)
)

func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in output:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.Atoi(m[1])
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	return r, nil
}

// wrk runs wrk against url for d with conns connections on threads threads;
// token, when not empty, is sent as a bearer token.
func runWrk(ctx context.Context, url, token string, d time.Duration, conns, threads int) (WrkResult, error) {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds()))}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	res, err := parseWrk(string(out))
	if err == nil && res.Requests == 0 {
		err = fmt.Errorf("wrk %s: no request answered in %s:\n%s", url, d, out)
	}
	if err == nil && res.Non2xx > 0 {
		err = fmt.Errorf("wrk %s: %d of %d responses not 2xx", url, res.Non2xx, res.Requests)
	}
	return res, err
}
