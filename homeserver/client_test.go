package homeserver_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		want    string // BaseURL().String() on success
		wantErr bool
	}{
		{name: "loopback http", base: "http://127.0.0.1:8008", want: "http://127.0.0.1:8008"},
		{name: "https with trailing slash", base: "https://hs.example.org/", want: "https://hs.example.org"},
		{name: "path prefix kept", base: "https://hs.example.org/matrix/", want: "https://hs.example.org/matrix"},
		{name: "empty", base: "", wantErr: true},
		{name: "no scheme", base: "127.0.0.1:8008", wantErr: true},
		{name: "ftp scheme", base: "ftp://hs.example.org", wantErr: true},
		{name: "no host", base: "http://", wantErr: true},
		{name: "user info", base: "http://user:secret@hs.example.org", wantErr: true},
		{name: "query", base: "http://hs.example.org/?a=b", wantErr: true},
		{name: "fragment", base: "http://hs.example.org/#x", wantErr: true},
		{name: "unparsable", base: "http://[::1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := homeserver.New(tt.base, homeserver.Options{})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%q) = %v, want an error", tt.base, c.BaseURL())
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q reveals the password of the URL", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.base, err)
			}
			if got := c.BaseURL().String(); got != tt.want {
				t.Errorf("BaseURL() = %q, want %q", got, tt.want)
			}
			c.BaseURL().Path = "/changed"
			if got := c.BaseURL().String(); got != tt.want {
				t.Errorf("BaseURL() after changing a copy = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDoRequest(t *testing.T) {
	tests := []struct {
		name         string
		base         string // appended to the fake's URL
		method       string
		pathAndQuery string
		header       http.Header
		body         []byte
		wantPath     string
		wantQuery    string
		wantHeader   map[string]string // "" means absent
		wantBody     string
	}{
		{
			name:         "path escaping and query kept",
			method:       http.MethodGet,
			pathAndQuery: "/_matrix/client/v3/rooms/%21abc%3Aexample.org/state/m.room.member/%40a%2Fb%3Aex?x=1&y=%2F",
			wantPath:     "/_matrix/client/v3/rooms/%21abc%3Aexample.org/state/m.room.member/%40a%2Fb%3Aex",
			wantQuery:    "x=1&y=%2F",
		},
		{
			name:         "base path prefix",
			base:         "/prefix/",
			method:       http.MethodGet,
			pathAndQuery: "/_matrix/client/versions",
			wantPath:     "/prefix/_matrix/client/versions",
		},
		{
			name:         "listed headers copied, hop-by-hop and Host dropped",
			method:       http.MethodPost,
			pathAndQuery: "/_matrix/client/v3/login",
			header: http.Header{
				"Authorization":   {"Bearer tok"},
				"Content-Type":    {"application/json; charset=utf-8"},
				"User-Agent":      {"Element/1.0"},
				"X-Forwarded-For": {"192.0.2.7"},
				"Connection":      {"X-Hop"},
				"X-Hop":           {"1"},
				"Keep-Alive":      {"timeout=5"},
				"Host":            {"evil.example"},
			},
			body:     []byte(`{"type":"m.login.password"}`),
			wantPath: "/_matrix/client/v3/login",
			wantHeader: map[string]string{
				"Authorization":   "Bearer tok",
				"Content-Type":    "application/json; charset=utf-8",
				"User-Agent":      "Element/1.0",
				"X-Forwarded-For": "192.0.2.7",
				"X-Hop":           "",
				"Keep-Alive":      "",
			},
			wantBody: `{"type":"m.login.password"}`,
		},
		{
			name:         "content type defaults to JSON",
			method:       http.MethodPut,
			pathAndQuery: "/_matrix/client/v3/devices/D",
			body:         []byte(`{}`),
			wantPath:     "/_matrix/client/v3/devices/D",
			wantHeader:   map[string]string{"Content-Type": "application/json"},
			wantBody:     `{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if r.Host == "evil.example" {
					t.Errorf("Host header was copied: %q", r.Host)
				}
				writeRaw(w, http.StatusOK, `{}`)
			})
			c := newClient(t, f.URL+tt.base, homeserver.Options{})
			resp, err := c.Do(t.Context(), tt.method, tt.pathAndQuery, tt.header, tt.body)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d", resp.Status)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests upstream, want 1", len(reqs))
			}
			got := reqs[0]
			if got.Method != tt.method || got.Path != tt.wantPath || got.RawQuery != tt.wantQuery {
				t.Errorf("upstream saw %s %s ?%s, want %s %s ?%s", got.Method, got.Path, got.RawQuery, tt.method, tt.wantPath, tt.wantQuery)
			}
			for k, want := range tt.wantHeader {
				if v := got.Header.Get(k); v != want {
					t.Errorf("upstream header %s = %q, want %q", k, v, want)
				}
			}
			if string(got.Body) != tt.wantBody {
				t.Errorf("upstream body %q, want %q", got.Body, tt.wantBody)
			}
		})
	}
}

func TestDoResponse(t *testing.T) {
	big := bytes.Repeat([]byte("a"), homeserver.MaxResponseBody)
	tests := []struct {
		name       string
		header     http.Header
		handle     func(w http.ResponseWriter, r *http.Request)
		wantStatus int
		wantBody   []byte
		wantHeader map[string]string
		wantErr    error
	}{
		{
			name: "status, headers and body preserved",
			handle: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Custom", "v")
				w.Header().Set("Retry-After", "3")
				writeRaw(w, http.StatusTooManyRequests, `{"errcode":"M_LIMIT_EXCEEDED"}`)
			},
			wantStatus: http.StatusTooManyRequests,
			wantBody:   []byte(`{"errcode":"M_LIMIT_EXCEEDED"}`),
			wantHeader: map[string]string{"X-Custom": "v", "Retry-After": "3", "Content-Type": "application/json"},
		},
		{
			name: "exactly 1 MiB is read",
			handle: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(big)
			},
			wantStatus: http.StatusOK,
			wantBody:   big,
		},
		{
			name: "1 MiB plus one byte is an error",
			handle: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(append(big, 'b'))
			},
			wantErr: homeserver.ErrResponseTooLarge,
		},
		{
			name:   "client's Accept-Encoding not forwarded, body arrives decompressed",
			header: http.Header{"Accept-Encoding": {"gzip"}},
			handle: func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
					writeRaw(w, http.StatusOK, `{"plain":true}`)
					return
				}
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = zw.Write([]byte(`{"plain":true}`))
				_ = zw.Close()
			},
			wantStatus: http.StatusOK,
			wantBody:   []byte(`{"plain":true}`),
		},
		{
			name: "redirect handed back, not followed",
			handle: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					t.Errorf("redirect was followed")
				}
				http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			},
			wantStatus: http.StatusTemporaryRedirect,
			wantHeader: map[string]string{"Location": "/elsewhere"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { tt.handle(w, r) })
			c := newClient(t, f.URL, homeserver.Options{})
			resp, err := c.Do(t.Context(), http.MethodGet, "/_matrix/client/v3/x", tt.header, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Do error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.Status, tt.wantStatus)
			}
			if tt.wantBody != nil && !bytes.Equal(resp.Body, tt.wantBody) {
				t.Errorf("body %.80q (%d bytes), want %.80q (%d bytes)", resp.Body, len(resp.Body), tt.wantBody, len(tt.wantBody))
			}
			for k, want := range tt.wantHeader {
				if v := resp.Header.Get(k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
		})
	}
}

func TestDoInvalidPath(t *testing.T) {
	f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, 200, `{}`) })
	c := newClient(t, f.URL, homeserver.Options{})
	for _, p := range []string{"", "relative/path", "//evil.example/x", "http://evil.example/x"} {
		t.Run(p, func(t *testing.T) {
			if _, err := c.Do(t.Context(), http.MethodGet, p, nil, nil); err == nil {
				t.Errorf("Do(%q) succeeded, want an error", p)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests reached the homeserver, want 0", n)
	}
}
