package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httpx"
)

// versionsPath is the client API's version discovery, which every client asks
// for first and often, mostly without a token.
const versionsPath = "/_matrix/client/versions"

// versionsEntry is the homeserver's last cacheable answer to an
// unauthenticated GET /versions, and until when it is served.
type versionsEntry struct {
	resp    *homeserver.Response
	expires time.Time
}

// versionsCache holds that answer (nil: none yet).
type versionsCache struct{ entry atomic.Pointer[versionsEntry] }

// servedVersions answers r from the cache of GET /_matrix/client/versions
// when the cache is on (Config.VersionsCacheTTL) and r is that request
// spelled exactly, without a query or an Authorization header: from the
// entry while it is fresh, else from one request to the homeserver (kept
// when cacheableVersions). ok is false when r is not such a request or the
// homeserver could not be asked; r then goes through as any other.
func (g *Gateway) servedVersions(w http.ResponseWriter, r *http.Request) (status int, ok bool) {
	if g.cfg.VersionsCacheTTL <= 0 || r.Method != http.MethodGet || r.URL.Path != versionsPath || r.URL.RawPath != "" ||
		r.URL.RawQuery != "" || r.Header["Authorization"] != nil {
		return 0, false
	}
	now := g.now()
	if e := g.versions.entry.Load(); e != nil && now.Before(e.expires) {
		httpx.CopyResponse(w, e.resp)
		return e.resp.Status, true
	}
	resp, err := g.hs.Do(r.Context(), http.MethodGet, versionsPath, g.hs.CheckedHeader(r, ""), nil)
	if err != nil {
		return 0, false
	}
	if cacheableVersions(resp) {
		kept := *resp
		kept.Header = resp.Header.Clone()
		kept.Header.Del("Date") // the server sets the current one
		g.versions.entry.Store(&versionsEntry{resp: &kept, expires: now.Add(g.cfg.VersionsCacheTTL)})
	}
	httpx.CopyResponse(w, resp)
	return resp.Status, true
}

// cacheableVersions reports whether resp may be served to other clients: a
// 200 that varies with nothing (no Vary), sets no cookie, and whose
// Cache-Control allows shared caching.
func cacheableVersions(resp *homeserver.Response) bool {
	if resp.Status != http.StatusOK || resp.Header["Vary"] != nil || resp.Header["Set-Cookie"] != nil {
		return false
	}
	cc := strings.ToLower(strings.Join(resp.Header.Values("Cache-Control"), ","))
	return !strings.Contains(cc, "no-store") && !strings.Contains(cc, "no-cache") && !strings.Contains(cc, "private")
}
