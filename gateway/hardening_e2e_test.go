package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/ratelimit"
)

// TestRateLimitBurst: a burst of logins from one address past the configured
// budget gets 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After (the
// sign-in page gets an HTML page); another address (named by a trusted proxy)
// is not affected; a forged X-Forwarded-For from an untrusted peer changes
// nothing. Bounded: 8 requests per address.
func TestRateLimitBurst(t *testing.T) {
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.RateBurst, g.RateEvery = 5, time.Hour
		proxies, err := ratelimit.ParseProxies([]string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		g.TrustedProxies = proxies
	})
	login := func(xff string) resp {
		t.Helper()
		body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nobody"},"password":"wrong"}`
		req, _ := http.NewRequest("POST", e.srv.URL+"/_matrix/client/v3/login", strings.NewReader(body))
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		return send(t, req)
	}
	for i := 0; i < 5; i++ {
		if r := login("198.51.100.1"); r.Status == 429 {
			t.Fatalf("request %d within the burst limited: %s", i+1, r.Raw)
		}
	}
	r := login("198.51.100.1")
	expect(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("no retry_after_ms / Retry-After: %v %s", r.Header, r.Raw)
	}
	if r := login("198.51.100.2"); r.Status == 429 {
		t.Fatalf("another client address shares the budget: %s", r.Raw)
	}
	// Sign-in page POST from the limited address: a page, not JSON.
	req, _ := http.NewRequest("POST", e.srv.URL+"/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fapp.example%2F", strings.NewReader("username=a&password=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	page := send(t, req)
	if page.Status != 429 || !strings.Contains(page.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page.Raw), "Too many attempts") {
		t.Fatalf("sign-in page when limited: %d %s %s", page.Status, page.Header.Get("Content-Type"), page.Raw)
	}
}

// TestSlowBodyCut: a client that sends headers and then dribbles (or stops
// sending) the body of an intercepted request is cut off at BodyTimeout,
// never holding the connection open; a complete request on another connection
// meanwhile is served. Bounded: one connection, BodyTimeout 1s, 10s cap.
func TestSlowBodyCut(t *testing.T) {
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) { g.BodyTimeout = time.Second })
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"type\":")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	done := make(chan string, 1)
	go func() {
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			status = "connection closed: " + err.Error()
		}
		done <- status
	}()
	if r := e.gw("GET", "/_matrix/client/versions", "", nil); r.Status != 200 {
		t.Fatalf("another request while one body is slow: %d", r.Status)
	}
	got := <-done
	took := time.Since(start)
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Fatalf("slow body ended after %s (%q); want about the 1s body timeout", took, got)
	}
	if strings.Contains(got, " 200 ") {
		t.Fatalf("slow body answered %q", got)
	}
}

// TestAdminAPIRefused: the homeserver's admin APIs are refused under every
// spelling unless the operator passes them through.
func TestAdminAPIRefused(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/_synapse/admin/v1/users/@a:b/login", "/_dendrite/admin/resetPassword/@a:b",
		"/_synapse//admin/v2/users", "/_synapse/admin", "/_synapse/%61dmin/v1/register"} {
		r := e.gw("POST", p, "", map[string]any{})
		expect(t, r, 403, "M_FORBIDDEN")
	}
	on := newEnvWith(t, e.hs, func(g *gatewayConfig, _ *accountConfig) { g.AdminAPI = true })
	if r := on.gw("POST", "/_dendrite/admin/resetPassword/@a:b", "", map[string]any{}); r.Status == 403 && r.str("error") == "The homeserver's admin API is not served through the 2FA gateway" {
		t.Fatal("admin API refused although passed through by config")
	}
}
