package proxyconf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"text/template"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

// Defaults for Options.
const (
	DefaultGateway     = "http://127.0.0.1:8009"
	DefaultHomeserver  = "http://127.0.0.1:8008"
	DefaultMaxBodySize = 50 << 20 // Synapse's default max_upload_size
)

// Options is what a generated configuration is made of.
type Options struct {
	// Gateway and Homeserver are the upstreams' base URLs (http or https,
	// no path); DefaultGateway and DefaultHomeserver when empty.
	Gateway, Homeserver string
	// Listen is the proxy's port or host:port; "443", or "80" with
	// PlainHTTP, when empty.
	Listen string
	// ServerName is the host clients use (nginx server_name, Caddy site
	// address); any host when empty.
	ServerName string
	// PlainHTTP serves plain HTTP: for tests, or behind a TLS terminator.
	PlainHTTP bool
	// TLSCert and TLSKey are PEM files. Without them (and without
	// PlainHTTP) nginx cannot serve TLS, and Caddy gets a certificate for
	// ServerName itself (automatic HTTPS).
	TLSCert, TLSKey string
	// MaxBodySize bounds request bodies (media uploads), in bytes;
	// DefaultMaxBodySize when zero.
	MaxBodySize int64
	// Fragment (nginx only) leaves out what nginx's main file already has:
	// the file is then what goes inside http { } (conf.d). A Caddyfile is
	// one site block either way.
	Fragment bool
	// Routes are the gateway's routes; spec.Routes() when nil.
	Routes []spec.Route
}

// upstream is a parsed upstream base URL.
type upstream struct {
	Scheme, Host string // Host is host:port, port always present
	Name         string // the host name alone (TLS server name)
	URL          string
}

// params is what the templates see.
type params struct {
	Options
	Command          string
	GatewayUp        upstream
	HomeserverUp     upstream
	ListenHost       string // "" when the proxy listens on every address
	ListenPort       string
	NginxListen      string
	MaxBodySizeNginx string
	Rules            []Rule // against the normalised path
	RawRules         []Rule // against the raw request URI
	CaddyPattern     string
	CaddyRawPattern  string
	NginxPattern     string // the rules as one alternation (nginx's ~* makes it case-insensitive)
	NginxRawPattern  string
	CaddySite        string
	Inner            string // nginx: the "server" template's output, for http { }
}

// Validate reports every problem with o for format at once; nil when there
// is none.
func (o Options) Validate(format Format) []error {
	_, errs := o.params(format)
	return errs
}

// params fills in the defaults and derived values of o for format, and
// collects every problem.
func (o Options) params(format Format) (params, []error) {
	var errs []error
	add := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	p := params{Options: o}
	if p.Gateway == "" {
		p.Gateway = DefaultGateway
	}
	if p.Homeserver == "" {
		p.Homeserver = DefaultHomeserver
	}
	var err error
	if p.GatewayUp, err = parseUpstream(p.Gateway); err != nil {
		add("gateway: %v", err)
	}
	if p.HomeserverUp, err = parseUpstream(p.Homeserver); err != nil {
		add("homeserver: %v", err)
	}
	if p.GatewayUp.Host != "" && p.GatewayUp.Host == p.HomeserverUp.Host {
		add("gateway and homeserver are the same address %s", p.GatewayUp.Host)
	}
	if p.Listen == "" {
		p.Listen = "443"
		if p.PlainHTTP {
			p.Listen = "80"
		}
	}
	if host, port, err := splitListen(p.Listen); err != nil {
		add("listen: %v", err)
	} else {
		p.ListenHost, p.ListenPort = host, port
		p.NginxListen = port
		if host != "" {
			p.NginxListen = net.JoinHostPort(host, port)
		}
	}
	if strings.ContainsAny(p.ServerName, " \t\r\n;{}#\"'`$/:") {
		add("server name %q: want a host name", p.ServerName)
	}
	switch {
	case p.PlainHTTP && (p.TLSCert != "" || p.TLSKey != ""):
		add("plain HTTP and a TLS certificate: choose one")
	case (p.TLSCert == "") != (p.TLSKey == ""):
		add("TLS: give both a certificate and a key file")
	case !p.PlainHTTP && p.TLSCert == "" && format == Nginx:
		add("nginx: give a TLS certificate and key, or choose plain HTTP (behind a TLS terminator)")
	case !p.PlainHTTP && p.TLSCert == "" && format == Caddy && p.ServerName == "":
		add("caddy: automatic HTTPS needs a server name; or give a TLS certificate and key, or choose plain HTTP")
	}
	if p.Fragment && format == Caddy {
		add("caddy: the file is one site block already (a fragment is for nginx)")
	}
	for _, f := range []string{p.TLSCert, p.TLSKey} {
		if strings.ContainsAny(f, " \t\r\n;{}#\"'`$") {
			add("TLS file %q: spaces and ;{}#\"'`$ are not allowed in the path", f)
		}
	}
	if p.MaxBodySize == 0 {
		p.MaxBodySize = DefaultMaxBodySize
	}
	if p.MaxBodySize < 0 {
		add("max body size: must be positive, not %d", p.MaxBodySize)
	}
	p.MaxBodySizeNginx = strconv.FormatInt(p.MaxBodySize, 10)
	if p.MaxBodySize%(1<<20) == 0 {
		p.MaxBodySizeNginx = strconv.FormatInt(p.MaxBodySize>>20, 10) + "m"
	}
	routes := p.Routes
	if routes == nil {
		if routes, err = spec.Routes(); err != nil {
			add("%v", err)
		}
	}
	if p.Rules, err = Rules(routes); err != nil {
		add("%v", err)
	}
	p.RawRules = RawRules()
	p.CaddyPattern = caddyPattern(p.Rules)
	p.CaddyRawPattern = caddyPattern(p.RawRules)
	p.NginxPattern = alternation(p.Rules)
	p.NginxRawPattern = alternation(p.RawRules)
	p.CaddySite = p.ServerName + ":" + p.ListenPort
	if p.PlainHTTP {
		p.CaddySite = "http://" + p.CaddySite
	}
	return p, errs
}

// parseUpstream checks an upstream base URL: http or https, a host, no path,
// query or user information.
func parseUpstream(s string) (upstream, error) {
	u, err := url.Parse(s)
	if err != nil {
		return upstream{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return upstream{}, fmt.Errorf("%q: want an http:// or https:// URL", s)
	}
	if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return upstream{}, fmt.Errorf("%q: want scheme://host[:port] with no path", s)
	}
	if strings.ContainsAny(u.Host, " \t;{}#\"'`$") {
		return upstream{}, fmt.Errorf("%q: bad host", s)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := net.JoinHostPort(u.Hostname(), port)
	return upstream{Scheme: u.Scheme, Host: host, Name: u.Hostname(), URL: u.Scheme + "://" + host}, nil
}

// splitListen splits "PORT" or "HOST:PORT".
func splitListen(s string) (host, port string, err error) {
	if !strings.Contains(s, ":") {
		port = s
	} else if host, port, err = net.SplitHostPort(s); err != nil {
		return "", "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: want a port or host:port", s)
	}
	if strings.ContainsAny(host, " \t;{}#\"'`$/") {
		return "", "", fmt.Errorf("%q: bad host", s)
	}
	return host, port, nil
}

// Format names a reverse proxy whose configuration Generate writes.
type Format string

// The formats Generate writes.
const (
	Nginx Format = "nginx"
	Caddy Format = "caddy"
)

// Generate returns the configuration file for format; command is the
// command line that made it, recorded in the file's header. It returns the
// problems Validate finds (joined) or an error for an unknown format.
func Generate(format Format, o Options, command string) ([]byte, error) {
	var tmpl *template.Template
	switch format {
	case Nginx:
		tmpl = nginxTemplate
	case Caddy:
		tmpl = caddyTemplate
	default:
		return nil, fmt.Errorf("proxyconf: unknown format %q (want nginx or caddy)", format)
	}
	p, errs := o.params(format)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.Command = command
	var b bytes.Buffer
	if format == Nginx {
		if err := tmpl.ExecuteTemplate(&b, "server", p); err != nil {
			return nil, fmt.Errorf("proxyconf: %w", err)
		}
		p.Inner = strings.TrimPrefix(b.String(), "\n")
		b.Reset()
	}
	if err := tmpl.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("proxyconf: %w", err)
	}
	return b.Bytes(), nil
}
