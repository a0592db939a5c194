package notify

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name     string
		in       Config
		wantTLS  TLSMode
		wantPort int
	}{
		{"empty: starttls on 587", Config{}, TLSStartTLS, 587},
		{"none: 25", Config{TLS: TLSNone}, TLSNone, 25},
		{"tls: 465", Config{TLS: TLSImplicit}, TLSImplicit, 465},
		{"port kept", Config{TLS: TLSNone, Port: 2525}, TLSNone, 2525},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in
			c.Defaults()
			if c.TLS != tt.wantTLS || c.Port != tt.wantPort || c.Timeout != DefaultTimeout {
				t.Errorf("got tls %q port %d timeout %s", c.TLS, c.Port, c.Timeout)
			}
		})
	}
}

func TestConfigVerify(t *testing.T) {
	good := Config{Host: "mail.example.org", Port: 587, TLS: TLSStartTLS, From: "2FA <2fa@example.org>", Timeout: time.Second}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // every one must be reported
	}{
		{"good", func(*Config) {}, nil},
		{"bare from address", func(c *Config) { c.From = "2fa@example.org" }, nil},
		{"everything wrong at once", func(c *Config) {
			*c = Config{Port: 70000, TLS: "ssl", Password: "p", From: "not an address", Timeout: -1}
		}, []string{"host is empty", "port 70000", `tls "ssl"`, "password is set without a username", "from", "timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Verify()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Verify accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewMailerRefusesBadConfig(t *testing.T) {
	if _, err := NewMailer(Config{Host: "", From: "x"}, nil); err == nil {
		t.Fatal("NewMailer accepted a config without host and from")
	}
}
