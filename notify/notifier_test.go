package notify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
)

// failures records NotificationFailed calls; each one is also sent on ch.
type failures struct {
	mu  sync.Mutex
	got []string // "kind/reason"
	ch  chan string
}

func newFailures() *failures { return &failures{ch: make(chan string, 1024)} }

func (f *failures) NotificationFailed(kind, reason string) {
	f.mu.Lock()
	f.got = append(f.got, kind+"/"+reason)
	f.mu.Unlock()
	f.ch <- kind + "/" + reason
}

func (f *failures) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func (f *failures) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-f.ch:
		if got != want {
			t.Fatalf("failure counted as %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no failure counted (want %q)", want)
	}
}

func closeNotifier(t *testing.T, n *Notifier, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestNotifierSendsEachKindOnce(t *testing.T) {
	srv := smtptest.Start(t)
	fails := newFailures()
	n := NewNotifier(mailerFor(t, srv, nil), NotifierConfig{ServerName: "example.org", Failures: fails, Now: clock})
	for _, k := range Kinds {
		nt := notice(k)
		nt.To = string(k) + "@example.org"
		nt.At = time.Time{} // stamped by the Notifier's clock
		n.Notify(nt)
	}
	closeNotifier(t, n, 30*time.Second) // drains the queue
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			got := srv.Received(string(k) + "@example.org")
			if len(got) != 1 {
				t.Fatalf("%d mails, want exactly 1", len(got))
			}
			want := noticeWant[k]
			if got[0].Subject != want.subject {
				t.Errorf("subject %q, want %q", got[0].Subject, want.subject)
			}
			for _, w := range append(want.text, "@alice:example.org", "2025-03-04 04:06 UTC") {
				if !strings.Contains(got[0].Text, w) {
					t.Errorf("text lacks %q:\n%s", w, got[0].Text)
				}
			}
		})
	}
	if n := len(srv.Messages()); n != len(Kinds) {
		t.Errorf("%d mails in all, want %d", n, len(Kinds))
	}
	if f := fails.list(); len(f) != 0 {
		t.Errorf("failures counted: %q", f)
	}
}

func TestNotifierSMTPDown(t *testing.T) {
	srv := smtptest.Start(t)
	srv.Stop()
	logger, hook := logtest.NewNullLogger()
	fails := newFailures()
	n := NewNotifier(mailerFor(t, srv, nil), NotifierConfig{ServerName: "example.org", Logger: logger, Failures: fails, Now: clock})
	defer closeNotifier(t, n, 30*time.Second)

	start := time.Now()
	n.Notify(notice(KindLockout))
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Notify took %s with the SMTP server down; it must not wait for it", d)
	}
	fails.wait(t, "lockout/send_error")

	var entry *logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel {
			entry = e
		}
	}
	if entry == nil {
		t.Fatal("no error logged")
	}
	if entry.Data["user_id"] != "@alice:example.org" || entry.Data["notification"] != "lockout" || entry.Data["reason"] != ReasonSend {
		t.Errorf("log fields %v", entry.Data)
	}
	if err, _ := entry.Data[logrus.ErrorKey].(error); err == nil {
		t.Error("the error is not logged")
	}
	if line, _ := entry.String(); strings.Contains(line, "alice@example.org") {
		t.Errorf("the log names the e-mail address: %s", line)
	}

	// Back up: the next notice goes through.
	srv.Restart(t)
	n.Notify(notice(KindEnabled))
	if got := srv.WaitFor(t, "alice@example.org", 10*time.Second); got.Subject != noticeWant[KindEnabled].subject {
		t.Errorf("after the outage: subject %q", got.Subject)
	}
}

// blockingSender holds every Send until release is closed.
type blockingSender struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingSender) Send(ctx context.Context, _ Message) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestNotifierQueueFullDropsWithoutBlocking(t *testing.T) {
	s := &blockingSender{started: make(chan struct{}, 16), release: make(chan struct{})}
	fails := newFailures()
	logger, _ := logtest.NewNullLogger()
	n := NewNotifier(s, NotifierConfig{QueueSize: 2, Logger: logger, Failures: fails, Now: clock})
	n.Notify(notice(KindEnabled)) // taken by the worker, which then blocks
	<-s.started
	n.Notify(notice(KindDisabled)) // queued
	n.Notify(notice(KindDisabled)) // queued
	start := time.Now()
	n.Notify(notice(KindAdminReset)) // dropped
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Notify on a full queue took %s", d)
	}
	fails.wait(t, "admin_reset/queue_full")
	close(s.release)
	closeNotifier(t, n, 10*time.Second)
	if got := fails.list(); len(got) != 1 {
		t.Errorf("failures %q, want only the dropped one", got)
	}
	n.Notify(notice(KindLockout))
	fails.wait(t, "lockout/closed")
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNotifierCloseTimesOut(t *testing.T) {
	host, port := stallingServer(t)
	m, err := NewMailer(Config{Host: host, Port: port, TLS: TLSNone, From: "2fa@example.org", Timeout: time.Minute}, clock)
	if err != nil {
		t.Fatal(err)
	}
	fails := newFailures()
	logger, _ := logtest.NewNullLogger()
	n := NewNotifier(m, NotifierConfig{Logger: logger, Failures: fails, Now: clock, SendTimeout: time.Minute})
	n.Notify(notice(KindEnabled))  // in flight, stalled
	n.Notify(notice(KindDisabled)) // queued
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with a 300ms deadline", d)
	}
	got := strings.Join(fails.list(), " ")
	if got != "enabled/send_error disabled/closed" {
		t.Errorf("failures %q, want the stalled send and the dropped notice", got)
	}
}
