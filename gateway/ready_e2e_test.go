package gateway_test

import (
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// TestReady: /ready is 200 while the database and Dendrite answer, 503
// naming the database when it is closed and the homeserver when it cannot be
// reached; /health stays 200 (the process is alive).
func TestReady(t *testing.T) {
	e := newEnv(t)
	r := e.gw("GET", "/ready", "", nil)
	if r.Status != 200 || r.str("database") != "ok" || r.str("homeserver") != "ok" {
		t.Fatalf("ready: %d %s", r.Status, r.Raw)
	}
	gone := newEnvWith(t, &dendrite.Server{URL: "http://127.0.0.1:1", ServerName: "localhost"})
	if r := gone.gw("GET", "/ready", "", nil); r.Status != 503 || r.str("homeserver") != "unavailable" || r.str("database") != "ok" {
		t.Fatalf("ready without a homeserver: %d %s", r.Status, r.Raw)
	}
	// A guarded request while the homeserver is away: 502 with a message.
	r = gone.gw("POST", "/_matrix/client/v3/delete_devices", "some-token", map[string]any{"devices": []string{}})
	expect(t, r, 502, "M_UNKNOWN")
	e.db.Close()
	if r := e.gw("GET", "/ready", "", nil); r.Status != 503 || r.str("database") != "unavailable" {
		t.Fatalf("ready without a database: %d %s", r.Status, r.Raw)
	}
	if r := e.gw("GET", "/health", "", nil); r.Status != 200 {
		t.Fatalf("health: %d", r.Status)
	}
}
