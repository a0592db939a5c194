package notify

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// TLSMode says how the connection to the SMTP server is secured.
type TLSMode string

const (
	// TLSNone sends in clear. Credentials are then only sent to a loopback server.
	TLSNone TLSMode = "none"
	// TLSStartTLS connects in clear and upgrades with STARTTLS; a server without STARTTLS is
	// refused, never used in clear (usually port 587).
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (usually port 465).
	TLSImplicit TLSMode = "tls"
)

// Config is how the Mailer reaches the SMTP server.
type Config struct {
	Host     string        `yaml:"host"`
	Port     int           `yaml:"port"`     // default: 25, 587 or 465 by TLS mode
	TLS      TLSMode       `yaml:"tls"`      // default: starttls
	Username string        `yaml:"username"` // empty: no SMTP AUTH
	Password string        `yaml:"password"`
	From     string        `yaml:"from"`    // "matrix-2fa <2fa@example.org>" or a bare address
	Timeout  time.Duration `yaml:"timeout"` // for one whole message, connection included; default 30s
}

// DefaultTimeout bounds sending one message when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Defaults fills the fields left empty: TLS mode starttls, the port of the mode, the timeout.
func (c *Config) Defaults() {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Port == 0 {
		switch c.TLS {
		case TLSNone:
			c.Port = 25
		case TLSImplicit:
			c.Port = 465
		default:
			c.Port = 587
		}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// Verify reports every problem of the configuration at once (joined), or nil.
func (c Config) Verify() error {
	var errs []error
	if strings.TrimSpace(c.Host) == "" {
		errs = append(errs, errors.New("smtp host is empty"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp port %d is not between 1 and 65535", c.Port))
	}
	switch c.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("smtp tls %q is not one of none, starttls, tls", c.TLS))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("smtp password is set without a username"))
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, fmt.Errorf("smtp from %q is not an e-mail address: %w", c.From, err))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("smtp timeout %s is not positive", c.Timeout))
	}
	return errors.Join(errs...)
}
