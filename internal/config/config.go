package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/admin"
	"github.com/matrix-2fa/matrix-2fa/notify"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/provider"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// Config is the whole configuration.
type Config struct {
	// Listen is the gateway's address.
	Listen string `yaml:"listen"`
	// Homeserver is the base URL of the homeserver's client API (on loopback).
	Homeserver string `yaml:"homeserver"`
	// PublicBaseURL is the URL clients use to reach the gateway; used in the
	// pages and redirects. Empty: derived from each request.
	PublicBaseURL string `yaml:"public_base_url"`
	// DataDir holds the SQLite file and the key file unless they are set.
	DataDir string `yaml:"data_dir"`
	// Database is the SQLite file (default DataDir/matrix-2fa.db), or a
	// postgres:// URL (PostgreSQL, shared by several gateway replicas).
	Database string `yaml:"database"`
	// SQLiteSynchronous is NORMAL (default) or FULL.
	SQLiteSynchronous string `yaml:"sqlite_synchronous"`
	// KeyFile holds the base64 encryption key (default DataDir/secret.key,
	// created with mode 0600 on first run).
	KeyFile string `yaml:"key_file"`
	// Key is the base64 encryption key inline; it takes precedence over KeyFile.
	Key string `yaml:"key"`

	TwoFactor account.Config `yaml:"two_factor"`
	Login     Login          `yaml:"login"`
	UIA       UIA            `yaml:"uia"`
	WhoAmITTL time.Duration  `yaml:"whoami_cache_ttl"`
	// VersionsCacheTTL is how long the homeserver's answer to an
	// unauthenticated GET /_matrix/client/versions is served from memory
	// (0: every request goes through).
	VersionsCacheTTL time.Duration `yaml:"versions_cache_ttl"`
	Log              Log           `yaml:"log"`
	Server           Server        `yaml:"server"`
	Metrics          Metrics       `yaml:"metrics"`
	// SMTP is the mail server for e-mail codes and notifications (no host:
	// no mail at all).
	SMTP notify.Config `yaml:"smtp"`
	// EmailCodes offers codes by e-mail as a second factor (needs SMTP).
	EmailCodes bool `yaml:"email_codes"`
	// Notify mails users when 2FA changes on their account (needs SMTP).
	Notify bool `yaml:"notify"`
	// ServerNoticesToken, a homeserver admin's access token, also sends
	// those notices as Matrix server notices.
	ServerNoticesToken string    `yaml:"server_notices_token"`
	RateLimit          RateLimit `yaml:"rate_limit"`
	// AdminAPI passes the homeserver's admin APIs (/_synapse/admin,
	// /_dendrite/admin) through the gateway; off they are refused.
	AdminAPI bool `yaml:"homeserver_admin_api"`
	// Admin is the gateway's own admin API and page (off by default).
	Admin admin.Config `yaml:"admin"`
	// Provider is the provider API for other login paths (off by default).
	Provider provider.Config `yaml:"provider"`
	// OAuth is the Matrix OAuth 2.0 API (off by default; needs public_base_url).
	OAuth oauth.Config `yaml:"oauth"`
	// Policy is the enforcement policy: whom 2FA is required of (none by default).
	Policy policy.Config `yaml:"policy"`
	// RememberBrowser is "remember this browser" on the sign-in and OAuth pages.
	RememberBrowser RememberBrowser `yaml:"remember_browser"`
	// BotTokens are the account page's tokens for bots and scripts.
	BotTokens BotTokens `yaml:"bot_tokens"`
	// TrustedClients lets the same token from the same client skip the 2FA
	// stage for a while after one (issue 11; window 0 turns it off).
	TrustedClients trust.Config `yaml:"trusted_clients"`
}

// RememberBrowser configures "remember this browser" on the sign-in and OAuth pages.
type RememberBrowser struct {
	// TTL is how long a remembered browser skips the code (0: not offered).
	TTL time.Duration `yaml:"ttl"`
}

// BotTokens configures the tokens for bots and scripts of the account page.
type BotTokens struct {
	// MaxPerUser is how many a user may hold at once (0: not offered).
	MaxPerUser int `yaml:"max_per_user"`
}

// Server configures the listener's limits.
type Server struct {
	ReadHeaderTimeout      time.Duration `yaml:"read_header_timeout"`
	BodyTimeout            time.Duration `yaml:"body_timeout"`
	PassThroughBodyTimeout time.Duration `yaml:"passthrough_body_timeout"`
	IdleTimeout            time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes         int           `yaml:"max_header_bytes"`
	// TrustedProxies are addresses or CIDR prefixes of reverse proxies whose
	// X-Forwarded-For names the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	// Listen is the address of the /metrics listener ("" turns it off);
	// keep it off the public network.
	Listen string `yaml:"listen"`
}

// RateLimit limits the unauthenticated entry points per client address.
type RateLimit struct {
	// Burst requests at once, one more every Every; Burst 0 turns it off.
	Burst int           `yaml:"burst"`
	Every time.Duration `yaml:"every"`
}

// Login configures the login interception and the "Sign in with 2FA" page.
type Login struct {
	// SessionTTL is how long a held login waits for its second factor.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// TokenTTL is the lifetime of a loginToken from the sign-in page.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// SSOProviderID and SSOProviderName name the identity provider offered in GET /login.
	SSOProviderID   string `yaml:"sso_provider_id"`
	SSOProviderName string `yaml:"sso_provider_name"`
	// RedirectAllowlist lists URL prefixes the sign-in page may redirect to
	// without asking the user.
	RedirectAllowlist []string `yaml:"redirect_allowlist"`
	// ForbidBarePassword answers a correct password of an enrolled user with
	// 403 M_FORBIDDEN pointing to "Sign in with 2FA", instead of the 401 login
	// challenge, for deployments whose clients cannot do UIA on /login.
	ForbidBarePassword bool `yaml:"forbid_bare_password"`
	// PasswordWithCode accepts the TOTP code typed right after the password.
	PasswordWithCode bool `yaml:"password_with_code"`
	// HidePasswordFlow leaves m.login.password out of GET /login.
	HidePasswordFlow bool `yaml:"hide_password_flow"`
	// MaxHeldPerUser bounds a user's logins waiting for their second factor.
	MaxHeldPerUser int `yaml:"max_held_per_user"`
	// FallbackCompletesLogin lets the fallback page complete a held /login.
	FallbackCompletesLogin bool `yaml:"fallback_completes_login"`
}

// UIA configures user-interactive authentication sessions.
type UIA struct {
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns the configuration used where the file says nothing.
func Default() Config {
	return Config{
		Listen:            "127.0.0.1:8009",
		DataDir:           "./data",
		SQLiteSynchronous: "NORMAL",
		TwoFactor:         account.DefaultConfig(),
		OAuth:             oauth.Config{CodeTTL: time.Minute, SignInTTL: 5 * time.Minute},
		Policy:            policy.Config{Enforce: policy.ModeNone, Grace: policy.DefaultGrace},
		RememberBrowser:   RememberBrowser{TTL: 720 * time.Hour},
		BotTokens:         BotTokens{MaxPerUser: 10},
		TrustedClients:    trust.DefaultConfig(),
		Login: Login{
			SessionTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute,
			SSOProviderID: "matrix-2fa", SSOProviderName: "two-factor sign-in",
			MaxHeldPerUser: 3, PasswordWithCode: true,
		},
		Server: Server{ReadHeaderTimeout: 10 * time.Second, BodyTimeout: 30 * time.Second,
			PassThroughBodyTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			TrustedProxies: []string{"127.0.0.0/8", "::1"}},
		RateLimit:        RateLimit{Burst: 20, Every: 3 * time.Second},
		UIA:              UIA{SessionTTL: 15 * time.Minute},
		WhoAmITTL:        30 * time.Second,
		VersionsCacheTTL: 2 * time.Second,
		Log:              Log{Level: "info", Format: "text"},
	}
}

// Load reads the YAML file at path over the defaults; an empty path means
// defaults only. Unknown keys are an error. It does not validate.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// io.EOF: an empty (or comments-only) file means "no settings".
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config: %s: %w", path, err)
	}
	// "redirect_allowlist: []" (as generate-config writes it) is the default.
	if len(c.Login.RedirectAllowlist) == 0 {
		c.Login.RedirectAllowlist = nil
	}
	if len(c.Admin.Admins) == 0 {
		c.Admin.Admins = nil
	}
	if len(c.Admin.Scoped) == 0 {
		c.Admin.Scoped = nil
	}
	for _, l := range []*[]string{&c.Policy.Users, &c.Policy.Patterns, &c.Policy.Exempt} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c, nil
}

// Postgres reports whether Database is a PostgreSQL URL.
func (c Config) Postgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// DatabasePath is the SQLite file path.
func (c Config) DatabasePath() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, "matrix-2fa.db")
}

// KeyFilePath is the key file path.
func (c Config) KeyFilePath() string {
	if c.KeyFile != "" {
		return c.KeyFile
	}
	return filepath.Join(c.DataDir, "secret.key")
}

// Validate returns every problem with c at once (nil when there is none).
func (c Config) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Homeserver == "" {
		add("homeserver: required (the homeserver's client API base URL, e.g. http://127.0.0.1:8008)")
	} else if u, err := url.Parse(c.Homeserver); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("homeserver: %q is not an http(s) URL", c.Homeserver)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port", c.Listen)
	}
	if c.PublicBaseURL != "" {
		if u, err := url.Parse(c.PublicBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("public_base_url: %q is not an http(s) URL", c.PublicBaseURL)
		}
	}
	if c.DataDir == "" && (c.Database == "" || (c.KeyFile == "" && c.Key == "")) {
		add("data_dir: required unless database and key_file (or key) are set")
	}
	if s := strings.ToUpper(c.SQLiteSynchronous); s != "NORMAL" && s != "FULL" {
		add("sqlite_synchronous: must be NORMAL or FULL, not %q", c.SQLiteSynchronous)
	}
	if c.Key != "" {
		if _, err := account.ParseKey(c.Key); err != nil {
			add("key: %v", err)
		}
	}
	for _, err := range c.TwoFactor.WithDefaults().Validate() {
		add("two_factor: %v", err)
	}
	if t := c.RememberBrowser.TTL; t != 0 && (t < time.Hour || t > 366*24*time.Hour) {
		add("remember_browser.ttl: must be 0 (off) or between 1h and 8784h (a year), not %s", t)
	}
	if n := c.BotTokens.MaxPerUser; n < 0 || n > 100 {
		add("bot_tokens.max_per_user: must be between 0 (off) and 100, not %d", n)
	}
	if c.Login.SessionTTL < 30*time.Second || c.Login.SessionTTL > time.Hour {
		add("login.session_ttl: must be between 30s and 1h, not %s", c.Login.SessionTTL)
	}
	if c.Login.TokenTTL < 10*time.Second || c.Login.TokenTTL > 10*time.Minute {
		add("login.token_ttl: must be between 10s and 10m, not %s", c.Login.TokenTTL)
	}
	if c.Login.SSOProviderID == "" || strings.ContainsAny(c.Login.SSOProviderID, "/?#% ") {
		add("login.sso_provider_id: must be a non-empty URL path segment, not %q", c.Login.SSOProviderID)
	}
	if c.Login.SSOProviderName == "" {
		add("login.sso_provider_name: required")
	}
	for _, p := range c.Login.RedirectAllowlist {
		if u, err := url.Parse(p); err != nil || u.Scheme == "" || u.Host == "" {
			add("login.redirect_allowlist: %q is not an absolute URL prefix", p)
		}
	}
	if c.Login.MaxHeldPerUser < 1 || c.Login.MaxHeldPerUser > 100 {
		add("login.max_held_per_user: must be between 1 and 100, not %d", c.Login.MaxHeldPerUser)
	}
	for name, d := range map[string]time.Duration{"server.read_header_timeout": c.Server.ReadHeaderTimeout,
		"server.body_timeout": c.Server.BodyTimeout, "server.passthrough_body_timeout": c.Server.PassThroughBodyTimeout,
		"server.idle_timeout": c.Server.IdleTimeout} {
		if d < time.Second || d > 24*time.Hour {
			add("%s: must be between 1s and 24h, not %s", name, d)
		}
	}
	if c.Server.MaxHeaderBytes < 4<<10 || c.Server.MaxHeaderBytes > 1<<20 {
		add("server.max_header_bytes: must be between 4096 and 1048576, not %d", c.Server.MaxHeaderBytes)
	}
	if _, err := ratelimit.ParseProxies(c.Server.TrustedProxies); err != nil {
		add("server.trusted_proxies: %v", err)
	}
	if c.SMTP.Host != "" {
		smtp := c.SMTP
		smtp.Defaults()
		if err := smtp.Verify(); err != nil {
			add("smtp: %v", err)
		}
	} else if c.EmailCodes || c.Notify {
		add("email_codes and notify need smtp.host")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			add("metrics.listen: %q is not host:port", c.Metrics.Listen)
		}
	}
	if c.RateLimit.Burst < 0 || (c.RateLimit.Burst > 0 && c.RateLimit.Every <= 0) {
		add("rate_limit: burst must be 0 (off) or positive with a positive every, not %d every %s", c.RateLimit.Burst, c.RateLimit.Every)
	}
	if c.UIA.SessionTTL < time.Minute || c.UIA.SessionTTL > 48*time.Hour {
		add("uia.session_ttl: must be between 1m and 48h, not %s", c.UIA.SessionTTL)
	}
	if c.WhoAmITTL < 0 || c.WhoAmITTL > 10*time.Minute {
		add("whoami_cache_ttl: must be between 0 and 10m, not %s", c.WhoAmITTL)
	}
	if c.VersionsCacheTTL < 0 || c.VersionsCacheTTL > 10*time.Second {
		add("versions_cache_ttl: must be between 0 (off) and 10s, not %s", c.VersionsCacheTTL)
	}
	errs = append(errs, c.Admin.Validate()...)
	errs = append(errs, c.Provider.Validate()...)
	errs = append(errs, c.OAuth.Validate(c.PublicBaseURL)...)
	errs = append(errs, c.Policy.Validate()...)
	if c.Policy.On() && c.PublicBaseURL == "" {
		errs = append(errs, errors.New("policy: enforce needs public_base_url (the enrolment page named in the refusals)"))
	}
	errs = append(errs, c.TrustedClients.Validate()...)
	switch strings.ToLower(c.Log.Level) {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		add("log.level: %q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	if f := strings.ToLower(c.Log.Format); f != "text" && f != "json" {
		add("log.format: must be text or json, not %q", c.Log.Format)
	}
	return errs
}
