package gateway

import (
	"github.com/matrix-2fa/matrix-2fa/admin"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/provider"

	"io"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/pages"
)

// bodyDeadline bounds how long r's body may take to arrive: BodyTimeout for a
// route the gateway reads itself, PassThroughBodyTimeout for one streamed to
// the homeserver (uploads). The deadline is lifted once the body has been
// read, so a long-poll's response is never cut. Requests without a body are
// left alone (the server's header and idle timeouts cover them).
func (g *Gateway) bodyDeadline(w http.ResponseWriter, r *http.Request, routed bool) {
	if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
		return
	}
	d := g.cfg.PassThroughBodyTimeout
	if routed {
		d = g.cfg.BodyTimeout
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return // not a real connection (tests)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the connection's read deadline when the whole body has
// arrived. On any other end (a timeout, a closed connection) the deadline
// stays: the server then cannot block discarding the unread rest.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// limited answers 429 when the client address has used up its budget of
// requests on the unauthenticated entry points (POST only; pages get a page).
func (g *Gateway) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if ok, wait := g.limiter.Allow(g.proxies.ClientAddr(r)); !ok {
				httpx.Logger(r).WithField("client", g.proxies.ClientAddr(r)).Warn("rate limited")
				writeLimited(w, r, wait)
				return
			}
		}
		h(w, r)
	}
}

// isPage reports whether the path is one of the gateway's HTML pages.
func isPage(p string) bool {
	if strings.HasPrefix(p, admin.APIPrefix) || strings.HasPrefix(p, provider.Prefix) ||
		(strings.HasPrefix(p, oauth.Prefix) && p != oauth.AuthorizePath) {
		return false
	}
	return strings.HasPrefix(p, "/_matrix2fa/") || strings.HasSuffix(p, "/fallback/web") ||
		strings.Contains(p, "/login/sso/redirect")
}

// writeLimited answers a rate-limited request: 429 M_LIMIT_EXCEEDED with
// retry_after_ms for the API, a page saying how long to wait for a page.
func writeLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	if isPage(r.URL.Path) {
		pages.Limited(w, wait)
		return
	}
	httpx.SetRetryAfter(w.Header(), wait)
	httpx.WriteMatrixError(w, mautrix.MLimitExceeded.WithMessage("Too many requests; try again in %s", httperr.FormatWait(wait)).
		WithExtraField("retry_after_ms", wait.Milliseconds()))
}
