package oauth

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Dynamic client registration (RFC 7591) as the Matrix spec profiles it:
// public clients only (token_endpoint_auth_method "none"), the code grant
// with refresh, a required https client_uri, and redirect URIs that belong
// to the client:
//   - web clients: https on the client_uri's host or a subdomain of it;
//   - native clients: http on a loopback address (127.0.0.1 or [::1], any
//     port: RFC 8252 §7.3), or a private-use scheme "scheme:/path" whose
//     scheme is the reverse of the client_uri's host or of a subdomain of it
//     (client_uri https://example.com allows com.example.app:/callback);
//     https as for web clients.
// Config.DevHTTPLoopback lets web clients use http on loopback too.

const (
	grantCode    = "authorization_code"
	grantRefresh = "refresh_token"
)

// Client is a registered client, as the authorization page shows it.
type Client struct {
	ID              string   `json:"client_id"`
	RedirectURIs    []string `json:"redirect_uris"`
	ClientURI       string   `json:"client_uri"`
	Name            string   `json:"client_name,omitempty"`
	LogoURI         string   `json:"logo_uri,omitempty"`
	TOSURI          string   `json:"tos_uri,omitempty"`
	PolicyURI       string   `json:"policy_uri,omitempty"`
	ApplicationType string   `json:"application_type"`
	GrantTypes      []string `json:"grant_types"`
	ResponseTypes   []string `json:"response_types"`
	AuthMethod      string   `json:"token_endpoint_auth_method"`
	IssuedAt        int64    `json:"client_id_issued_at,omitempty"`
}

// DisplayName is the client's name, or its client_uri's host.
func (c *Client) DisplayName() string {
	if c.Name != "" {
		return c.Name
	}
	if u, err := url.Parse(c.ClientURI); err == nil {
		return u.Host
	}
	return c.ClientURI
}

// localized matches the localized variants of the human-readable fields.
var localized = regexp.MustCompile(`^(client_name|client_uri|logo_uri|tos_uri|policy_uri)#[A-Za-z0-9-]{1,35}$`)

// Register is POST /_matrix2fa/oauth2/register.
func (s *Server) Register(w http.ResponseWriter, r *http.Request) {
	l := httpx.Logger(r)
	body, err := httpx.ReadBody(w, r)
	if err != nil {
		s.writeError(w, l, oauthErr("invalid_client_metadata", "unreadable request body"))
		return
	}
	c, extra, err := s.parseClient(body)
	if err != nil {
		s.writeError(w, l, err)
		return
	}
	c.ID, c.IssuedAt = httpx.RandomToken(16), s.now().Unix()
	stored, err := c.document(extra)
	if err == nil {
		err = s.store.PutOAuthClient(r.Context(), storage.OAuthClient{ID: c.ID, Metadata: stored, CreatedAt: s.now()})
	}
	if err != nil {
		s.writeError(w, l, err)
		return
	}
	l.WithFields(map[string]any{"client_id": c.ID, "client_uri": c.ClientURI}).Info("oauth: client registered")
	w.Header().Set("Content-Type", "application/json")
	CORS(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	w.Write(stored)
}

// document is c with its localized fields, as stored and answered.
func (c *Client) document(extra map[string]string) ([]byte, error) {
	base, err := json.Marshal(c)
	if err != nil || len(extra) == 0 {
		return base, err
	}
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	for k, v := range extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// parseClient reads and checks client metadata; extra are its localized
// fields. Errors are *Error (invalid_client_metadata, invalid_redirect_uri).
func (s *Server) parseClient(body []byte) (*Client, map[string]string, error) {
	var c Client
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &c) != nil || json.Unmarshal(body, &raw) != nil {
		return nil, nil, oauthErr("invalid_client_metadata", "the body is not a JSON object of client metadata")
	}
	extra := map[string]string{}
	for k, v := range raw {
		var str string
		if localized.MatchString(k) && json.Unmarshal(v, &str) == nil {
			extra[k] = str
		}
	}
	if err := s.checkClient(&c, extra); err != nil {
		return nil, nil, err
	}
	return &c, extra, nil
}

// checkClient applies the defaults and the Matrix profile's rules to c.
func (s *Server) checkClient(c *Client, extra map[string]string) error {
	bad := func(d string) error { return oauthErr("invalid_client_metadata", d) }
	c.AuthMethod = cmpOr(c.AuthMethod, "none")
	c.ApplicationType = cmpOr(c.ApplicationType, "web")
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{grantCode}
	}
	if len(c.ResponseTypes) == 0 {
		c.ResponseTypes = []string{"code"}
	}
	switch {
	case c.AuthMethod != "none":
		return bad("only public clients (token_endpoint_auth_method none) can register")
	case c.ApplicationType != "web" && c.ApplicationType != "native":
		return bad("application_type must be web or native")
	case !slices.Contains(c.GrantTypes, grantCode) || slices.ContainsFunc(c.GrantTypes, func(g string) bool { return g != grantCode && g != grantRefresh }):
		return bad("grant_types must be authorization_code, optionally with refresh_token")
	case !slices.Equal(c.ResponseTypes, []string{"code"}):
		return bad("response_types must be [\"code\"]")
	}
	host, err := s.clientHost(c.ClientURI)
	if err != nil {
		return bad("client_uri: " + err.Error())
	}
	for name, v := range map[string]string{"logo_uri": c.LogoURI, "tos_uri": c.TOSURI, "policy_uri": c.PolicyURI} {
		if v != "" && !s.onHost(v, host) {
			return bad(name + " must be on the client_uri's host")
		}
	}
	for k, v := range extra {
		if !strings.HasPrefix(k, "client_name#") && !s.onHost(v, host) {
			return bad(k + " must be on the client_uri's host")
		}
	}
	if len(c.RedirectURIs) == 0 {
		return oauthErr("invalid_redirect_uri", "at least one redirect URI is required")
	}
	for _, u := range c.RedirectURIs {
		if err := s.checkRedirect(c.ApplicationType, host, u); err != nil {
			return oauthErr("invalid_redirect_uri", u+": "+err.Error())
		}
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clientHost checks a client_uri and returns its host name.
func (s *Server) clientHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return "", errors.New("must be an absolute URL")
	case u.User != nil:
		return "", errors.New("may have no user or password")
	case u.Scheme == "https", u.Scheme == "http" && s.cfg.DevHTTPLoopback && isLoopback(u.Hostname(), true):
		return strings.ToLower(u.Hostname()), nil
	}
	return "", errors.New("must be https")
}

// onHost reports whether raw is an https (or, in development, loopback http)
// URL on host or a subdomain of it.
func (s *Server) onHost(raw, host string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return false
	}
	ok := u.Scheme == "https" || (u.Scheme == "http" && s.cfg.DevHTTPLoopback && isLoopback(u.Hostname(), true))
	return ok && underHost(strings.ToLower(u.Hostname()), host)
}

// underHost reports whether name is host or a subdomain of it.
func underHost(name, host string) bool {
	return name != "" && (name == host || strings.HasSuffix(name, "."+host))
}

// isLoopback reports whether host is a loopback IP literal (or, when
// nameToo, "localhost").
func isLoopback(host string, nameToo bool) bool {
	if nameToo && strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// checkRedirect applies the redirect URI rules for a client of appType whose
// client_uri is on host.
func (s *Server) checkRedirect(appType, host, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a URI")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("may have no fragment")
	case u.User != nil:
		return errors.New("may have no user or password")
	case u.Scheme == "https" && u.Host != "":
		if underHost(strings.ToLower(u.Hostname()), host) {
			return nil
		}
		return errors.New("must be on the client_uri's host or a subdomain of it")
	case u.Scheme == "http" && appType == "native" && isLoopback(u.Hostname(), false):
		return nil
	case u.Scheme == "http" && s.cfg.DevHTTPLoopback && isLoopback(u.Hostname(), true):
		return nil
	case appType == "native" && u.Scheme != "http" && strings.Contains(u.Scheme, "."):
		if u.Host != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return errors.New("a private-use scheme URI must look like scheme:/path")
		}
		if !underHost(reverse(strings.ToLower(u.Scheme)), host) {
			return errors.New("the scheme must be the reverse of the client_uri's host or a subdomain of it")
		}
		return nil
	}
	return errors.New("not allowed for a " + appType + " client")
}

// reverse reverses the dot-separated labels of a name.
func reverse(name string) string {
	labels := strings.Split(name, ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// redirectMatches reports whether a requested redirect URI is one of the
// registered ones: exactly, or for loopback http ones up to the port (RFC
// 8252 §7.3).
func redirectMatches(registered []string, requested string) bool {
	if slices.Contains(registered, requested) {
		return true
	}
	req, err := url.Parse(requested)
	if err != nil || req.Scheme != "http" || !isLoopback(req.Hostname(), false) {
		return false
	}
	for _, r := range registered {
		reg, err := url.Parse(r)
		if err == nil && reg.Scheme == "http" && reg.Hostname() == req.Hostname() && reg.Path == req.Path &&
			reg.RawQuery == req.RawQuery && reg.User == nil && req.User == nil {
			return true
		}
	}
	return false
}
