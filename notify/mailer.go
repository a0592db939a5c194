package notify

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one e-mail to one address: a plain-text body and, optionally, an HTML alternative.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string // empty: text only
}

// Mailer sends messages through one SMTP server, one connection per message. It is safe for
// concurrent use.
type Mailer struct {
	cfg  Config
	opts []gomail.Option // for a new go-mail Client per message: those keep state per session
	now  func() time.Time
}

// NewMailer checks cfg (after Defaults) and returns a Mailer for it; it does not connect yet.
// now stamps the Date header; nil means time.Now. The error joins every problem of cfg.
func NewMailer(cfg Config, now func() time.Time) (*Mailer, error) {
	cfg.Defaults()
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	// Send's context enforces cfg.Timeout (it closes the connection); go-mail's own deadline is a
	// backstop a little later, so that a timeout always reads as context.DeadlineExceeded.
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(cfg.Timeout + time.Second)}
	switch cfg.TLS {
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	}
	if cfg.Username != "" {
		// The first of these the server offers. go-mail sends PLAIN and LOGIN only over TLS or
		// to a loopback server, so TLSNone never gives a password away on the network.
		opts = append(opts,
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	if _, err := gomail.NewClient(cfg.Host, opts...); err != nil {
		return nil, fmt.Errorf("notify: smtp client: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Mailer{cfg: cfg, opts: opts, now: now}, nil
}

// Send delivers msg, giving up after the configured timeout or when ctx ends. The error says
// what failed (address, dial, TLS, authentication, refusal by the server); it never contains
// the message body.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	em := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := em.From(m.cfg.From); err != nil {
		return fmt.Errorf("notify: from address: %w", err)
	}
	if err := em.To(msg.To); err != nil {
		return fmt.Errorf("notify: recipient address: %w", err)
	}
	em.Subject(msg.Subject)
	em.SetDateWithValue(m.now())
	em.SetMessageID()
	em.SetBodyString(gomail.TypeTextPlain, msg.Text)
	if msg.HTML != "" {
		em.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	// go-mail honours ctx only while dialling; closing the connection when ctx ends stops a
	// session with a server that stalls, so a cancelled send returns at once.
	var stops []func() bool
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	dial := func(dialCtx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		var err error
		if m.cfg.TLS == TLSImplicit {
			d := &tls.Dialer{Config: &tls.Config{ServerName: m.cfg.Host, MinVersion: tls.VersionTLS12}}
			conn, err = d.DialContext(dialCtx, network, addr) // a *tls.Conn: go-mail sees TLS
		} else {
			conn, err = new(net.Dialer).DialContext(dialCtx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		stops = append(stops, context.AfterFunc(ctx, func() { _ = conn.Close() }))
		return conn, nil
	}
	client, err := gomail.NewClient(m.cfg.Host, slices.Concat(m.opts, []gomail.Option{gomail.WithDialContextFunc(dial)})...)
	if err != nil {
		return fmt.Errorf("notify: smtp client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, em); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil { // the timeout or the caller ended it
			return fmt.Errorf("notify: sending mail via %s: %w: %w", client.ServerAddr(), ctxErr, err)
		}
		return fmt.Errorf("notify: sending mail via %s: %w", client.ServerAddr(), err)
	}
	return nil
}

// SendCode composes the one-time code e-mail c (see ComposeCode) and sends it now, so that the
// caller can tell the user when it could not be sent.
func (m *Mailer) SendCode(ctx context.Context, c CodeMail) error {
	msg, err := ComposeCode(c)
	if err != nil {
		return err
	}
	return m.Send(ctx, msg)
}
