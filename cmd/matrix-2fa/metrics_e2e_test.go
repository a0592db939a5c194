package main

import (
	"bytes"
	"encoding/base32"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// TestMetricsAfterAScriptedRun runs serve in front of Dendrite with the
// metrics listener on, enrols a user, logs in with a wrong and then a right
// code, and scrapes /metrics: the counters of that run moved, and promtool
// finds nothing wrong with the names.
func TestMetricsAfterAScriptedRun(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package (scripts/test.sh does)", err)
	}
	hs := tesths.Dendrite(t)
	metricsAddr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte("metrics:\n  listen: "+metricsAddr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, stop := startServe(t, "--config", cfgPath, "--homeserver", hs.URL, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	defer stop()
	gw := "http://" + addr + "/_matrix/client/v3"
	u := tesths.RegisterUser(t, hs, "metered")

	post := func(path, token string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", gw+path, bytes.NewReader(b))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	password := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}
	ch := post("/account/two-factor/totp", u.AccessToken, map[string]any{})
	en := post("/account/two-factor/totp", u.AccessToken, map[string]any{"auth": withSession(password, ch["session"])})
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en["secret"].(string))
	if err != nil {
		t.Fatalf("enrolment: %v %v", en, err)
	}
	p := account.DefaultConfig()
	code := func(offset int64) string {
		c, err := account.CodeAt(secret, account.Step(time.Now(), p.Period)+offset, account.Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	post("/account/two-factor/totp/confirm", u.AccessToken, map[string]any{"code": code(-1)})
	login := post("/login", "", password)
	post("/login", "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": login["session"], "code": "000000"}})
	if ok := post("/login", "", map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": login["session"], "code": code(0)}}); ok["access_token"] == nil {
		t.Fatalf("login with the code: %v", ok)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for series, atLeast := range map[string]float64{
		`matrix2fa_second_factor_attempts_total{method="totp",result="success"}`:    1, // the login's (confirming an enrolment is not an attempt)
		`matrix2fa_second_factor_attempts_total{method="totp",result="invalid"}`:    1,
		`matrix2fa_enrolment_changes_total{change="enabled"}`:                       1,
		`matrix2fa_held_logins_total{event="started"}`:                              1,
		`matrix2fa_held_logins_total{event="released"}`:                             1,
		`matrix2fa_uia_challenges_total`:                                            2,
		`matrix2fa_homeserver_request_duration_seconds_count{operation="login"}`:    1,
		`matrix2fa_http_request_duration_seconds_count{route="login",status="2xx"}`: 1,
	} {
		if got := sample(scrape, series); got < atLeast {
			t.Errorf("%s = %v; want at least %v", series, got, atLeast)
		}
	}
	if bytes.Contains(scrape, []byte(u.UserID)) || bytes.Contains(scrape, []byte(u.Localpart)) {
		t.Error("a user ID is in the metrics")
	}
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = bytes.NewReader(scrape)
	if out, err := lint.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func withSession(auth map[string]any, session any) map[string]any {
	out := map[string]any{"session": session}
	for k, v := range auth {
		out[k] = v
	}
	return out
}

// sample returns the value of one series in a Prometheus text scrape (0 when absent).
func sample(scrape []byte, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`)
	m := re.FindSubmatch(scrape)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// freeAddr returns a loopback address with a port free just now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strings.TrimSpace(ln.Addr().String())
}
