package notify

import (
	"context"
	"errors"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/smtptest"
)

var clock = func() time.Time { return at }

// mailerFor returns a Mailer for srv, without TLS (loopback), adjusted by mod.
func mailerFor(t *testing.T, srv *smtptest.Server, mod func(*Config)) *Mailer {
	t.Helper()
	cfg := Config{Host: srv.Host(), Port: srv.Port(), TLS: TLSNone, From: "Matrix 2FA <2fa@example.org>", Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewMailer(cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMailerSendsCode(t *testing.T) {
	srv := smtptest.Start(t)
	m := mailerFor(t, srv, nil)
	err := m.SendCode(context.Background(), CodeMail{To: "alice@example.org", UserID: "@alice:example.org", ServerName: "example.org", Code: "90210734", ValidFor: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(t, "alice@example.org", 5*time.Second)
	if got.Subject != "Your sign-in code for example.org" {
		t.Errorf("subject %q", got.Subject)
	}
	if strings.Join(got.To, ",") != "alice@example.org" || got.From != "2fa@example.org" {
		t.Errorf("To header %q, envelope from %q", got.To, got.From)
	}
	for _, w := range []string{"    90210734\n", "valid for 5 minutes", "@alice:example.org"} {
		if !strings.Contains(got.Text, w) {
			t.Errorf("delivered text lacks %q:\n%s", w, got.Text)
		}
	}
	if from, err := mail.ParseAddress(got.Header.Get("From")); err != nil || from.Name != "Matrix 2FA" || from.Address != "2fa@example.org" {
		t.Errorf("From header %q (%v)", got.Header.Get("From"), err)
	}
	if d, err := got.Header.Date(); err != nil || !d.Equal(at) {
		t.Errorf("Date header %v (%v), want the injected clock %v", d, err, at)
	}
	if got.Header.Get("Message-Id") == "" {
		t.Error("no Message-ID")
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

func TestMailerSendsHTMLAlternative(t *testing.T) {
	srv := smtptest.Start(t)
	m := mailerFor(t, srv, nil)
	msg := Message{To: "bob@example.org", Subject: "Grüße", Text: "plain ü", HTML: "<p>rich</p>"}
	if err := m.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(t, "bob@example.org", 5*time.Second)
	if got.Subject != "Grüße" || got.Text != "plain ü" || got.HTML != "<p>rich</p>" {
		t.Errorf("got subject %q text %q html %q", got.Subject, got.Text, got.HTML)
	}
}

func TestMailerAuthenticates(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithAuth("gateway", "s3cret"))
	msg := Message{To: "carol@example.org", Subject: "s", Text: "t"}

	noAuth := mailerFor(t, srv, nil)
	if err := noAuth.Send(context.Background(), msg); err == nil {
		t.Error("sent without authenticating to a server that requires it")
	}
	wrong := mailerFor(t, srv, func(c *Config) { c.Username, c.Password = "gateway", "wrong" })
	if err := wrong.Send(context.Background(), msg); err == nil {
		t.Error("sent with a wrong password")
	}
	right := mailerFor(t, srv, func(c *Config) { c.Username, c.Password = "gateway", "s3cret" })
	if err := right.Send(context.Background(), msg); err != nil {
		t.Fatalf("right password: %v", err)
	}
	srv.WaitFor(t, "carol@example.org", 5*time.Second)
	if n := srv.AuthFailures(); n != 1 {
		t.Errorf("server refused %d AUTH attempts, want 1 (the wrong password)", n)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

func TestMailerStartTLSIsMandatory(t *testing.T) {
	srv := smtptest.Start(t) // offers no STARTTLS
	m := mailerFor(t, srv, func(c *Config) { c.TLS = TLSStartTLS })
	err := m.Send(context.Background(), Message{To: "dave@example.org", Subject: "s", Text: "t"})
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err = %v, want a refusal to go on without STARTTLS", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d messages sent in clear", n)
	}
}

func TestMailerServerDown(t *testing.T) {
	srv := smtptest.Start(t)
	m := mailerFor(t, srv, nil)
	srv.Stop()
	start := time.Now()
	if err := m.Send(context.Background(), Message{To: "erin@example.org", Subject: "s", Text: "t"}); err == nil {
		t.Fatal("Send succeeded with the server down")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with the server down", d)
	}
}

// stallingServer accepts connections and never says anything: a hung mail server.
func stallingServer(t *testing.T) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func TestMailerTimeoutAndCancel(t *testing.T) {
	host, port := stallingServer(t)
	m, err := NewMailer(Config{Host: host, Port: port, TLS: TLSNone, From: "2fa@example.org", Timeout: 300 * time.Millisecond}, clock)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = m.Send(context.Background(), Message{To: "f@example.org", Subject: "s", Text: "t"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with a 300ms timeout", d)
	}

	slow, err := NewMailer(Config{Host: host, Port: port, TLS: TLSNone, From: "2fa@example.org", Timeout: time.Minute}, clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	if err := slow.Send(ctx, Message{To: "f@example.org", Subject: "s", Text: "t"}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want cancelled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancelled Send took %s", d)
	}
}
