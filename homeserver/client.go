package homeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
)

// Client API paths used by this package.
const (
	pathWhoAmI  = "/_matrix/client/v3/account/whoami"
	pathLogin   = "/_matrix/client/v3/login"
	pathLogout  = "/_matrix/client/v3/logout"
	pathDevices = "/_matrix/client/v3/devices/"
	pathRefresh = "/_matrix/client/v3/refresh"
)

// Defaults for Options and the default HTTP client.
const (
	DefaultWhoAmITTL = 30 * time.Second
	// DefaultRequestTimeout bounds each call of the default HTTP client (Do,
	// WhoAmI, Login, …). The Proxy path has no overall timeout.
	DefaultRequestTimeout = 30 * time.Second
	// MaxResponseBody is the largest upstream body Do reads.
	MaxResponseBody = 1 << 20
)

// ErrResponseTooLarge is returned (wrapped) by Do when the homeserver's answer
// is longer than MaxResponseBody.
var ErrResponseTooLarge = errors.New("homeserver: response body larger than 1 MiB")

// ErrUnreachable wraps a transport failure: the homeserver could not be
// reached, or did not answer in full (a client that gave up is not one).
var ErrUnreachable = errors.New("homeserver: unreachable")

// Options configures a Client. The zero value is usable.
type Options struct {
	// HTTPClient sends every request except those of Proxy, which uses its
	// Transport (http.DefaultTransport when that is nil). Nil means a client
	// with a keep-alive transport, dial and TLS timeouts, an overall timeout of
	// DefaultRequestTimeout, no environment proxy and no redirect following.
	HTTPClient *http.Client
	// WhoAmITTL is how long a successful WhoAmI answer is cached: 0 means
	// DefaultWhoAmITTL, a negative value disables caching.
	WhoAmITTL time.Duration
	// Now is the clock of the WhoAmI cache; nil means time.Now.
	Now func() time.Time
	// Logger gets the package's logs; nil means logrus.StandardLogger().
	Logger logrus.FieldLogger
	// TrustForwardedHeaders makes Proxy and ForwardedHeader keep the inbound
	// X-Forwarded-For (appending the peer address), X-Forwarded-Host,
	// X-Forwarded-Proto and Forwarded; otherwise those are replaced (X-*) or
	// dropped (Forwarded). Enable it only when the gateway sits behind a reverse
	// proxy that sets them; otherwise a client could forge its address.
	TrustForwardedHeaders bool
	// TrustForwarded, when set, decides per request instead (true for a
	// request from a trusted reverse proxy).
	TrustForwarded func(*http.Request) bool
	// Observe, when set, hears of every call: its operation ("login",
	// "logout", "whoami", "device_name" or "forward"), duration and error
	// (a transport failure or a 5xx).
	Observe func(operation string, took time.Duration, err error)
}

// Client talks to one homeserver's client-server API. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	transport http.RoundTripper
	ttl       time.Duration
	now       func() time.Time
	log       logrus.FieldLogger
	trustXFF  func(*http.Request) bool
	observe   func(string, time.Duration, error)

	cache whoamiCache

	proxyOnce sync.Once
	proxy     *Forwarder
}

// Response is a homeserver answer read in full by Do. Header has the
// hop-by-hop headers removed.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// UnexpectedStatusError is returned when the homeserver answers with a status
// that is neither success nor a 4xx Matrix error: a 5xx, or any status whose
// body has no errcode. ErrCode is set when the body had one.
type UnexpectedStatusError struct {
	Op         string // e.g. "POST /_matrix/client/v3/login"
	StatusCode int
	ErrCode    string
}

func (e *UnexpectedStatusError) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("homeserver: %s: HTTP %d %s", e.Op, e.StatusCode, e.ErrCode)
	}
	return fmt.Sprintf("homeserver: %s: HTTP %d", e.Op, e.StatusCode)
}

// New returns a Client for the homeserver at baseURL (e.g.
// "http://127.0.0.1:8008"; a path prefix is kept, a trailing slash dropped).
// It returns an error when baseURL does not parse, is not http or https, has no
// host, or carries user info, a query or a fragment.
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("homeserver: base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("homeserver: base URL %q: scheme must be http or https", baseURL)
	case u.Host == "":
		return nil, fmt.Errorf("homeserver: base URL %q: no host", baseURL)
	case u.User != nil:
		return nil, errors.New("homeserver: base URL must not contain user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("homeserver: base URL %q: must not have a query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")

	c := &Client{
		base:     u,
		hc:       opts.HTTPClient,
		ttl:      opts.WhoAmITTL,
		now:      opts.Now,
		log:      opts.Logger,
		trustXFF: trustFunc(opts),
		observe:  opts.Observe,
	}
	if c.hc == nil {
		t := newTransport()
		c.hc = &http.Client{
			Transport: t,
			Timeout:   DefaultRequestTimeout,
			// A redirect of POST /login would re-send the password elsewhere;
			// answers are handed back as they are instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.transport = c.hc.Transport
	if c.transport == nil {
		c.transport = http.DefaultTransport
	}
	if c.ttl == 0 {
		c.ttl = DefaultWhoAmITTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = logrus.StandardLogger()
	}
	c.log = c.log.WithField("component", "homeserver")
	c.cache.entries = make(map[tokenKey]cacheEntry)
	return c, nil
}

// newTransport is the keep-alive transport shared by API calls and Proxy. It
// has no response-header timeout: /sync long-polls hold their headers back.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // the homeserver is a direct neighbour
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// BaseURL returns a copy of the homeserver's base URL.
func (c *Client) BaseURL() *url.URL {
	u := *c.base
	return &u
}

// hopHeaders are never copied between a client and the homeserver.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers, including those named in
// Connection, from h.
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// Do sends one request to the homeserver: method, pathAndQuery (an absolute
// path with an optional raw query, appended to the base URL as received), the
// headers in header and body (nil for none). Every header is copied except
// hop-by-hop ones, Host, Content-Length and Accept-Encoding (so that Body is
// never compressed); Content-Type defaults to application/json when there is a
// body. It returns the full response whatever its status. Errors: an invalid
// pathAndQuery, transport failures (never including the query, which may hold
// an access token), and ErrResponseTooLarge (wrapped) for a body over
// MaxResponseBody.
func (c *Client) Do(ctx context.Context, method, pathAndQuery string, header http.Header, body []byte) (*Response, error) {
	if c.observe == nil {
		return c.do(ctx, method, pathAndQuery, header, body)
	}
	start := time.Now()
	resp, err := c.do(ctx, method, pathAndQuery, header, body)
	obsErr := err
	if err == nil && resp.Status >= 500 {
		obsErr = fmt.Errorf("homeserver: status %d", resp.Status)
	}
	path, _, _ := strings.Cut(pathAndQuery, "?")
	c.observe(operation(method, path), time.Since(start), obsErr)
	return resp, err
}

func (c *Client) do(ctx context.Context, method, pathAndQuery string, header http.Header, body []byte) (*Response, error) {
	u, err := c.resolve(pathAndQuery)
	if err != nil {
		return nil, err
	}
	op := method + " " + u.Path
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("homeserver: %s: %w", op, err)
	}
	for k, vs := range header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	removeHopHeaders(req.Header)
	for _, k := range []string{"Host", "Content-Length", "Accept-Encoding"} {
		req.Header.Del(k)
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error would print the query
		}
		if ctx.Err() == nil {
			err = errors.Join(ErrUnreachable, err)
		}
		return nil, fmt.Errorf("homeserver: %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody+1))
	if err != nil {
		if ctx.Err() == nil {
			err = errors.Join(ErrUnreachable, err)
		}
		return nil, fmt.Errorf("homeserver: %s: reading body: %w", op, err)
	}
	if len(data) > MaxResponseBody {
		return nil, fmt.Errorf("homeserver: %s: %w", op, ErrResponseTooLarge)
	}
	h := resp.Header.Clone()
	removeHopHeaders(h)
	c.log.WithFields(logrus.Fields{
		"method":      method,
		"path":        u.Path,
		"status":      resp.StatusCode,
		"duration_ms": time.Since(start).Milliseconds(),
	}).Debug("homeserver request")
	return &Response{Status: resp.StatusCode, Header: h, Body: data}, nil
}

// resolve joins pathAndQuery to the base URL, keeping its escaping and query.
func (c *Client) resolve(pathAndQuery string) (*url.URL, error) {
	if !strings.HasPrefix(pathAndQuery, "/") || strings.HasPrefix(pathAndQuery, "//") {
		return nil, errors.New("homeserver: path must be absolute and must not start with //")
	}
	ref, err := url.ParseRequestURI(pathAndQuery)
	if err != nil {
		return nil, errors.New("homeserver: invalid path")
	}
	u := *c.base
	u.Path = c.base.Path + ref.Path
	if ref.RawPath != "" || c.base.RawPath != "" {
		u.RawPath = c.base.EscapedPath() + ref.EscapedPath()
	}
	u.RawQuery = ref.RawQuery
	return &u, nil
}

// call sends a JSON request (reqBody marshalled unless nil) with an optional
// bearer token and returns the response when its status is 200; otherwise the
// error from statusError.
func (c *Client) call(ctx context.Context, method, path, accessToken string, reqBody any) (*Response, error) {
	resp, err := c.send(ctx, method, path, accessToken, reqBody)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, statusError(method+" "+path, resp)
	}
	return resp, nil
}

// send is call without the status check: any answer is returned.
func (c *Client) send(ctx context.Context, method, path, accessToken string, reqBody any) (*Response, error) {
	var body []byte
	if reqBody != nil {
		var err error
		if body, err = json.Marshal(reqBody); err != nil {
			return nil, fmt.Errorf("homeserver: %s %s: encoding request: %w", method, path, err)
		}
	}
	h := http.Header{}
	if origin, ok := ctx.Value(originKey{}).(http.Header); ok {
		for k, v := range origin {
			h[k] = append([]string(nil), v...)
		}
	}
	if accessToken != "" {
		h.Set("Authorization", "Bearer "+accessToken)
	}
	return c.Do(ctx, method, path, h, body)
}

// statusError turns a non-200 answer into an error: a mautrix.RespError (with
// StatusCode, ErrCode, Err and ExtraData from the body) for a 4xx with an
// errcode, an *UnexpectedStatusError otherwise.
func statusError(op string, resp *Response) error {
	var re mautrix.RespError
	if json.Unmarshal(resp.Body, &re) == nil && re.ErrCode != "" && resp.Status >= 400 && resp.Status < 500 {
		re.StatusCode = resp.Status
		return re
	}
	return &UnexpectedStatusError{Op: op, StatusCode: resp.Status, ErrCode: re.ErrCode}
}

// trustFunc is the per-request trust decision of opts.
func trustFunc(opts Options) func(*http.Request) bool {
	if opts.TrustForwarded != nil {
		return opts.TrustForwarded
	}
	all := opts.TrustForwardedHeaders
	return func(*http.Request) bool { return all }
}

// operation names a call for Options.Observe.
func operation(method, path string) string {
	switch {
	case strings.HasSuffix(path, "/login"):
		return "login"
	case strings.HasSuffix(path, "/logout"):
		return "logout"
	case strings.HasSuffix(path, "/account/whoami"):
		return "whoami"
	case method == http.MethodPut && strings.Contains(path, "/devices/"):
		return "device_name"
	}
	return "forward"
}
