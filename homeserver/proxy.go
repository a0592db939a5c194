package homeserver

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
)

// StatusClientClosed is the status logged for a request whose client went
// away before the homeserver answered (nginx's 499).
const StatusClientClosed = 499

// errUnreachable is what a client sees when the homeserver cannot be reached.
var errUnreachable = mautrix.RespError{
	ErrCode:    mautrix.MUnknown.ErrCode,
	Err:        "homeserver unreachable",
	StatusCode: http.StatusBadGateway,
}

// Proxy returns a handler (a *Forwarder) that streams any request through to
// the homeserver unchanged: path and query as received (below the base URL's
// path), method, headers and body, with X-Forwarded-For, -Host and -Proto set
// (see Options.TrustForwardedHeaders), hop-by-hop headers removed and the
// gateway's own cookies dropped. Bounded responses stream through; unbounded
// ones and event streams are flushed as they arrive, so /sync long-polls and
// media downloads are not buffered. It shares the client's keep-alive
// transport and has no overall timeout. When the homeserver cannot be reached
// it answers 502 {"errcode":"M_UNKNOWN","error":"homeserver unreachable"} and
// logs the cause.
func (c *Client) Proxy() http.Handler {
	c.proxyOnce.Do(func() {
		c.proxy = &Forwarder{c: c, stock: &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(c.base)
				c.setForwarded(pr.Out.Header, pr.In)
				if _, ok := pr.Out.Header["Cookie"]; ok {
					dropOwnCookies(pr.Out.Header)
				}
			},
			Transport:     c.transport,
			FlushInterval: -1,
			BufferPool:    bufferPool{},
			ErrorLog:      log.New(logWriter{c.log}, "", 0),
			ErrorHandler:  c.proxyError,
		}}
	})
	return c.proxy
}

// ownCookiePrefixes name the gateway's cookies (the pages' and the admin
// page's, the remembered browser's): they never go to the homeserver.
var ownCookiePrefixes = []string{"m2fa_", "matrix2fa_"}

// dropOwnCookies removes the gateway's cookies from h's Cookie lines (and a
// line left empty).
func dropOwnCookies(h http.Header) {
	var kept []string
	for _, line := range h.Values("Cookie") {
		var parts []string
		for _, c := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			if !slices.ContainsFunc(ownCookiePrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
				parts = append(parts, strings.TrimSpace(c))
			}
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = kept
}

// setForwarded sets X-Forwarded-For, -Host and -Proto on out for the inbound
// request in. Without TrustForwardedHeaders the inbound values are ignored and
// an inbound Forwarded header is dropped; with it, Forwarded is kept as is.
// out may be in.Header itself: the inbound values are read first.
func (c *Client) setForwarded(out http.Header, in *http.Request) {
	var prior, fwd []string
	host, proto := in.Host, "http"
	if in.TLS != nil {
		proto = "https"
	}
	trust := c.trustXFF(in)
	if trust {
		prior, fwd = in.Header.Values("X-Forwarded-For"), in.Header.Values("Forwarded")
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
	}
	out.Del("Forwarded")
	if len(fwd) > 0 {
		out["Forwarded"] = append([]string(nil), fwd...)
	}
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	switch {
	case err == nil && len(prior) > 0:
		out["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	case err == nil:
		out["X-Forwarded-For"] = []string{ip}
	case len(prior) > 0:
		out["X-Forwarded-For"] = []string{strings.Join(prior, ", ")}
	default:
		out.Del("X-Forwarded-For")
	}
	out["X-Forwarded-Host"] = []string{host}
	out["X-Forwarded-Proto"] = []string{proto}
}

// ForwardedHeader returns the headers of r to pass to Do or Login: r's headers
// without hop-by-hop ones, with X-Forwarded-For, -Host and -Proto set the way
// Proxy sets them (inbound values count only with
// Options.TrustForwardedHeaders).
func (c *Client) ForwardedHeader(r *http.Request) http.Header {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	removeHopHeaders(h)
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(k)
	}
	c.setForwarded(h, r)
	return h
}

// CheckedHeader returns the headers for a request the gateway rebuilt from
// r (forward only what was checked): the client's User-Agent, X-Forwarded-For,
// -Host and -Proto as Proxy sets them, and accessToken, when not empty, as
// the only credential ("Authorization: Bearer"). Nothing else of r's headers
// goes upstream: no cookie, no second token, no query-string token.
func (c *Client) CheckedHeader(r *http.Request, accessToken string) http.Header {
	h := http.Header{}
	c.setForwarded(h, r)
	if ua := r.Header.Get("User-Agent"); ua != "" {
		h.Set("User-Agent", ua)
	}
	if accessToken != "" {
		h.Set("Authorization", "Bearer "+accessToken)
	}
	return h
}

type originKey struct{}

// WithOrigin returns ctx carrying the client address of r (X-Forwarded-For
// and friends, as ForwardedHeader sets them), which the client's own calls
// made with that context (PasswordLogin, CheckPassword, Logout, WhoAmI, …)
// then send: the homeserver's per-address rate limits apply to the client,
// not to the gateway's own address shared by everyone.
func (c *Client) WithOrigin(ctx context.Context, r *http.Request) context.Context {
	h := http.Header{}
	c.setForwarded(h, r)
	return context.WithValue(ctx, originKey{}, h)
}

// proxyError answers 502 without detail and logs the cause (never the query,
// which may hold an access token).
func (c *Client) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c.proxyFailed(w, r, err)
}

// proxyFailed is proxyError, returning the status written.
func (c *Client) proxyFailed(w http.ResponseWriter, r *http.Request, err error) int {
	err = errorURL(err)
	entry := c.log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path, "error": err})
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client closed the request (a /sync long-poll, say): nobody
		// reads the answer; 499 (nginx's "client closed request") keeps the
		// access log from reading it as a homeserver failure.
		entry.Debug("proxy: client went away")
		w.WriteHeader(StatusClientClosed)
		return StatusClientClosed
	}
	entry.Warn("proxy: homeserver unreachable")
	errUnreachable.Write(w)
	return errUnreachable.StatusCode
}

// logWriter feeds httputil.ReverseProxy's own error log into logrus.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn("proxy: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// bufferPool reuses the proxy's copy buffers (32 KiB each) across responses
// instead of allocating one per response.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
