package metrics

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scrape GETs the handler and returns the text exposition.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

// value returns the sample of series (name plus labels, as exposed) in a scrape, failing the
// test when it is missing.
func value(t *testing.T, text, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("series %s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("series %s not in the scrape", series)
	return 0
}

func TestEventsMoveSeries(t *testing.T) {
	m := New()
	tests := []struct {
		name   string
		record func()
		series string
		want   float64 // the increase
	}{
		{"totp success", func() { m.SecondFactorAttempt(MethodTOTP, ResultSuccess) }, `matrix2fa_second_factor_attempts_total{method="totp",result="success"}`, 1},
		{"totp replay", func() { m.SecondFactorAttempt(MethodTOTP, ResultReplay) }, `matrix2fa_second_factor_attempts_total{method="totp",result="replay"}`, 1},
		{"recovery invalid twice", func() {
			m.SecondFactorAttempt(MethodRecovery, ResultInvalid)
			m.SecondFactorAttempt(MethodRecovery, ResultInvalid)
		}, `matrix2fa_second_factor_attempts_total{method="recovery",result="invalid"}`, 2},
		{"email locked", func() { m.SecondFactorAttempt(MethodEmail, ResultLocked) }, `matrix2fa_second_factor_attempts_total{method="email",result="locked"}`, 1},
		{"lockout", m.Lockout, `matrix2fa_lockouts_total`, 1},
		{"held started", func() { m.HeldLogin(HeldStarted) }, `matrix2fa_held_logins_total{event="started"}`, 1},
		{"held released", func() { m.HeldLogin(HeldReleased) }, `matrix2fa_held_logins_total{event="released"}`, 1},
		{"held expired", func() { m.HeldLogin(HeldExpired) }, `matrix2fa_held_logins_total{event="expired"}`, 1},
		{"uia challenge", m.UIAChallenge, `matrix2fa_uia_challenges_total`, 1},
		{"enrolment enabled", func() { m.EnrolmentChange(ChangeEnabled) }, `matrix2fa_enrolment_changes_total{change="enabled"}`, 1},
		{"enrolment disabled", func() { m.EnrolmentChange(ChangeDisabled) }, `matrix2fa_enrolment_changes_total{change="disabled"}`, 1},
		{"enrolment regenerated", func() { m.EnrolmentChange(ChangeRegenerated) }, `matrix2fa_enrolment_changes_total{change="regenerated"}`, 1},
		{"enrolment admin reset", func() { m.EnrolmentChange(ChangeAdminReset) }, `matrix2fa_enrolment_changes_total{change="admin_reset"}`, 1},
		{"homeserver call timed", func() { m.HomeserverCall(OpWhoAmI, 30*time.Millisecond, nil) }, `matrix2fa_homeserver_request_duration_seconds_count{operation="whoami"}`, 1},
		{"homeserver call in bucket", func() { m.HomeserverCall(OpLogin, 30*time.Millisecond, nil) }, `matrix2fa_homeserver_request_duration_seconds_bucket{operation="login",le="0.05"}`, 1},
		{"homeserver call below bucket", func() { m.HomeserverCall(OpLogout, 30*time.Millisecond, nil) }, `matrix2fa_homeserver_request_duration_seconds_bucket{operation="logout",le="0.025"}`, 0},
		{"homeserver error", func() { m.HomeserverCall(OpLogin, time.Second, errors.New("connection refused")) }, `matrix2fa_homeserver_errors_total{operation="login"}`, 1},
		{"homeserver seconds summed", func() { m.HomeserverCall(OpForward, 1500*time.Millisecond, nil) }, `matrix2fa_homeserver_request_duration_seconds_sum{operation="forward"}`, 1.5},
		{"http 200 login", func() { m.HTTPRequest(RouteLogin, 200, 10*time.Millisecond) }, `matrix2fa_http_request_duration_seconds_count{route="login",status="2xx"}`, 1},
		{"http 401 guarded", func() { m.HTTPRequest(RouteGuarded, 401, time.Millisecond) }, `matrix2fa_http_request_duration_seconds_count{route="guarded",status="4xx"}`, 1},
		{"http 502 passthrough", func() { m.HTTPRequest(RoutePassthrough, 502, time.Millisecond) }, `matrix2fa_http_request_duration_seconds_count{route="passthrough",status="5xx"}`, 1},
		{"http 302 page", func() { m.HTTPRequest(RoutePage, 302, time.Millisecond) }, `matrix2fa_http_request_duration_seconds_count{route="page",status="3xx"}`, 1},
		{"http two_factor", func() { m.HTTPRequest(RouteTwoFactor, 200, time.Millisecond) }, `matrix2fa_http_request_duration_seconds_count{route="two_factor",status="2xx"}`, 1},
		{"notification failure", func() { m.NotificationFailed("lockout", "send_error") }, `matrix2fa_notification_failures_total{kind="lockout",reason="send_error"}`, 1},
		{"code mail failure", func() { m.NotificationFailed("code", "send_error") }, `matrix2fa_notification_failures_total{kind="code",reason="send_error"}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0.0
			if text := scrape(t, m.Handler()); strings.Contains(text, tt.series+" ") {
				before = value(t, text, tt.series)
			}
			tt.record()
			if got := value(t, scrape(t, m.Handler()), tt.series) - before; got != tt.want {
				t.Errorf("%s moved by %v, want %v", tt.series, got, tt.want)
			}
		})
	}
}

func TestSeriesExistAtZero(t *testing.T) {
	text := scrape(t, New().Handler())
	for _, s := range []string{
		`matrix2fa_second_factor_attempts_total{method="email",result="replay"}`,
		`matrix2fa_lockouts_total`,
		`matrix2fa_held_logins_total{event="expired"}`,
		`matrix2fa_uia_challenges_total`,
		`matrix2fa_enrolment_changes_total{change="admin_reset"}`,
		`matrix2fa_homeserver_errors_total{operation="whoami"}`,
		`matrix2fa_notification_failures_total{kind="enabled",reason="queue_full"}`,
	} {
		if v := value(t, text, s); v != 0 {
			t.Errorf("%s = %v on a new Metrics", s, v)
		}
	}
	if !strings.Contains(text, "go_goroutines ") || !strings.Contains(text, "process_") {
		t.Error("Go runtime or process metrics missing")
	}
	if strings.Contains(text, "promhttp_") {
		t.Error("the global registry's handler metrics leaked in")
	}
}

// Values outside a label's list are recorded as "other": a caller cannot put a user ID (or
// anything unbounded) into a label.
func TestUnknownLabelValuesBecomeOther(t *testing.T) {
	m := New()
	const user = "@mallory:example.org"
	m.SecondFactorAttempt(user, user)
	m.HeldLogin(user)
	m.EnrolmentChange(user)
	m.HomeserverCall("/_matrix/client/v3/"+user, time.Millisecond, errors.New(user))
	m.HTTPRequest("/_matrix/client/v3/profile/"+user, 999, time.Millisecond)
	m.NotificationFailed(user, user)
	text := scrape(t, m.Handler())
	if strings.Contains(text, "mallory") {
		t.Fatal("a user ID reached the metrics")
	}
	for _, s := range []string{
		`matrix2fa_second_factor_attempts_total{method="other",result="other"}`,
		`matrix2fa_held_logins_total{event="other"}`,
		`matrix2fa_enrolment_changes_total{change="other"}`,
		`matrix2fa_homeserver_errors_total{operation="other"}`,
		`matrix2fa_http_request_duration_seconds_count{route="other",status="other"}`,
		`matrix2fa_notification_failures_total{kind="other",reason="other"}`,
	} {
		if v := value(t, text, s); v != 1 {
			t.Errorf("%s = %v, want 1", s, v)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.SecondFactorAttempt(MethodTOTP, ResultSuccess)
	m.Lockout()
	m.HeldLogin(HeldStarted)
	m.UIAChallenge()
	m.EnrolmentChange(ChangeEnabled)
	m.HomeserverCall(OpLogin, time.Second, errors.New("x"))
	m.HTTPRequest(RouteLogin, 200, time.Second)
	m.NotificationFailed("lockout", "send_error")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics' handler answered %d, want 404", rec.Code)
	}
}

func TestClientGolangLint(t *testing.T) {
	m := New()
	m.HomeserverCall(OpLogin, time.Millisecond, nil)
	m.HTTPRequest(RouteLogin, 200, time.Millisecond)
	for name, c := range map[string]prometheus.Collector{
		"second_factor": m.secondFactor, "lockouts": m.lockouts, "held_logins": m.heldLogins,
		"uia_challenges": m.uiaChallenges, "enrolment": m.enrolment, "homeserver_duration": m.hsDuration,
		"homeserver_errors": m.hsErrors, "http_duration": m.httpDuration, "notification_failures": m.notifyFailed,
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("registry: %s: %s", p.Metric, p.Text)
	}
}

// TestPromtoolCheckMetrics lints a scrape with Prometheus' own promtool (Debian's prometheus
// package, installed by scripts/test.sh). It fails, never skips, when promtool is missing.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH (%v): install Debian's prometheus package (apt-get install prometheus; scripts/test.sh does)", err)
	}
	m := New()
	m.SecondFactorAttempt(MethodTOTP, ResultSuccess)
	m.Lockout()
	m.HeldLogin(HeldStarted)
	m.UIAChallenge()
	m.EnrolmentChange(ChangeEnabled)
	m.HomeserverCall(OpLogin, 20*time.Millisecond, errors.New("x"))
	m.HTTPRequest(RouteLogin, 200, 20*time.Millisecond)
	m.NotificationFailed("lockout", "send_error")
	text := scrape(t, m.Handler())

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}

	// The check is real: it rejects a counter without _total.
	bad := exec.Command(promtool, "check", "metrics")
	bad.Stdin = strings.NewReader("# HELP matrix2fa_bad A counter.\n# TYPE matrix2fa_bad counter\nmatrix2fa_bad 1\n")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Errorf("promtool accepted a counter without _total: %s", out)
	}
}

func TestEveryOwnMetricIsNamespaced(t *testing.T) {
	families, err := New().reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, Namespace+"_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s lacks the %s_ prefix", name, Namespace)
		}
	}
}
