package homeserver_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// TestForwarderPaths: plain requests (the lean path) and those with
// hop-by-hop, Expect or odd-query details (httputil.ReverseProxy) reach the
// homeserver the same way: hop-by-hop headers gone ("TE: trailers" kept), the
// query cleaned as ReverseProxy cleans it, X-Forwarded-For set, the
// client's User-Agent (none: none); and the answer comes back without its hop-by-hop headers, its
// trailers kept.
func TestForwarderPaths(t *testing.T) {
	for _, c := range []struct {
		name      string
		header    http.Header
		query     string
		wantQuery string
		wantTE    string
	}{
		{name: "plain", query: "since=s1&timeout=0", wantQuery: "since=s1&timeout=0"},
		{name: "plain with escapes", query: "filter=%7B%7D", wantQuery: "filter=%7B%7D"},
		{name: "no user agent", header: http.Header{"User-Agent": {""}}},
		{name: "connection-named header", header: http.Header{"Connection": {"X-Private"}, "X-Private": {"secret"}}},
		{name: "keep-alive", header: http.Header{"Keep-Alive": {"timeout=5"}}},
		{name: "trailers asked", header: http.Header{"Te": {"trailers"}}, wantTE: "trailers"},
		{name: "proxy authorization", header: http.Header{"Proxy-Authorization": {"Basic eA=="}}},
		{name: "semicolon query", query: "a=1;b=2&c=3", wantQuery: "c=3"},
		{name: "bad escape", query: "a=%zz&c=3", wantQuery: "c=3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			upstream := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.Header().Set("Connection", "X-Hop")
				w.Header().Set("X-Hop", "1")
				w.Header().Set("Keep-Alive", "timeout=9")
				w.Header().Set("Trailer", "X-Checksum")
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"ok":true}`)
				w.Header().Set("X-Checksum", "abc")
			})
			front := proxyFront(t, newClient(t, upstream.URL, homeserver.Options{}))
			u := front.URL + "/_matrix/client/v3/sync"
			if c.query != "" {
				u += "?" + c.query
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
			req.Header.Set("User-Agent", "agent/1")
			for k, vs := range c.header {
				req.Header[k] = vs
			}
			wantUA := req.Header.Get("User-Agent")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != `{"ok":true}` || resp.Header.Get("X-Hop") != "" ||
				resp.Header.Get("Keep-Alive") != "" || resp.Trailer.Get("X-Checksum") != "abc" {
				t.Errorf("answer %d %q header %v trailer %v", resp.StatusCode, body, resp.Header, resp.Trailer)
			}
			got := upstream.requests()[0]
			h := got.Header
			for _, k := range []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Authorization", "Upgrade"} {
				if h.Get(k) != "" {
					t.Errorf("upstream got %s: %q", k, h.Get(k))
				}
			}
			if h.Get("Te") != c.wantTE || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("User-Agent") != wantUA {
				t.Errorf("upstream got TE %q XFF %q UA %q", h.Get("Te"), h.Get("X-Forwarded-For"), h.Get("User-Agent"))
			}
			if got.RawQuery != c.wantQuery {
				t.Errorf("upstream query %q, want %q", got.RawQuery, c.wantQuery)
			}
		})
	}
}
