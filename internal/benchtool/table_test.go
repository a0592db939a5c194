package benchtool

import (
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	rows := []Row{
		{Name: "in-path ÷ nginx, whoami", Value: 0.72, Goal: &Goal{Limit: 0.9}, Figures: "5,300/s ÷ 7,400/s"},
		{Name: "TOTP completions", Value: 6123, Unit: "/s", Goal: &Goal{Limit: 5000}},
		{Name: "RSS", Value: 38.5, Unit: "MB", Goal: &Goal{Limit: 50, AtMost: true}},
		{Name: "login ÷ direct", Value: 1.2, Goal: &Goal{Limit: 1.05, AtMost: true}},
		{Name: "direct /versions", Value: 31000, Unit: "req/s"},
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"MISS (misses by 20%)", // 0.72 against ≥ 0.9
		"6,123 /s", "≥ 5,000",
		"38.5 MB", "≤ 50.0",
		"MISS (misses by 14%)", // 1.2 against ≤ 1.05
		"31,000 req/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != len(rows)+1 {
		t.Errorf("%d lines, want %d:\n%s", n, len(rows)+1, out)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8080/_matrix/client/versions
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   661.05us  402.11us  12.31ms   91.52%
    Req/Sec    12.41k   754.69    13.71k    72.00%
  123456 requests in 5.00s, 92.13MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  24690.12
Transfer/sec:     18.43MB
`
	res, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.RPS != 24690.12 || res.Non2xx != 3 || res.Requests != 123456 {
		t.Errorf("got %+v", res)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Error("no error for output without Requests/sec")
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkVerifyTOTPUsers/users=1000-2         	   20000	    226010 ns/op
BenchmarkVerifyTOTPUsers/users=1000000-2      	   20000	    310261 ns/op
BenchmarkLiveSessions-2   	       1	14050668827 ns/op	         4.422 heap-MB	        62.40 rss-MB
PASS
`
	got := parseBench(out)
	if got["BenchmarkVerifyTOTPUsers/users=1000"]["ns/op"] != 226010 || got["BenchmarkVerifyTOTPUsers/users=1000000"]["ns/op"] != 310261 {
		t.Errorf("TOTP rows: %v", got)
	}
	if got["BenchmarkLiveSessions"]["rss-MB"] != 62.40 || got["BenchmarkLiveSessions"]["heap-MB"] != 4.422 {
		t.Errorf("LiveSessions row: %v", got)
	}
}
