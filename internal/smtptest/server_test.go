package smtptest

import (
	"context"
	"errors"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// send delivers raw with the standard library's client, a second SMTP implementation.
func send(addr string, auth smtp.Auth, from string, to []string, raw string) error {
	return smtp.SendMail(addr, auth, from, to, []byte(strings.ReplaceAll(raw, "\n", "\r\n")))
}

func TestParse(t *testing.T) {
	tests := []struct {
		name            string
		raw             string
		subject, text   string
		html            string
		to              []string
		wantErrContains string
	}{
		{
			name:    "plain, no headers about content",
			raw:     "To: a@example.org\nSubject: hi\n\nline one\nline two\n",
			subject: "hi", text: "line one\nline two\n", to: []string{"a@example.org"},
		},
		{
			name: "quoted-printable and encoded subject",
			raw: "To: \"A\" <a@example.org>, b@example.org\nSubject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\n" +
				"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
				"caf=C3=A9 and a long=\n line\n",
			subject: "Grüße", text: "café and a long line\n", to: []string{"a@example.org", "b@example.org"},
		},
		{
			name: "multipart alternative with base64 html",
			raw: "To: a@example.org\nSubject: alt\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n" +
				"--XX\nContent-Type: text/plain; charset=UTF-8\n\ntext part\n" +
				"--XX\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: base64\n\nPHA+aHRtbDwv\ncD4=\n" +
				"--XX--\n",
			subject: "alt", text: "text part", html: "<p>html</p>", to: []string{"a@example.org"},
		},
		{
			name:            "bad content type",
			raw:             "Subject: x\nContent-Type: multipart/mixed; boundary=\"\n\nbody\n",
			wantErrContains: "Content-Type",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse("from@example.org", []string{"a@example.org"}, []byte(strings.ReplaceAll(tt.raw, "\n", "\r\n")))
			if tt.wantErrContains != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrContains) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErrContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.subject || m.Text != tt.text || m.HTML != tt.html || strings.Join(m.To, ",") != strings.Join(tt.to, ",") {
				t.Errorf("got subject %q text %q html %q to %q; want %q %q %q %q", m.Subject, m.Text, m.HTML, m.To, tt.subject, tt.text, tt.html, tt.to)
			}
		})
	}
}

func TestServerDeliversAndWaits(t *testing.T) {
	s := Start(t)
	done := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // Next must wait for it
		done <- send(s.Addr(), nil, "gw@example.org", []string{"Alice@Example.org", "bob@example.org"},
			"To: alice@example.org\nSubject: first\n\nhello\n")
	}()
	m := s.WaitFor(t, "alice@example.org", 5*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m.Subject != "first" || m.Text != "hello\n" || m.From != "gw@example.org" {
		t.Errorf("got %+v", m)
	}
	if err := send(s.Addr(), nil, "gw@example.org", []string{"alice@example.org"}, "Subject: second\n\nagain\n"); err != nil {
		t.Fatal(err)
	}
	if got := s.WaitFor(t, "ALICE@example.org", time.Second).Subject; got != "second" {
		t.Errorf("second Next returned %q, want the next message", got)
	}
	if got := s.WaitFor(t, "bob@example.org", time.Second).Subject; got != "first" {
		t.Errorf("bob's first message is %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx, "alice@example.org"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing unread: err = %v, want deadline exceeded", err)
	}
	if n := len(s.Received("alice@example.org")); n != 2 {
		t.Errorf("Received(alice) = %d messages, want 2", n)
	}
	if n := len(s.Messages()); n != 2 {
		t.Errorf("Messages() = %d, want 2", n)
	}
}

func TestServerAuth(t *testing.T) {
	s := Start(t, WithAuth("user", "secret"))
	raw := "Subject: a\n\nb\n"
	// net/smtp sends PLAIN without TLS only to localhost, which 127.0.0.1 is.
	if err := send(s.Addr(), nil, "f@example.org", []string{"x@example.org"}, raw); err == nil {
		t.Error("unauthenticated mail accepted")
	}
	if err := send(s.Addr(), smtp.PlainAuth("", "user", "wrong", "127.0.0.1"), "f@example.org", []string{"x@example.org"}, raw); err == nil {
		t.Error("wrong password accepted")
	}
	if s.AuthFailures() != 1 {
		t.Errorf("AuthFailures = %d, want 1", s.AuthFailures())
	}
	if err := send(s.Addr(), smtp.PlainAuth("", "user", "secret", "127.0.0.1"), "f@example.org", []string{"x@example.org"}, raw); err != nil {
		t.Fatalf("right password: %v", err)
	}
	s.WaitFor(t, "x@example.org", time.Second)
}

func TestServerStopAndRestart(t *testing.T) {
	s := Start(t)
	s.Stop()
	s.Stop() // twice is fine
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("stopped server still accepts connections")
	}
	if err := send(s.Addr(), nil, "f@example.org", []string{"x@example.org"}, "Subject: a\n\nb\n"); err == nil {
		t.Fatal("mail delivered to a stopped server")
	}
	s.Restart(t)
	if err := send(s.Addr(), nil, "f@example.org", []string{"x@example.org"}, "Subject: back\n\nb\n"); err != nil {
		t.Fatal(err)
	}
	if got := s.WaitFor(t, "x@example.org", time.Second).Subject; got != "back" {
		t.Errorf("subject %q", got)
	}
}
