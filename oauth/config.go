package oauth

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config configures the OAuth 2.0 API (off by default).
type Config struct {
	// Enabled serves the OAuth 2.0 API; it needs public_base_url (the issuer).
	Enabled bool `yaml:"enabled"`
	// DevHTTPLoopback lets web clients use http on loopback (127.0.0.1,
	// [::1], localhost) for client_uri and redirect URIs: for development
	// only, never in production.
	DevHTTPLoopback bool `yaml:"dev_http_loopback"`
	// CodeTTL is the lifetime of an authorization code (default 1m).
	CodeTTL time.Duration `yaml:"code_ttl"`
	// SignInTTL is how long the authorization page waits for the second
	// factor after the password (default 5m).
	SignInTTL time.Duration `yaml:"sign_in_ttl"`
	// HomeserverRefreshTokens asks the homeserver for its own refresh token
	// when the gateway logs in for a grant (off by default). A homeserver
	// that has them (Synapse with refreshable_access_token_lifetime) then
	// hands out expiring access tokens, which the grant's refresh renews at
	// the homeserver; one that has none (Dendrite) ignores the request.
	HomeserverRefreshTokens bool `yaml:"homeserver_refresh_tokens"`

	// Issuer is the gateway's public base URL (public_base_url), without a
	// trailing slash; AccountURI the account management page. Both are set
	// by the wiring, not read from the file.
	Issuer     string `yaml:"-"`
	AccountURI string `yaml:"-"`
	// AccountActions are the account management actions AccountURI serves.
	AccountActions []string `yaml:"-"`
}

// Defaults fills in the zero durations.
func (c *Config) Defaults() {
	if c.CodeTTL <= 0 {
		c.CodeTTL = time.Minute
	}
	if c.SignInTTL <= 0 {
		c.SignInTTL = 5 * time.Minute
	}
}

// Validate returns every problem with c (nil when there is none), given the
// configured public_base_url.
func (c Config) Validate(publicBaseURL string) []error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if publicBaseURL == "" {
		add("oauth.enabled needs public_base_url (the issuer)")
	} else if u, err := url.Parse(publicBaseURL); err == nil && (u.RawQuery != "" || u.Fragment != "") {
		add("public_base_url: the OAuth issuer may have no query or fragment, not %q", publicBaseURL)
	}
	if c.CodeTTL != 0 && (c.CodeTTL < 10*time.Second || c.CodeTTL > 10*time.Minute) {
		add("oauth.code_ttl: must be between 10s and 10m, not %s", c.CodeTTL)
	}
	if c.SignInTTL != 0 && (c.SignInTTL < 30*time.Second || c.SignInTTL > time.Hour) {
		add("oauth.sign_in_ttl: must be between 30s and 1h, not %s", c.SignInTTL)
	}
	return errs
}

// Issuer is publicBaseURL as an issuer identifier (no trailing slash).
func Issuer(publicBaseURL string) string { return strings.TrimRight(publicBaseURL, "/") }
