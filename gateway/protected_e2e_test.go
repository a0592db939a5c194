package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// End-to-end tests of a homeserver UIA endpoint (delete_devices, DELETE
// /devices/{id}) behind the gateway for users with 2FA, against a real
// Dendrite (issue #4, integration.md §7.3).

const e2eDeleteDevicesPath = "/_matrix/client/v3/delete_devices"

// e2eProtectedFlows are the flows of Dendrite's delete_devices challenge
// (password only) with our stages in front.
var e2eProtectedFlows = [][]string{{e2eStageTOTP, e2eStagePass}, {e2eStageRecov, e2eStagePass}}

// e2eSeen is one request that reached the homeserver.
type e2eSeen struct {
	Method string
	Path   string // decoded
	Body   []byte
}

// auth returns the request's auth dict, or nil when it has none.
func (s e2eSeen) auth() map[string]any {
	var body struct {
		Auth map[string]any `json:"auth"`
	}
	json.Unmarshal(s.Body, &body)
	return body.Auth
}

// e2eSpy sits between the gateway and Dendrite and records what the
// homeserver is sent, so a test can prove what never reached it.
type e2eSpy struct {
	mu   sync.Mutex
	seen []e2eSeen
}

func (s *e2eSpy) reset() { s.mu.Lock(); s.seen = nil; s.mu.Unlock() }

func (s *e2eSpy) requests() []e2eSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// withAuth returns the requests to a path containing pathPart that carried
// an auth dict.
func (s *e2eSpy) withAuth(pathPart string) []e2eSeen {
	var out []e2eSeen
	for _, r := range s.requests() {
		if strings.Contains(r.Path, pathPart) && r.auth() != nil {
			out = append(out, r)
		}
	}
	return out
}

// mentioning returns the requests whose body contains text.
func (s *e2eSpy) mentioning(text string) []e2eSeen {
	var out []e2eSeen
	for _, r := range s.requests() {
		if bytes.Contains(r.Body, []byte(text)) {
			out = append(out, r)
		}
	}
	return out
}

// newSpyEnv is newEnv with a recording reverse proxy between the gateway and
// Dendrite; e.direct and the harness's registration still go to Dendrite.
func newSpyEnv(t *testing.T) (*env, *e2eSpy) {
	t.Helper()
	hs := tesths.Dendrite(t)
	target, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	spy := &e2eSpy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		spy.mu.Lock()
		spy.seen = append(spy.seen, e2eSeen{Method: r.Method, Path: r.URL.Path, Body: body})
		spy.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e := newEnvWith(t, &dendrite.Server{URL: srv.URL, ServerName: hs.ServerName})
	e.hs = hs
	return e, spy
}

// e2eWith returns a copy of body with auth set.
func e2eWith(body map[string]any, auth map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		out[k] = v
	}
	out["auth"] = auth
	return out
}

func TestProtectedPasswordAloneNeverDeletes(t *testing.T) {
	e, spy := newSpyEnv(t)
	alice := e.enrol("alice")
	bob := e.enrol("bob")

	// Bob's own delete_devices session, with his second factor done.
	bobDevice := e.newDevice(bob)
	bobBody := map[string]any{"devices": []string{bobDevice}}
	r := e.gw("POST", e2eDeleteDevicesPath, bob.AccessToken, bobBody)
	bobSession := e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
	r = e.gw("POST", e2eDeleteDevicesPath, bob.AccessToken, e2eWith(bobBody, e2eAuth(e2eStageTOTP, bobSession, e.code(bob))))
	e.e2eCheckChallenge(r, e2eProtectedFlows, []string{e2eStageTOTP})

	// aliceSession starts alice's request through the gateway and returns
	// the session of its challenge.
	aliceSession := func(body map[string]any) string {
		r := e.gw("POST", e2eDeleteDevicesPath, alice.AccessToken, body)
		return e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
	}
	for _, tc := range []struct {
		name    string
		auth    func(body map[string]any) map[string]any
		status  int
		errcode string
	}{
		{"password without a session",
			func(map[string]any) map[string]any { return passwordAuth(alice.User, "") }, 401, "M_FORBIDDEN"},
		{"password on the gateway's session before the second factor",
			func(b map[string]any) map[string]any { return passwordAuth(alice.User, aliceSession(b)) }, 401, "M_FORBIDDEN"},
		{"password on a forged session",
			func(map[string]any) map[string]any { return passwordAuth(alice.User, "forged-session-id") }, 400, "M_INVALID_PARAM"},
		{"password on another user's session with its second factor done",
			func(map[string]any) map[string]any { return passwordAuth(alice.User, bobSession) }, 403, "M_FORBIDDEN"},
		{"password on the user's own session of another request, second factor done",
			func(map[string]any) map[string]any {
				other := e2eDevicesPath + "/" + url.PathEscape(e.newDevice(alice))
				r := e.gw("DELETE", other, alice.AccessToken, map[string]any{})
				s := e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
				r = e.gw("DELETE", other, alice.AccessToken, map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(alice))})
				e.e2eCheckChallenge(r, e2eProtectedFlows, []string{e2eStageTOTP})
				return passwordAuth(alice.User, s)
			}, 403, "M_FORBIDDEN"},
		{"session only, before the second factor",
			func(b map[string]any) map[string]any { return map[string]any{"session": aliceSession(b)} }, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.newDevice(alice)
			body := map[string]any{"devices": []string{d}}
			auth := tc.auth(body)
			spy.reset()
			r := e.gw("POST", e2eDeleteDevicesPath, alice.AccessToken, e2eWith(body, auth))
			expect(t, r, tc.status, tc.errcode)
			if tc.status == 401 {
				// Still the challenge, 2FA stages first, nothing completed.
				e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
			}
			if !e.e2eHasDevice(alice.AccessToken, d) {
				t.Fatalf("device %s deleted without a second factor (answer %d %s)", d, r.Status, r.Raw)
			}
			if fw := spy.withAuth("delete_devices"); len(fw) > 0 {
				t.Fatalf("the homeserver was sent auth before the second factor: %s", fw[0].Body)
			}
		})
	}
	if !e.e2eHasDevice(bob.AccessToken, bobDevice) {
		t.Fatalf("bob's device %s was deleted by alice's requests", bobDevice)
	}
}

func TestProtectedChallenge(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("carol")
	d := e.newDevice(u)

	direct := e.direct("POST", e2eDeleteDevicesPath, u.AccessToken, map[string]any{"devices": []string{d}})
	if direct.Status != 401 || direct.str("session") == "" {
		t.Fatalf("Dendrite's own challenge: %d %s", direct.Status, direct.Raw)
	}
	r := e.gw("POST", e2eDeleteDevicesPath, u.AccessToken, map[string]any{"devices": []string{d}})
	s := e.e2eCheckChallenge(r, e2eProtectedFlows, nil)
	if s == direct.str("session") {
		t.Fatalf("two challenges share session %s", s)
	}
	if r.str("errcode") != "" {
		t.Fatalf("first challenge carries an error: %s", r.Raw)
	}
	if !e.e2eHasDevice(u.AccessToken, d) {
		t.Fatal("device deleted by a request without auth")
	}
}

func TestProtectedTwoFactorThenPassword(t *testing.T) {
	e, spy := newSpyEnv(t)
	u := e.enrol("dora")
	recovery := 0

	for _, tc := range []struct {
		name   string
		method string
		path   func(d string) string
		body   func(d string) map[string]any
		stage  string
	}{
		{"POST delete_devices with TOTP", "POST",
			func(string) string { return e2eDeleteDevicesPath },
			func(d string) map[string]any { return map[string]any{"devices": []string{d}} }, e2eStageTOTP},
		{"POST delete_devices with a recovery code", "POST",
			func(string) string { return e2eDeleteDevicesPath },
			func(d string) map[string]any { return map[string]any{"devices": []string{d}} }, e2eStageRecov},
		{"DELETE devices/{id} with TOTP", "DELETE",
			func(d string) string { return e2eDevicesPath + "/" + url.PathEscape(d) },
			func(string) map[string]any { return map[string]any{} }, e2eStageTOTP},
		{"DELETE devices/{id} with a recovery code", "DELETE",
			func(d string) string { return e2eDevicesPath + "/" + url.PathEscape(d) },
			func(string) map[string]any { return map[string]any{} }, e2eStageRecov},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.newDevice(u)
			path, body := tc.path(d), tc.body(d)
			send := func(auth map[string]any) resp {
				if auth == nil {
					return e.gw(tc.method, path, u.AccessToken, body)
				}
				return e.gw(tc.method, path, u.AccessToken, e2eWith(body, auth))
			}
			spy.reset()

			s := e.e2eCheckChallenge(send(nil), e2eProtectedFlows, nil)

			code := ""
			if tc.stage == e2eStageTOTP {
				code = e.code(u)
			} else {
				code = u.recovery[recovery]
				recovery++
			}
			r := send(e2eAuth(tc.stage, s, code))
			if e.e2eCheckChallenge(r, e2eProtectedFlows, []string{tc.stage}) != s || r.str("errcode") != "" {
				t.Fatalf("after the second factor: %s; want the challenge of session %s without error", r.Raw, s)
			}
			if !e.e2eHasDevice(u.AccessToken, d) {
				t.Fatal("device deleted by the second factor alone")
			}

			// A wrong password after the second factor: the homeserver's
			// M_FORBIDDEN inside the challenge, our stage still completed.
			wrong := passwordAuth(u.User, s)
			wrong["password"] = "not-the-password"
			r = send(wrong)
			expect(t, r, 401, "M_FORBIDDEN")
			if r.str("session") != s || !slices.Contains(r.strings("completed"), tc.stage) || r.flows() == nil {
				t.Fatalf("wrong password after 2FA: %s; want the challenge of %s with %s completed", r.Raw, s, tc.stage)
			}
			if !e.e2eHasDevice(u.AccessToken, d) {
				t.Fatal("device deleted with a wrong password")
			}

			// The right password completes it.
			r = send(passwordAuth(u.User, s))
			expect(t, r, 200, "")
			if e.e2eHasDevice(u.AccessToken, d) {
				t.Fatalf("device %s still there after 200 %s", d, r.Raw)
			}

			// The session is spent.
			r = send(passwordAuth(u.User, s))
			expect(t, r, 400, "M_INVALID_PARAM")

			// The homeserver saw exactly the two password attempts, with its
			// own session ID (which the gateway reused) and never our stages.
			fw := spy.withAuth(strings.TrimPrefix(path, "/_matrix/client/v3"))
			if len(fw) != 2 {
				t.Fatalf("the homeserver was sent auth %d times; want 2 (wrong and right password)", len(fw))
			}
			for _, f := range fw {
				if a := f.auth(); a["type"] != e2eStagePass || a["session"] != s {
					t.Fatalf("forwarded auth %v; want %s with session %s", a, e2eStagePass, s)
				}
			}
			if m := spy.mentioning("m.login.2fa"); len(m) > 0 {
				t.Fatalf("our stage reached the homeserver: %s %s %s", m[0].Method, m[0].Path, m[0].Body)
			}
		})
	}
}

func TestProtectedOwnStagesNeverForwarded(t *testing.T) {
	e, spy := newSpyEnv(t)
	u := e.enrol("eve")
	d := e.newDevice(u)
	body := map[string]any{"devices": []string{d}}
	session := ""

	for _, tc := range []struct {
		name    string
		auth    func() map[string]any
		status  int
		errcode string
	}{
		{"TOTP without a session, wrong code", func() map[string]any {
			return map[string]any{"type": e2eStageTOTP, "code": e.wrongCode(u)}
		}, 401, "M_FORBIDDEN"},
		{"TOTP without a code or session", func() map[string]any { return map[string]any{"type": e2eStageTOTP} }, 400, "M_MISSING_PARAM"},
		{"TOTP without a session, right code", func() map[string]any {
			return map[string]any{"type": e2eStageTOTP, "code": e.code(u)}
		}, 401, ""},
		{"recovery code after TOTP", func() map[string]any { return e2eAuth(e2eStageRecov, session, u.recovery[0]) }, 401, "M_FORBIDDEN"},
		{"TOTP again", func() map[string]any { return e2eAuth(e2eStageTOTP, session, e.code(u)) }, 401, "M_FORBIDDEN"},
		{"TOTP again, code as token", func() map[string]any {
			return map[string]any{"type": e2eStageTOTP, "session": session, "token": e.code(u)}
		}, 401, "M_FORBIDDEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.gw("POST", e2eDeleteDevicesPath, u.AccessToken, e2eWith(body, tc.auth()))
			if r.str("errcode") == "M_BAD_JSON" || strings.Contains(r.str("error"), "auth.type") {
				t.Fatalf("our stage reached the homeserver: %d %s", r.Status, r.Raw)
			}
			expect(t, r, tc.status, tc.errcode)
			if r.Status == 401 && tc.errcode == "" {
				session = e.e2eCheckChallenge(r, e2eProtectedFlows, []string{e2eStageTOTP})
			}
			if !e.e2eHasDevice(u.AccessToken, d) {
				t.Fatal("device deleted by a 2FA stage")
			}
		})
	}
	if session == "" {
		t.Fatal("no session got its second factor")
	}
	if m := spy.mentioning("m.login.2fa"); len(m) > 0 {
		t.Fatalf("our stage reached the homeserver: %s %s %s", m[0].Method, m[0].Path, m[0].Body)
	}
	if fw := spy.withAuth("delete_devices"); len(fw) > 0 {
		t.Fatalf("the homeserver was sent auth before the password stage: %s", fw[0].Body)
	}
	r := e.gw("POST", e2eDeleteDevicesPath, u.AccessToken, e2eWith(body, passwordAuth(u.User, session)))
	expect(t, r, 200, "")
	if e.e2eHasDevice(u.AccessToken, d) {
		t.Fatal("device still there")
	}
}
