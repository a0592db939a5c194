package homeserver

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
)

// Forwarder streams requests through to the homeserver (Client.Proxy). A
// plain request (no hop-by-hop or Expect header, a query that
// httputil.ReverseProxy would not rewrite) takes a lean path over the shared
// transport: the inbound header map is reused, the copy buffer pooled, and
// the response flushed as it arrives only when it is unbounded (no
// Content-Length) or an event stream, where ReverseProxy would flush too
// (but for the write that ends it, which the end of the response sends). Any
// other request (an Upgrade, "TE: trailers", "Expect: 100-continue", …)
// goes through httputil.ReverseProxy with the same rewriting, as before.
type Forwarder struct {
	c     *Client
	stock *httputil.ReverseProxy
}

var _ http.Handler = (*Forwarder)(nil)

// ServeHTTP forwards r (see Forward).
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.Forward(w, r) }

// Forward forwards r to the homeserver and writes its answer to w; it returns
// the status written (StatusClientClosed when the client went away first).
// It takes over r.Header on the lean path: the forwarding headers are set
// and the gateway's cookies dropped in place. A failure while the body
// streams aborts the response (panic with http.ErrAbortHandler) under an
// http.Server, as ReverseProxy does.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request) int {
	// The client API has no protocol upgrades: an Upgrade is never asked of
	// the homeserver, so a 101 (a raw tunnel past every check) is refused
	// on both paths (ReverseProxy refuses a switch it did not ask for).
	r.Header.Del("Upgrade")
	if !plainRequest(r) {
		sw := &statusWriter{ResponseWriter: w}
		f.stock.ServeHTTP(sw, r)
		return sw.status
	}
	out := f.c.outbound(r)
	if out.Body != nil {
		defer out.Body.Close()
	}
	res, err := f.c.transport.RoundTrip(out)
	if err != nil {
		return f.c.proxyFailed(w, out, err)
	}
	if res.StatusCode == http.StatusSwitchingProtocols { // no upgrade was asked for
		res.Body.Close()
		return f.c.proxyFailed(w, out, errors.New("homeserver switched protocols unasked"))
	}
	removeHopHeaders(res.Header)
	h := w.Header()
	for k, vs := range res.Header {
		if prev, ok := h[k]; ok {
			h[k] = append(prev, vs...)
		} else {
			h[k] = vs // res.Header is ours alone: no copy
		}
	}
	announced := announceTrailers(h, res.Trailer)
	w.WriteHeader(res.StatusCode)
	if err := f.c.copyBody(w, res.Body, flushes(res)); err != nil {
		res.Body.Close()
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return res.StatusCode
	}
	res.Body.Close() // now, to fill res.Trailer
	copyTrailers(w, res.Trailer, announced)
	return res.StatusCode
}

// plainRequest reports whether r can take the lean path: none of its headers
// is hop-by-hop or Expect (the http.Server reads Connection after the
// handler, so that map must stay untouched), and its query needs no
// cleaning (no ';', no malformed escape: ReverseProxy re-encodes such).
func plainRequest(r *http.Request) bool {
	if r.Header == nil {
		return false
	}
	for k := range r.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect":
			return false
		}
	}
	q := r.URL.RawQuery
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// outbound is the request to the homeserver for the plain request r: r's
// method, body and header map (X-Forwarded-* set, the gateway's cookies
// dropped), the URL rebased with httputil.ProxyRequest.SetURL.
func (c *Client) outbound(r *http.Request) *http.Request {
	out := r.WithContext(r.Context()) // a shallow copy
	u := *r.URL
	out.URL = &u
	pr := httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(c.base)
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil // no body: the transport may retry
	} else if r.Body != nil {
		out.Body = &noCloseBody{r: r.Body} // the transport must not close the client's body
	}
	c.setForwarded(out.Header, r)
	if _, ok := out.Header["Cookie"]; ok {
		dropOwnCookies(out.Header)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's default
	}
	return out
}

// noCloseBody is the client's body as the transport sees it: closing it
// only stops further reads (the transport's writer may outlive the handler);
// closing the client's body is left to the server.
type noCloseBody struct {
	r      io.Reader
	closed atomic.Bool
}

func (b *noCloseBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errors.New("proxy: read of the request body after the handler returned")
	}
	return b.r.Read(p)
}

func (b *noCloseBody) Close() error {
	b.closed.Store(true)
	return nil
}

// flushes reports whether res is flushed as it arrives: an event stream or a
// body of unknown length (ReverseProxy's own rule; a bounded body streams
// through the server's buffer without help).
func flushes(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	ct := res.Header.Get("Content-Type")
	if ct == "" || strings.HasPrefix(ct, "application/json") {
		return false
	}
	base, _, _ := mime.ParseMediaType(ct)
	return base == "text/event-stream"
}

// copyBody streams body to w through a pooled buffer, flushing after each
// write when flush is set (but the last, which the end of the response
// sends). It returns the first read or write error (a read
// error other than a cancelled request is logged, as ReverseProxy does).
func (c *Client) copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if rc != nil && rerr == nil {
				// (At the end the server sends what is left anyway.) A writer
				// that cannot flush still gets the body, as with ReverseProxy.
				rc.Flush()
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			if !errors.Is(rerr, context.Canceled) {
				c.log.WithField("error", rerr).Warn("proxy: read error during body copy")
			}
			return rerr
		}
	}
}

// announceTrailers lists the response's trailers in a Trailer header (the
// transport does not keep it) and returns how many it announced.
func announceTrailers(h, trailer http.Header) int {
	if len(trailer) == 0 {
		return 0
	}
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		keys = append(keys, k)
	}
	h.Add("Trailer", strings.Join(keys, ", "))
	return len(trailer)
}

// copyTrailers writes the trailers that arrived: announced ones as they
// are, others with http.TrailerPrefix, after forcing chunking.
func copyTrailers(w http.ResponseWriter, trailer http.Header, announced int) {
	if len(trailer) == 0 {
		return
	}
	http.NewResponseController(w).Flush()
	prefix := ""
	if len(trailer) != announced {
		prefix = http.TrailerPrefix
	}
	for k, vs := range trailer {
		for _, v := range vs {
			w.Header().Add(prefix+k, v)
		}
	}
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// errorURL drops the query of a url.Error (it may hold an access token).
func errorURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
