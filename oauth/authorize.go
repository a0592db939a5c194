package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Request is a checked authorization request.
type Request struct {
	Client      *Client
	RedirectURI string
	// Mode is the response mode: "query" or "fragment".
	Mode      string
	State     string
	Challenge string
	Scope     string
	DeviceID  string
	// Create: the client asked for user registration (prompt=create); the
	// page shows it when Registration is possible, else the sign-in.
	Create bool
	// LoginHint is the user ID of an MSC4198 login_hint ("mxid:@alice:example.org"):
	// the page fills the username field with it, nothing more.
	LoginHint string
}

// challengeChars is a PKCE code challenge or verifier (RFC 7636 §4.1).
var challengeChars = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// hintUserID is a user ID a login_hint may carry: "@localpart:server", the
// localpart printable ASCII without ":" (historical user IDs), the server a
// host name or IP literal with an optional port.
var hintUserID = regexp.MustCompile(`^@[!-9;-~]+:[A-Za-z0-9.\-\[\]:]+$`)

// loginHint is the user ID of an MSC4198 login hint, or "" (other hints,
// such as e-mail addresses, and anything malformed are ignored).
func loginHint(h string) string {
	id, ok := strings.CutPrefix(h, "mxid:")
	if !ok || len(id) > 255 || !hintUserID.MatchString(id) {
		return ""
	}
	return id
}

// ErrNoClient and ErrBadRedirect are authorization request errors that must
// not redirect (RFC 6749 §4.1.2.1): the page shows them.
var (
	ErrNoClient    = errors.New("oauth: unknown client_id")
	ErrBadRedirect = errors.New("oauth: redirect_uri is missing or not registered for this client")
)

// ParseAuthorize checks an authorization request's query. Without a known
// client and one of its redirect URIs it returns a nil Request and
// ErrNoClient or ErrBadRedirect; other problems come with the Request, as an
// *Error to send to the client's redirect URI.
func (s *Server) ParseAuthorize(ctx context.Context, q url.Values) (*Request, error) {
	stored, err := s.store.OAuthClient(ctx, q.Get("client_id"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNoClient
	}
	if err != nil {
		return nil, err
	}
	var c Client
	if err := json.Unmarshal(stored.Metadata, &c); err != nil {
		return nil, err
	}
	req := &Request{Client: &c, RedirectURI: q.Get("redirect_uri"), Mode: cmpOr(q.Get("response_mode"), "query"), State: q.Get("state"),
		Create: wantsCreate(q.Get("prompt")), LoginHint: loginHint(q.Get("login_hint"))}
	if req.RedirectURI == "" || !redirectMatches(c.RedirectURIs, req.RedirectURI) {
		return nil, ErrBadRedirect
	}
	if req.Mode != "query" && req.Mode != "fragment" {
		req.Mode = "query"
		return req, oauthErr("invalid_request", "response_mode must be query or fragment")
	}
	if q.Get("response_type") != "code" {
		return req, oauthErr("unsupported_response_type", "response_type must be code")
	}
	req.Challenge = q.Get("code_challenge")
	if q.Get("code_challenge_method") != "S256" || !challengeChars.MatchString(req.Challenge) {
		return req, oauthErr("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
	}
	sc, err := parseScope(q.Get("scope"))
	if err != nil {
		return req, err
	}
	req.Scope, req.DeviceID = sc.Granted, sc.DeviceID
	return req, nil
}

// Redirect is the client's redirect URI with params (and state) in the
// request's response mode.
func (r *Request) Redirect(params url.Values) string {
	if r.State != "" {
		params.Set("state", r.State)
	}
	u, err := url.Parse(r.RedirectURI)
	if err != nil { // checked at registration and in ParseAuthorize
		return r.RedirectURI
	}
	if r.Mode == "fragment" {
		u.Fragment, u.RawFragment = "", ""
		return u.String() + "#" + params.Encode()
	}
	if u.RawQuery != "" {
		u.RawQuery += "&" + params.Encode()
	} else {
		u.RawQuery = params.Encode()
	}
	return u.String()
}

// ErrorRedirect is the redirect that reports err to the client: an *Error
// as itself, anything else as server_error.
func (r *Request) ErrorRedirect(err error) string {
	var oe *Error
	if !errors.As(err, &oe) {
		oe = &Error{Code: "server_error"}
	}
	p := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		p.Set("error_description", oe.Description)
	}
	return r.Redirect(p)
}

// Denied is the redirect that tells the client the user said no.
func (r *Request) Denied() string {
	return r.ErrorRedirect(oauthErr("access_denied", "the user did not allow the sign-in"))
}

// IssueCode keeps login, the homeserver's answer to the login made for req
// (with its device ID), behind a new single-use authorization code valid
// for CodeTTL, and returns the redirect that hands the code to the client.
func (s *Server) IssueCode(ctx context.Context, req *Request, login *mautrix.RespLogin) (string, error) {
	body, err := json.Marshal(homeLoginOf(login, s.now()))
	if err != nil {
		return "", err
	}
	sealed, err := s.seal(string(login.UserID), body)
	if err != nil {
		return "", err
	}
	code := httpx.RandomToken(32)
	now := s.now()
	err = s.store.PutOAuthCode(ctx, storage.OAuthCode{Hash: hash(code), ClientID: req.Client.ID, RedirectURI: req.RedirectURI,
		Challenge: req.Challenge, Scope: req.Scope, UserID: string(login.UserID), DeviceID: string(login.DeviceID),
		Login: sealed, CreatedAt: now, ExpiresAt: now.Add(s.cfg.CodeTTL)})
	if err != nil {
		return "", err
	}
	return req.Redirect(url.Values{"code": {code}}), nil
}

// ClientHost is the host a redirect URI sends the browser to, for a page's
// Content-Security-Policy form-action: "scheme://host" for http(s), "scheme:"
// for a private-use scheme.
func (r *Request) ClientHost() string {
	u, err := url.Parse(r.RedirectURI)
	if err != nil {
		return ""
	}
	if u.Host == "" {
		return strings.ToLower(u.Scheme) + ":"
	}
	return u.Scheme + "://" + u.Host
}
