package gateway_test

import (
	"context"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// End-to-end tests of POST /login through the gateway, against a real
// Dendrite (issue #4).

const (
	e2eLoginPath   = "/_matrix/client/v3/login"
	e2eWhoAmIPath  = "/_matrix/client/v3/account/whoami"
	e2eDevicesPath = "/_matrix/client/v3/devices"
	e2eStageTOTP   = "m.login.2fa.totp"
	e2eStageRecov  = "m.login.2fa.recovery"
	e2eStagePass   = "m.login.password"
)

// e2ePasswordLogin is a plain password login body for u.
func e2ePasswordLogin(u *dendrite.User) map[string]any {
	return map[string]any{
		"type":       e2eStagePass,
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart},
		"password":   u.Password,
	}
}

// e2eAuth is an auth dict for one of our stages.
func e2eAuth(stage, session, code string) map[string]any {
	return map[string]any{"type": stage, "session": session, "code": code}
}

// e2eHasDevice reports whether token's user still has device id.
func (e *env) e2eHasDevice(token, id string) bool {
	e.t.Helper()
	return slices.Contains(e.deviceIDs(token), id)
}

// e2eWhoAmI checks that token is a live access token of userID, both through
// the gateway and directly at the homeserver.
func (e *env) e2eWhoAmI(token, userID string) {
	e.t.Helper()
	for name, send := range map[string]func(string, string, string, any) resp{"gateway": e.gw, "direct": e.direct} {
		r := send("GET", e2eWhoAmIPath, token, nil)
		if r.Status != 200 || r.str("user_id") != userID {
			e.t.Fatalf("whoami %s: got %d %s; want 200 for %s", name, r.Status, r.Raw, userID)
		}
	}
}

// e2eCheckChallenge checks a 401 UIA challenge: flows, completed, params of
// the TOTP stage, and a session. It returns the session.
func (e *env) e2eCheckChallenge(r resp, wantFlows [][]string, wantCompleted []string) string {
	e.t.Helper()
	if r.Status != 401 {
		e.t.Fatalf("got %d %s; want a 401 challenge", r.Status, r.Raw)
	}
	if got := r.flows(); !slices.EqualFunc(got, wantFlows, slices.Equal) {
		e.t.Fatalf("flows %v; want %v (body %s)", got, wantFlows, r.Raw)
	}
	if got := r.strings("completed"); !slices.Equal(got, wantCompleted) {
		e.t.Fatalf("completed %v; want %v (body %s)", got, wantCompleted, r.Raw)
	}
	params, _ := r.Body["params"].(map[string]any)
	totp, _ := params[e2eStageTOTP].(map[string]any)
	p := e.acc.Params()
	if totp["digits"] != float64(p.Digits) || totp["period"] != float64(p.Period) {
		e.t.Fatalf("params %v; want %s digits %d period %d", r.Body["params"], e2eStageTOTP, p.Digits, p.Period)
	}
	s := r.str("session")
	if s == "" {
		e.t.Fatalf("challenge without a session: %s", r.Raw)
	}
	return s
}

var e2eLoginFlows = [][]string{{e2eStagePass, e2eStageTOTP}, {e2eStagePass, e2eStageRecov}}

// e2eHeldLogin sends u's password login through the gateway and checks the
// 2FA challenge; it returns the session.
func (e *env) e2eHeldLogin(u *enrolled) string {
	e.t.Helper()
	r := e.gw("POST", e2eLoginPath, "", e2ePasswordLogin(u.User))
	if _, ok := r.Body["access_token"]; ok {
		e.t.Fatalf("an enrolled user's password login released a token: %s", r.Raw)
	}
	return e.e2eCheckChallenge(r, e2eLoginFlows, []string{e2eStagePass})
}

// e2eCheckLoggedIn checks a released login and that its token works.
func (e *env) e2eCheckLoggedIn(r resp, u *enrolled) {
	e.t.Helper()
	expect(e.t, r, 200, "")
	if r.str("access_token") == "" || r.str("device_id") == "" || r.str("user_id") != u.UserID {
		e.t.Fatalf("login answer %s; want access_token, device_id and user_id %s", r.Raw, u.UserID)
	}
	e.e2eWhoAmI(r.str("access_token"), u.UserID)
}

func TestLoginEnrolledTOTP(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("alice")

	s := e.e2eHeldLogin(u)

	// A wrong code: 401 inside UIA, same session, nothing completed beyond the password.
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.wrongCode(u))})
	expect(t, r, 401, "M_FORBIDDEN")
	if r.str("session") != s || !slices.Equal(r.strings("completed"), []string{e2eStagePass}) {
		t.Fatalf("wrong code: got %s; want session %s and completed [password]", r.Raw, s)
	}

	// The right code releases the homeserver's login.
	code := e.code(u)
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, code)})
	e.e2eCheckLoggedIn(r, u)

	// The code just used does not work again, even on a new login session.
	s2 := e.e2eHeldLogin(u)
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s2, code)})
	expect(t, r, 401, "M_FORBIDDEN")
	if r.str("session") != s2 {
		t.Fatalf("replayed code: session %q; want %q", r.str("session"), s2)
	}

	// A body that is itself the auth dict is read the same way.
	r = e.gw("POST", e2eLoginPath, "", e2eAuth(e2eStageTOTP, s2, e.code(u)))
	e.e2eCheckLoggedIn(r, u)

	// A session is good for one login only.
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"first session with a fresh code", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(u))}},
		{"second session, session only", map[string]any{"auth": map[string]any{"session": s2}}},
		{"second session, top-level dict", e2eAuth(e2eStageTOTP, s2, e.code(u))},
		{"first session with a recovery code", map[string]any{"auth": e2eAuth(e2eStageRecov, s, u.recovery[0])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.gw("POST", e2eLoginPath, "", tc.body)
			expect(t, r, 400, "M_INVALID_PARAM")
		})
	}
}

func TestLoginRecoveryCodeOnce(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("bob")

	s := e.e2eHeldLogin(u)
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageRecov, s, u.recovery[0])})
	e.e2eCheckLoggedIn(r, u)

	// The same recovery code on a new login is refused: it was consumed.
	s2 := e.e2eHeldLogin(u)
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageRecov, s2, u.recovery[0])})
	expect(t, r, 401, "M_FORBIDDEN")
	if r.str("session") != s2 {
		t.Fatalf("used recovery code: session %q; want %q", r.str("session"), s2)
	}

	// Another one, typed in lower case without hyphens, still works there.
	typed := strings.ToLower(strings.ReplaceAll(u.recovery[1], "-", ""))
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageRecov, s2, typed)})
	e.e2eCheckLoggedIn(r, u)
}

func TestLoginWrongPasswordIsHomeserversAnswer(t *testing.T) {
	e := newEnv(t)
	enr := e.enrol("carol")
	plain := tesths.RegisterUser(t, e.hs, "dave")
	wrong := func(localpart string) map[string]any {
		return map[string]any{
			"type":       e2eStagePass,
			"identifier": map[string]any{"type": "m.id.user", "user": localpart},
			"password":   "not-the-password",
		}
	}

	want := e.direct("POST", e2eLoginPath, "", wrong(enr.Localpart))
	if want.Status < 400 || want.str("errcode") == "" {
		t.Fatalf("Dendrite accepted a wrong password: %d %s", want.Status, want.Raw)
	}
	before := e.deviceIDs(enr.AccessToken)
	for _, tc := range []struct {
		name string
		send func(string, string, string, any) resp
		user string
	}{
		{"gateway, user with 2FA", e.gw, enr.Localpart},
		{"gateway, user without 2FA", e.gw, plain.Localpart},
		{"gateway, no such user", e.gw, "nobody"},
		{"direct, user without 2FA", e.direct, plain.Localpart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.send("POST", e2eLoginPath, "", wrong(tc.user))
			if got.Status != want.Status || !reflect.DeepEqual(got.Body, want.Body) {
				t.Fatalf("got %d %s; want Dendrite's own %d %s", got.Status, got.Raw, want.Status, want.Raw)
			}
		})
	}
	if after := e.deviceIDs(enr.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after wrong passwords; want %v", after, before)
	}
}

func TestLoginWithout2FAUnchanged(t *testing.T) {
	e := newEnv(t)
	u := tesths.RegisterUser(t, e.hs, "erin")

	direct := e.direct("POST", e2eLoginPath, "", e2ePasswordLogin(u))
	expect(t, direct, 200, "")
	got := e.gw("POST", e2eLoginPath, "", e2ePasswordLogin(u))
	expect(t, got, 200, "")
	if k1, k2 := slices.Sorted(maps.Keys(got.Body)), slices.Sorted(maps.Keys(direct.Body)); !slices.Equal(k1, k2) {
		t.Fatalf("gateway login keys %v; direct login keys %v", k1, k2)
	}
	if got.str("user_id") != u.UserID || got.str("access_token") == direct.str("access_token") {
		t.Fatalf("gateway login %s; direct %s", got.Raw, direct.Raw)
	}
	e.e2eWhoAmI(got.str("access_token"), u.UserID)

	// Appservice logins go to the homeserver as they are: a bogus one gets
	// the homeserver's own error.
	as := map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}}
	want := e.direct("POST", e2eLoginPath, "", as)
	r := e.gw("POST", e2eLoginPath, "", as)
	if want.Status == 200 || r.Status != want.Status || !reflect.DeepEqual(r.Body, want.Body) {
		t.Fatalf("appservice login: gateway %d %s; direct %d %s", r.Status, r.Raw, want.Status, want.Raw)
	}
}

func TestLoginAbandonedIsLoggedOut(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("frank")

	before := e.deviceIDs(u.AccessToken)
	s := e.e2eHeldLogin(u)
	held := e.deviceIDs(u.AccessToken)
	if len(held) != len(before)+1 {
		t.Fatalf("devices %v while a login is held; want one more than %v", held, before)
	}

	e.clock.Add(6 * time.Minute) // past LoginTTL (5 minutes)
	e.gate.Sweep(context.Background())

	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(u))})
	expect(t, r, 400, "M_INVALID_PARAM")
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the sweep; want %v (the held login's device logged out)", after, before)
	}
}

func TestLoginLockout(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("grace")

	before := e.deviceIDs(u.AccessToken)
	s := e.e2eHeldLogin(u)
	for i := 1; i <= 5; i++ {
		r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.wrongCode(u))})
		if r.Status != 401 || r.str("errcode") != "M_FORBIDDEN" {
			t.Fatalf("wrong code %d: got %d %s; want 401 M_FORBIDDEN", i, r.Status, r.Raw)
		}
	}
	// Past the limit even the right code is refused, and the held login dies.
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(u))})
	expect(t, r, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("429 without a positive retry_after_ms: %s", r.Raw)
	}
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the lockout; want %v (the held login's device logged out)", after, before)
	}
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": map[string]any{"session": s}})
	expect(t, r, 400, "M_INVALID_PARAM")
}

// e2eRelay is a reverse proxy whose homeserver can be swapped, so the
// gateway keeps its upstream URL across a real homeserver restart.
type e2eRelay struct {
	URL    string
	target atomic.Pointer[url.URL]
}

func newE2ERelay(t *testing.T, hsURL string) *e2eRelay {
	t.Helper()
	r := &e2eRelay{}
	r.point(t, hsURL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(r.target.Load()) }, ErrorLog: log.New(io.Discard, "", 0)}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *e2eRelay) point(t *testing.T, hsURL string) {
	u, err := url.Parse(hsURL)
	if err != nil {
		t.Fatal(err)
	}
	r.target.Store(u)
}

func TestLoginSweepRetriesAfterHomeserverOutage(t *testing.T) {
	binDir := tesths.DendriteBinDir(t)
	dir := t.TempDir()
	start := func() *dendrite.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		s, err := dendrite.Start(ctx, dendrite.Options{BinDir: binDir, Dir: dir})
		if err != nil {
			t.Fatalf("starting Dendrite: %v", err)
		}
		t.Cleanup(func() { s.Stop() })
		return s
	}
	hs := start()
	relay := newE2ERelay(t, hs.URL)
	e := newEnvWith(t, &dendrite.Server{URL: relay.URL, ServerName: hs.ServerName})
	e.hs = hs
	u := e.enrol("olga")

	before := e.deviceIDs(u.AccessToken)
	s := e.e2eHeldLogin(u)

	// The login expires while the homeserver is down: the sweep cannot log
	// it out now...
	if err := hs.Stop(); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(6 * time.Minute)
	e.gate.Sweep(context.Background())

	// ...and must not forget it: once the homeserver is back, the next sweep does.
	e.hs = start()
	relay.point(t, e.hs.URL)
	if held := e.deviceIDs(u.AccessToken); len(held) != len(before)+1 {
		t.Fatalf("devices %v after the restart; want the held login's device besides %v", held, before)
	}
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(u))})
	expect(t, r, 400, "M_INVALID_PARAM")
	e.gate.Sweep(context.Background())
	if after := e.deviceIDs(u.AccessToken); !slices.Equal(after, before) {
		t.Fatalf("devices %v after the homeserver came back and the next sweep; want %v (the held login logged out)", after, before)
	}
}

// TestLoginPasswordCannotTakeOverADevice: a password login naming the victim's
// existing device ID would make the homeserver replace that device's token
// before the second factor. For a user with 2FA (known by full ID, by
// localpart once the server name is known, or not identifiable at all) the
// gateway drops device_id, so the victim's session survives a password-only
// attacker, also after the abandoned login is swept.
func TestLoginPasswordCannotTakeOverADevice(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("victim")
	plain := tesths.RegisterUser(t, e.hs, "plainuser")
	victimDevice := u.DeviceID
	cases := []struct {
		name string
		id   map[string]any
	}{
		{"full user ID", map[string]any{"type": "m.id.user", "user": u.UserID}},
		{"localpart", map[string]any{"type": "m.id.user", "user": u.Localpart}},
	}
	for _, tc := range cases {
		r := e.gw("POST", e2eLoginPath, "", map[string]any{"type": "m.login.password", "identifier": tc.id,
			"password": u.Password, "device_id": victimDevice})
		expect(t, r, 401, "")
		if !e.e2eHasDevice(u.AccessToken, victimDevice) {
			t.Fatalf("%s: the victim's device is gone after a password-only login", tc.name)
		}
		e.e2eWhoAmI(u.AccessToken, u.UserID) // the victim's token still works
	}
	e.clock.Add(6 * time.Minute)
	e.gate.Sweep(context.Background())
	if !e.e2eHasDevice(u.AccessToken, victimDevice) {
		t.Fatal("sweeping the abandoned logins deleted the victim's device")
	}
	e.e2eWhoAmI(u.AccessToken, u.UserID)

	// A user without 2FA keeps the homeserver's device semantics.
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": plain.Localpart}, "password": plain.Password, "device_id": "CHOSEN"})
	expect(t, r, 200, "")
	if r.str("device_id") != "CHOSEN" {
		t.Errorf("device_id of a user without 2FA = %q; want the one asked for", r.str("device_id"))
	}
}
