package homeserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// proxyFront starts an httptest server running c.Proxy().
func proxyFront(t *testing.T, c *homeserver.Client) *httptest.Server {
	t.Helper()
	front := httptest.NewServer(c.Proxy())
	t.Cleanup(front.Close)
	return front
}

func TestProxyStreams(t *testing.T) {
	release := make(chan struct{})
	var finished atomic.Bool
	upstream := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		defer finished.Store(true)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "first chunk\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
			t.Error("upstream handler was never released")
			return
		}
		_, _ = io.WriteString(w, "second chunk\n")
	})
	c := newClient(t, upstream.URL, homeserver.Options{})
	front := proxyFront(t, c)

	resp, err := http.Get(front.URL + "/_matrix/client/v3/sync?timeout=30000")
	if err != nil {
		t.Fatalf("GET through proxy: %v", err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)

	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := br.ReadString('\n')
		got <- result{line, err}
	}()
	select {
	case r := <-got:
		if r.err != nil || r.line != "first chunk\n" {
			t.Fatalf("first read = %q, %v; want %q", r.line, r.err, "first chunk\n")
		}
		if finished.Load() {
			t.Fatal("upstream handler had already finished: the chunk was not streamed")
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("first chunk did not arrive while the upstream handler was still running: the proxy buffers")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second chunk\n" {
		t.Errorf("rest = %q, %v; want %q", rest, err, "second chunk\n")
	}
}

func TestProxyForwardedHeaders(t *testing.T) {
	tests := []struct {
		name      string
		trust     bool
		inbound   http.Header
		wantXFF   string
		wantHost  string // "" means the front's host
		wantProto string
		wantFwd   string
	}{
		{name: "no inbound headers", wantXFF: "127.0.0.1", wantProto: "http"},
		{
			name:    "inbound forwarded headers ignored by default",
			inbound: http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Host": {"spoof.example"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"for=203.0.113.9"}},
			wantXFF: "127.0.0.1", wantProto: "http",
		},
		{
			name: "inbound forwarded headers kept when trusted", trust: true,
			inbound: http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.1"}, "X-Forwarded-Host": {"matrix.example.org"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"for=203.0.113.9"}},
			wantXFF: "203.0.113.9, 198.51.100.1, 127.0.0.1", wantHost: "matrix.example.org", wantProto: "https", wantFwd: "for=203.0.113.9",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, 200, `{}`) })
			c := newClient(t, upstream.URL, homeserver.Options{TrustForwardedHeaders: tt.trust})
			front := proxyFront(t, c)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, front.URL+"/_matrix/client/versions", nil)
			for k, vs := range tt.inbound {
				req.Header[k] = vs
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := upstream.requests()[0].Header
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = strings.TrimPrefix(front.URL, "http://")
			}
			if h.Get("X-Forwarded-For") != tt.wantXFF || h.Get("X-Forwarded-Host") != wantHost ||
				h.Get("X-Forwarded-Proto") != tt.wantProto || h.Get("Forwarded") != tt.wantFwd {
				t.Errorf("upstream saw XFF=%q XFH=%q XFP=%q Forwarded=%q; want %q %q %q %q",
					h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"), h.Get("Forwarded"),
					tt.wantXFF, wantHost, tt.wantProto, tt.wantFwd)
			}

			// ForwardedHeader gives Do the same view.
			fh := c.ForwardedHeader(&http.Request{Header: req.Header, RemoteAddr: "127.0.0.1:5555", Host: wantHost})
			if tt.wantHost == "" {
				fh.Set("X-Forwarded-Host", wantHost) // the synthetic request's Host is the front's
			}
			if fh.Get("X-Forwarded-For") != tt.wantXFF || fh.Get("X-Forwarded-Proto") != tt.wantProto || fh.Get("Forwarded") != tt.wantFwd {
				t.Errorf("ForwardedHeader gave XFF=%q XFP=%q Forwarded=%q; want %q %q %q",
					fh.Get("X-Forwarded-For"), fh.Get("X-Forwarded-Proto"), fh.Get("Forwarded"), tt.wantXFF, tt.wantProto, tt.wantFwd)
			}
		})
	}
}

func TestProxyPreservesRequestAndResponse(t *testing.T) {
	tests := []struct {
		name         string
		base         string
		method       string
		pathAndQuery string
		reqBody      string
		reqHeader    http.Header
		wantPath     string
		wantQuery    string
		status       int
		respHeader   http.Header
		respBody     string
	}{
		{
			name: "POST with escaped path, query and body", method: http.MethodPut,
			pathAndQuery: "/_matrix/client/v3/rooms/%21room%3Aex.org/send/m.room.message/txn%2F1?access_token=secret&x=%2F",
			reqBody:      `{"msgtype":"m.text","body":"hi"}`,
			reqHeader:    http.Header{"Authorization": {"Bearer tok"}, "Content-Type": {"application/json"}, "User-Agent": {"Element/1"}},
			wantPath:     "/_matrix/client/v3/rooms/%21room%3Aex.org/send/m.room.message/txn%2F1",
			wantQuery:    "access_token=secret&x=%2F",
			status:       http.StatusTeapot,
			respHeader:   http.Header{"X-Custom": {"a", "b"}, "Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			respBody:     `{"event_id":"$e"}`,
		},
		{
			name: "base path prefix", base: "/hs", method: http.MethodGet,
			pathAndQuery: "/_matrix/media/v3/download/ex.org/abc?allow_redirect=true",
			wantPath:     "/hs/_matrix/media/v3/download/ex.org/abc", wantQuery: "allow_redirect=true",
			status: http.StatusOK, respHeader: http.Header{"Content-Type": {"image/png"}, "Content-Disposition": {"inline"}},
			respBody: "\x89PNG\r\n\x1a\nbinary",
		},
		{
			name: "error status passed through", method: http.MethodGet, pathAndQuery: "/_matrix/client/v3/account/whoami",
			wantPath: "/_matrix/client/v3/account/whoami", status: http.StatusUnauthorized,
			respHeader: http.Header{"Content-Type": {"application/json"}, "Www-Authenticate": {"Bearer"}},
			respBody:   `{"errcode":"M_MISSING_TOKEN","error":"Missing access token"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				for k, vs := range tt.respHeader {
					w.Header()[k] = vs
				}
				w.Header().Set("Connection", "X-Hop")
				w.Header().Set("X-Hop", "1")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.respBody)
			})
			c := newClient(t, upstream.URL+tt.base, homeserver.Options{})
			front := proxyFront(t, c)

			req, _ := http.NewRequestWithContext(t.Context(), tt.method, front.URL+tt.pathAndQuery, strings.NewReader(tt.reqBody))
			for k, vs := range tt.reqHeader {
				req.Header[k] = vs
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			up := upstream.requests()
			if len(up) != 1 {
				t.Fatalf("%d upstream requests, want 1", len(up))
			}
			u := up[0]
			if u.Method != tt.method || u.Path != tt.wantPath || u.RawQuery != tt.wantQuery || string(u.Body) != tt.reqBody {
				t.Errorf("upstream saw %s %s ?%s %q; want %s %s ?%s %q", u.Method, u.Path, u.RawQuery, u.Body, tt.method, tt.wantPath, tt.wantQuery, tt.reqBody)
			}
			for k, vs := range tt.reqHeader {
				if got := u.Header.Values(k); strings.Join(got, ",") != strings.Join(vs, ",") {
					t.Errorf("upstream request header %s = %q, want %q", k, got, vs)
				}
			}
			if resp.StatusCode != tt.status || string(body) != tt.respBody {
				t.Errorf("client got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.respBody)
			}
			for k, vs := range tt.respHeader {
				if got := resp.Header.Values(k); strings.Join(got, ",") != strings.Join(vs, ",") {
					t.Errorf("response header %s = %q, want %q", k, got, vs)
				}
			}
			if resp.Header.Get("X-Hop") != "" {
				t.Errorf("hop-by-hop header X-Hop reached the client")
			}
		})
	}
}

func TestProxyUnreachable(t *testing.T) {
	// A port that was listening a moment ago and is now closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	logger, hook := newTestLogger()
	c := newClient(t, "http://"+addr, homeserver.Options{Logger: logger})
	front := proxyFront(t, c)
	tests := []struct {
		name   string
		method string
		path   string
	}{
		{name: "GET versions", method: http.MethodGet, path: "/_matrix/client/versions"},
		{name: "POST with token in query", method: http.MethodPost, path: "/_matrix/client/v3/join/%21r%3Aex?access_token=SECRETQUERYTOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.Reset()
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, front.URL+tt.path, strings.NewReader(`{}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			want := map[string]any{"errcode": "M_UNKNOWN", "error": "homeserver unreachable"}
			if mustJSON(t, got) != mustJSON(t, want) {
				t.Errorf("body %s, want exactly %s", body, mustJSON(t, want))
			}
			if bytes.Contains(body, []byte(addr)) || bytes.Contains(body, []byte("refused")) {
				t.Errorf("body %s reveals the error", body)
			}
			var logged bool
			for _, e := range hook.AllEntries() {
				line, _ := e.String()
				if strings.Contains(line, "SECRETQUERYTOKEN") {
					t.Errorf("log line contains the query's token: %s", line)
				}
				if e.Level <= logrus.WarnLevel && e.Data["error"] != nil && strings.Contains(e.Message, "unreachable") {
					logged = true
				}
			}
			if !logged {
				t.Errorf("no warning with the error was logged; entries: %d", len(hook.AllEntries()))
			}
		})
	}
}

// TestWithOriginForwardsClientAddress: internal calls made for a client's
// request carry that client's address, so per-address rate limits at the
// homeserver apply to the client and not to the gateway.
func TestWithOriginForwardsClientAddress(t *testing.T) {
	var got []string
	fake := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		got = append(got, r.Header.Get("X-Forwarded-For"))
		writeJSON(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN", "error": "Invalid password"})
	})
	c := newClient(t, fake.URL, homeserver.Options{})
	in := httptest.NewRequest(http.MethodPost, "/_matrix2fa/", nil)
	in.RemoteAddr = "198.51.100.7:4242"
	ctx := c.WithOrigin(context.Background(), in)
	if ok, err := c.CheckPassword(ctx, "@a:example.org", "pw"); ok || err != nil {
		t.Fatalf("CheckPassword = %v, %v", ok, err)
	}
	if _, err := c.PasswordLogin(context.Background(), "a", "pw", "", ""); err == nil {
		t.Fatal("PasswordLogin succeeded against a refusing homeserver")
	}
	if len(got) != 2 || got[0] != "198.51.100.7" || got[1] != "" {
		t.Fatalf("X-Forwarded-For sent = %q; want the client's address with the origin context, none without", got)
	}
}

// TestProxyClientGoneIs499: a client that closes a long-poll before the
// homeserver answers is logged as 499 (client closed), not 502.
func TestProxyClientGoneIs499(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer upstream.Close()
	defer close(release)
	c := newClient(t, upstream.URL, homeserver.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?timeout=30000", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { c.Proxy().ServeHTTP(rec, req); close(done) }()
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not return after the client went away")
	}
	if rec.Code != homeserver.StatusClientClosed {
		t.Fatalf("status %d; want %d", rec.Code, homeserver.StatusClientClosed)
	}
}

// TestProxyDropsGatewayCookies holds that the gateway's cookies (the
// remembered browser's above all) never reach the homeserver, and that
// others do, unchanged.
func TestProxyDropsGatewayCookies(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		want []string
	}{
		{"none", nil, nil},
		{"only ours", []string{"m2fa_remember=secret; m2fa_signin=x"}, nil},
		{"mixed", []string{"a=1; m2fa_remember=secret; matrix2fa_session=s; b=2"}, []string{"a=1; b=2"}},
		{"two lines", []string{"m2fa_oauth=o", "sso=z; matrix2fa_admin_session=q"}, []string{"sso=z"}},
		{"look-alike kept", []string{"xm2fa_remember=1"}, []string{"xm2fa_remember=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			upstream := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, 200, `{}`) })
			front := proxyFront(t, newClient(t, upstream.URL, homeserver.Options{}))
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, front.URL+"/_matrix/client/v3/capabilities", nil)
			req.Header["Cookie"] = c.in
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := upstream.requests()[0].Header.Values("Cookie"); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("homeserver got Cookie %q, want %q", got, c.want)
			}
		})
	}
}
