package smtptest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Server is an SMTP server on 127.0.0.1 that accepts every message and keeps it for the test.
// Its methods are safe for concurrent use.
type Server struct {
	host string
	port int
	user string // AUTH PLAIN credentials; empty means no AUTH
	pass string

	mu       sync.Mutex
	srv      *smtp.Server
	lis      net.Listener
	done     chan struct{} // closed when the current Serve returns
	all      []Message
	unread   map[string][]Message // by lower-cased recipient address
	arrived  chan struct{}        // closed and replaced whenever a message arrives
	authFail int
}

// Option changes how Start sets up a Server.
type Option func(*Server)

// WithAuth makes the server offer AUTH PLAIN (also without TLS, as it listens on loopback only)
// and refuse mail from a client that has not authenticated with user and pass.
func WithAuth(user, pass string) Option {
	return func(s *Server) { s.user, s.pass = user, pass }
}

// Start listens on a random port of 127.0.0.1 and serves until the test ends. It fails the test
// when the server cannot listen.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{host: "127.0.0.1", unread: map[string][]Message{}, arrived: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(s.host, "0"))
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	s.serve(l)
	t.Cleanup(s.Stop)
	return s
}

// Host returns the address the server listens on, "127.0.0.1".
func (s *Server) Host() string { return s.host }

// Port returns the TCP port the server listens on; it stays the same across Stop and Restart.
func (s *Server) Port() int { return s.port }

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

func (s *Server) serve(l net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	srv.AllowInsecureAuth = true // loopback only
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.lis, s.done = srv, l, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(l) // returns smtp.ErrServerClosed after Stop
	}()
}

// Stop closes the listener and every open connection, so that clients get "connection refused"
// until Restart: an SMTP outage. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, l, done := s.srv, s.lis, s.done
	s.srv, s.lis = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close() // closes the connections (and the listener, if Serve has registered it yet)
	_ = l.Close()   // so that Serve returns even when Close ran before Serve started
	<-done
}

// Restart serves again on the same port after Stop. It fails the test when the port cannot be
// bound again (another process took it in between).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return
	}
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("smtptest: listen again on %s: %v", s.Addr(), err)
	}
	s.serve(l)
}

// Messages returns every message delivered so far, in order of arrival.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.all...)
}

// Received returns every message delivered so far to the address to (envelope recipient,
// compared without case), whether or not Next has returned it.
func (s *Server) Received(to string) []Message {
	to = strings.ToLower(to)
	var out []Message
	for _, m := range s.Messages() {
		for _, r := range m.Rcpt {
			if strings.ToLower(r) == to {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// AuthFailures returns how many AUTH attempts the server refused.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Next returns the oldest message to the address to that Next has not returned yet, waiting
// for one until ctx is done; then it returns ctx's error.
func (s *Server) Next(ctx context.Context, to string) (Message, error) {
	key := strings.ToLower(to)
	for {
		s.mu.Lock()
		if q := s.unread[key]; len(q) > 0 {
			m := q[0]
			s.unread[key] = q[1:]
			s.mu.Unlock()
			return m, nil
		}
		arrived := s.arrived
		s.mu.Unlock()
		select {
		case <-arrived:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("smtptest: no message to %s: %w", to, ctx.Err())
		}
	}
}

// WaitFor is Next with a timeout that fails the test when no message to the address arrives
// in time.
func (s *Server) WaitFor(t testing.TB, to string, timeout time.Duration) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := s.Next(ctx, to)
	if err != nil {
		t.Fatalf("%v (waited %s; %d messages in all)", err, timeout, len(s.Messages()))
	}
	return m
}

func (s *Server) deliver(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, m)
	seen := map[string]bool{}
	for _, r := range m.Rcpt {
		key := strings.ToLower(r)
		if !seen[key] {
			seen[key] = true
			s.unread[key] = append(s.unread[key], m)
		}
	}
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// session is one SMTP transaction state; go-smtp makes one per connection.
type session struct {
	s      *Server
	authed bool
	from   string
	rcpt   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.user == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.user || pass != ss.s.pass {
			ss.s.mu.Lock()
			ss.s.authFail++
			ss.s.mu.Unlock()
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.user != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.user != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.rcpt = append(ss.rcpt, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := parse(ss.from, ss.rcpt, raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unparsable message: " + err.Error()}
	}
	ss.s.deliver(m)
	return nil
}

func (ss *session) Reset() { ss.from, ss.rcpt = "", nil }

func (ss *session) Logout() error { return nil }
