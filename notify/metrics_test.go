package notify_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/notify"
)

// The wiring this package is built for: metrics count the notifier's failures.
var _ notify.FailureCounter = (*metrics.Metrics)(nil)

// A failed notification shows in the scrape under its own kind and reason, for every kind.
func TestFailuresReachMetrics(t *testing.T) {
	srv := smtptest.Start(t)
	srv.Stop()
	m := metrics.New()
	mailer, err := notify.NewMailer(notify.Config{Host: srv.Host(), Port: srv.Port(), TLS: notify.TLSNone, From: "2fa@example.org", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := logtest.NewNullLogger()
	n := notify.NewNotifier(mailer, notify.NotifierConfig{ServerName: "example.org", Logger: logger, Failures: m})
	for _, k := range notify.Kinds {
		n.Notify(notify.Notice{Kind: k, To: "alice@example.org", UserID: "@alice:example.org"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, k := range notify.Kinds {
		series := `matrix2fa_notification_failures_total{kind="` + string(k) + `",reason="` + notify.ReasonSend + `"} 1`
		if !strings.Contains(text, series+"\n") {
			t.Errorf("scrape lacks %s", series)
		}
	}
	if strings.Contains(text, `kind="other"`+`,reason="send_error"} 1`) || strings.Contains(text, "alice") {
		t.Error("a kind or reason was not a known label value, or a user reached the metrics")
	}
}
