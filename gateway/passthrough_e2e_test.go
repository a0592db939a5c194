package gateway_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// End-to-end tests of what the gateway passes through unchanged, against a
// real Dendrite (issue #4): users without 2FA, /sync long-polls, CORS, and
// the spellings of intercepted paths that must not slip past the gateway.

// e2eWithoutSession returns body without its "session".
func e2eWithoutSession(body map[string]any) map[string]any {
	out := maps.Clone(body)
	delete(out, "session")
	return out
}

func TestPassThroughWithout2FA(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "henry")
	ctx := context.Background()

	t.Run("login", func(t *testing.T) {
		direct := e.direct("POST", e2eLoginPath, "", e2ePasswordLogin(u))
		got := e.gw("POST", e2eLoginPath, "", e2ePasswordLogin(u))
		expect(t, direct, 200, "")
		expect(t, got, 200, "")
		if k1, k2 := slices.Sorted(maps.Keys(got.Body)), slices.Sorted(maps.Keys(direct.Body)); !slices.Equal(k1, k2) {
			t.Fatalf("gateway login keys %v; direct %v", k1, k2)
		}
		e.e2eWhoAmI(got.str("access_token"), u.UserID)
	})

	t.Run("sync", func(t *testing.T) {
		direct := e.direct("GET", "/_matrix/client/v3/sync?timeout=0", u.AccessToken, nil)
		got := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", u.AccessToken, nil)
		expect(t, direct, 200, "")
		expect(t, got, 200, "")
		if got.str("next_batch") == "" {
			t.Fatalf("sync through the gateway has no next_batch: %.300s", got.Raw)
		}
		if k1, k2 := slices.Sorted(maps.Keys(got.Body)), slices.Sorted(maps.Keys(direct.Body)); !slices.Equal(k1, k2) {
			t.Fatalf("gateway sync keys %v; direct %v", k1, k2)
		}
	})

	t.Run("delete_devices", func(t *testing.T) {
		newDevice := func() string {
			d, err := e.hs.Login(ctx, u.Localpart, u.Password)
			if err != nil {
				t.Fatal(err)
			}
			return d.DeviceID
		}
		// The same steps directly and through the gateway, each on its own device.
		var answers [2][]resp
		for i, send := range []func(string, string, string, any) resp{e.direct, e.gw} {
			d := newDevice()
			body := map[string]any{"devices": []string{d}}
			ch := send("POST", e2eDeleteDevicesPath, u.AccessToken, body)
			if ch.Status != 401 || ch.str("session") == "" {
				t.Fatalf("challenge %d %s", ch.Status, ch.Raw)
			}
			done := send("POST", e2eDeleteDevicesPath, u.AccessToken, e2eWith(body, passwordAuth(u, ch.str("session"))))
			if e.e2eHasDevice(u.AccessToken, d) {
				t.Fatalf("device %s still there after %d %s", d, done.Status, done.Raw)
			}
			answers[i] = []resp{ch, done}
		}
		direct, got := answers[0], answers[1]
		if !reflect.DeepEqual(e2eWithoutSession(got[0].Body), e2eWithoutSession(direct[0].Body)) {
			t.Fatalf("challenge through the gateway %s; direct %s", got[0].Raw, direct[0].Raw)
		}
		if got[1].Status != 200 || got[1].Status != direct[1].Status || !reflect.DeepEqual(got[1].Body, direct[1].Body) {
			t.Fatalf("completion through the gateway %d %s; direct %d %s", got[1].Status, got[1].Raw, direct[1].Status, direct[1].Raw)
		}
	})
}

// e2eSync sends GET /sync through the gateway with ctx and reports how long
// it took.
func (e *env) e2eSync(ctx context.Context, token, query string) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/_matrix/client/v3/sync?"+query, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	defer hr.Body.Close()
	_, err = io.Copy(io.Discard, hr.Body)
	return hr.StatusCode, time.Since(start), err
}

func TestPassThroughSyncLongPoll(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "ivan")
	first := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", u.AccessToken, nil)
	expect(t, first, 200, "")
	since := first.str("next_batch")

	// Nothing happens: the homeserver holds the long-poll for its timeout,
	// and so does the gateway, no longer.
	status, took, err := e.e2eSync(context.Background(), u.AccessToken, "timeout=3000&since="+since)
	if err != nil || status != 200 {
		t.Fatalf("long-poll: %d %v", status, err)
	}
	if took < 2500*time.Millisecond || took > 8*time.Second {
		t.Fatalf("a 3 s long-poll took %s through the gateway", took)
	}

	// A client that gives up after 1 s is not kept waiting for the
	// homeserver's 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, took, err = e.e2eSync(ctx, u.AccessToken, "timeout=10000&since="+since)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("long-poll with a 1 s deadline: err %v; want the deadline", err)
	}
	if took > 2500*time.Millisecond {
		t.Fatalf("long-poll with a 1 s deadline returned after %s", took)
	}

	// And the gateway still answers.
	expect(t, e.gw("GET", e2eWhoAmIPath, u.AccessToken, nil), 200, "")
}

var e2eCORSHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"}

func TestCORSPreflightMatchesHomeserver(t *testing.T) {
	e := newEnv(t)
	preflight := func(t *testing.T, base, path string) *http.Response {
		req, err := http.NewRequest("OPTIONS", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", "https://app.element.io")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
		return hr
	}
	for _, path := range []string{
		e2eLoginPath,
		"/_matrix/client/v3/account/two-factor/totp",
		e2eDeleteDevicesPath,
	} {
		t.Run(path, func(t *testing.T) {
			want := preflight(t, e.hs.URL, path)
			got := preflight(t, e.srv.URL, path)
			if want.Header.Get("Access-Control-Allow-Origin") == "" {
				t.Fatalf("Dendrite's own preflight has no CORS headers: %d %v", want.StatusCode, want.Header)
			}
			if got.StatusCode != want.StatusCode {
				t.Fatalf("preflight status %d; Dendrite %d", got.StatusCode, want.StatusCode)
			}
			for _, h := range e2eCORSHeaders {
				if g, w := got.Header.Values(h), want.Header.Values(h); !slices.Equal(g, w) {
					t.Errorf("%s: %q; Dendrite %q", h, g, w)
				}
			}
		})
	}
}

func TestCORSOnOwnAnswers(t *testing.T) {
	e := newEnv(t)
	plain := tesths.RegisterUser(t, e.hs, "judy")
	u := e.enrol("kim")
	d := e.newDevice(u)
	for _, tc := range []struct {
		name   string
		r      func() resp
		status int
	}{
		{"GET /account/two-factor", func() resp { return e.gw("GET", "/_matrix/client/v3/account/two-factor", plain.AccessToken, nil) }, 200},
		{"login challenge", func() resp { return e.gw("POST", e2eLoginPath, "", e2ePasswordLogin(u.User)) }, 401},
		{"delete_devices challenge", func() resp {
			return e.gw("POST", e2eDeleteDevicesPath, u.AccessToken, map[string]any{"devices": []string{d}})
		}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			if r.Status != tc.status {
				t.Fatalf("got %d %s; want %d", r.Status, r.Raw, tc.status)
			}
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Fatalf("Access-Control-Allow-Origin %q; want *", got)
			}
		})
	}
}

func TestCanonicalPathSpellings(t *testing.T) {
	e, spy := newSpyEnv(t)
	u := e.enrol("leo")

	for _, tc := range []struct {
		name   string
		method string
		path   func(d string) string
	}{
		{"double slash", "POST", func(string) string { return "/_matrix/client/v3//delete_devices" }},
		{"trailing slash", "POST", func(string) string { return "/_matrix/client/v3/delete_devices/" }},
		{"percent-encoded letter", "POST", func(string) string { return "/_matrix/client/v3/%64elete_devices" }},
		{"dot segment", "POST", func(string) string { return "/_matrix/client/v3/./delete_devices" }},
		{"r0, double slash", "POST", func(string) string { return "/_matrix/client/r0//delete_devices" }},
		{"DELETE device, trailing slash", "DELETE", func(d string) string { return "/_matrix/client/v3/devices/" + d + "/" }},
		{"DELETE device, double slash", "DELETE", func(d string) string { return "/_matrix/client/v3//devices/" + d }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.newDevice(u)
			spy.reset()
			body := map[string]any{"auth": passwordAuth(u.User, "")}
			if tc.method == "POST" {
				body["devices"] = []string{d}
			}
			r := e.gw(tc.method, tc.path(d), u.AccessToken, body)
			if !e.e2eHasDevice(u.AccessToken, d) {
				t.Fatalf("device deleted with a password alone via %s (answer %d %s)", tc.path(d), r.Status, r.Raw)
			}
			// Routed as the canonical path: the password before the second factor.
			expect(t, r, 401, "M_FORBIDDEN")
			e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
			for _, s := range spy.requests() {
				if s.auth() != nil {
					t.Fatalf("the homeserver was sent auth: %s %s %s", s.Method, s.Path, s.Body)
				}
			}
		})
	}
}

// TestCanonicalUninterceptedPrefixRefused: an intercepted endpoint under a
// version prefix no homeserver serves it under must be refused by the
// gateway, never passed through where no 2FA stage guards it; under every
// prefix some homeserver does serve (Synapse: /unstable for most endpoints,
// /api/v1 for /login) it is guarded like under v3.
func TestCanonicalUninterceptedPrefixRefused(t *testing.T) {
	e, spy := newSpyEnv(t)
	u := e.enrol("mia")

	type prefixCase struct {
		name   string
		method string
		path   func(d string) string
		body   func(d string) map[string]any
	}
	deleteDevices := func(prefix string) prefixCase {
		return prefixCase{prefix + " delete_devices", "POST", func(string) string { return "/_matrix/client/" + prefix + "/delete_devices" },
			func(d string) map[string]any {
				return map[string]any{"devices": []string{d}, "auth": passwordAuth(u.User, "")}
			}}
	}
	deleteDevice := func(prefix string) prefixCase {
		return prefixCase{prefix + " DELETE devices/{id}", "DELETE", func(d string) string { return "/_matrix/client/" + prefix + "/devices/" + d },
			func(string) map[string]any { return map[string]any{"auth": passwordAuth(u.User, "")} }}
	}
	login := func(prefix string) prefixCase {
		return prefixCase{prefix + " login", "POST", func(string) string { return "/_matrix/client/" + prefix + "/login" },
			func(string) map[string]any { return e2ePasswordLogin(u.User) }}
	}
	run := func(t *testing.T, tc prefixCase, guarded bool) {
		d := e.newDevice(u)
		spy.reset()
		r := e.gw(tc.method, tc.path(d), u.AccessToken, tc.body(d))
		if r.Status == 200 || r.str("access_token") != "" {
			t.Fatalf("got %d %s; want it refused", r.Status, r.Raw)
		}
		if !e.e2eHasDevice(u.AccessToken, d) {
			t.Fatal("device deleted")
		}
		for _, s := range spy.requests() {
			if s.auth() != nil || (!guarded && s.Method == tc.method && s.Path == tc.path(d)) {
				t.Fatalf("passed through to the homeserver: %s %s %s (answer %d %s)", s.Method, s.Path, s.Body, r.Status, r.Raw)
			}
		}
		if guarded {
			// The gateway's challenge, or the homeserver's own answer where
			// it does not serve that prefix (Dendrite: /unstable).
			if r.Status != 401 && r.Status != 404 {
				t.Fatalf("got %d %s; want the 2FA challenge or the homeserver's 404", r.Status, r.Raw)
			}
			return
		}
		expect(t, r, 404, "M_UNRECOGNIZED")
	}
	for _, tc := range []prefixCase{deleteDevices("v2"), deleteDevice("v2"), login("v4"), deleteDevices("api/v1"), deleteDevice("V3")} {
		t.Run("refused "+tc.name, func(t *testing.T) { run(t, tc, false) })
	}
	for _, tc := range []prefixCase{deleteDevices("unstable"), deleteDevice("unstable"), login("unstable"), login("api/v1")} {
		t.Run("guarded "+tc.name, func(t *testing.T) { run(t, tc, true) })
	}
}
