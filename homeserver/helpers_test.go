package homeserver_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// recorded is one request seen by a fake homeserver.
type recorded struct {
	Method   string
	Path     string // escaped, as on the wire
	RawQuery string
	Header   http.Header
	Body     []byte
}

// fakeHS is an httptest homeserver that records every request and answers
// with handle.
type fakeHS struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFakeHS(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeHS {
	t.Helper()
	f := &fakeHS{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake homeserver: reading body: %v", err)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{
			Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body,
		})
		f.mu.Unlock()
		handle(w, r, body)
	}))
	t.Cleanup(f.Close)
	return f
}

// requests returns a copy of the requests seen so far.
func (f *fakeHS) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// count returns how many requests had the given method and escaped path.
func (f *fakeHS) count(method, path string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// testClock is a settable clock for the WhoAmI cache.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestLogger returns a logger at debug level whose entries are kept by
// the returned hook.
func newTestLogger() (*logrus.Logger, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return l, hook
}

// newClient returns a Client for baseURL, failing the test on error.
func newClient(t *testing.T, baseURL string, opts homeserver.Options) *homeserver.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger, _ = newTestLogger()
	}
	c, err := homeserver.New(baseURL, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", baseURL, err)
	}
	return c
}
