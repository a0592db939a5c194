package gateway_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Fast tests of the guarded homeserver endpoints against the fake
// homeserver: the 2FA stage in front, bodies rebuilt, auth dicts bound to
// the token's owner.

const deleteDevices = "/_matrix/client/v3/delete_devices"

var (
	totpThenPassword = [][]string{{"m.login.2fa.totp", "m.login.password"}, {"m.login.2fa.recovery", "m.login.password"}}
	secondFactorOnly = [][]string{{"m.login.2fa.totp"}, {"m.login.2fa.recovery"}}
)

// authFn builds a round's auth dict for the session in play ("" before one
// exists); nil sends none.
type authFn func(e *fast, session string) obj

func sessionOf(a obj, session string) obj {
	if session != "" {
		a["session"] = session
	}
	return a
}

func totpOf(user string) authFn {
	return func(e *fast, s string) obj {
		return sessionOf(obj{"type": "m.login.2fa.totp", "code": e.code(user)}, s)
	}
}

func recoveryOf(user string, i int) authFn {
	return func(e *fast, s string) obj {
		return sessionOf(obj{"type": "m.login.2fa.recovery", "code": e.recovery[user][i]}, s)
	}
}

func codeAuth(code string) authFn {
	return func(_ *fast, s string) obj { return sessionOf(obj{"type": "m.login.2fa.totp", "code": code}, s) }
}

func wrongAuth(user string) authFn {
	return func(e *fast, s string) obj {
		return sessionOf(obj{"type": "m.login.2fa.totp", "code": e.wrongCode(user)}, s)
	}
}

func passwordAuth2(user, password string) authFn {
	return func(_ *fast, s string) obj {
		return sessionOf(obj{"type": "m.login.password", "identifier": userID(user), "password": password}, s)
	}
}

func bareAuth(_ *fast, s string) obj { return obj{"session": s} }

// passwordUpstream is the password stage the homeserver gets for alice.
const passwordUpstream = `{"type":"m.login.password","session":"$S","identifier":{"type":"m.id.user","user":"@alice:example.org"},"password":"alice-pw"}`

// round is one request of a UIA exchange on a guarded endpoint.
type round struct {
	auth   authFn
	fields obj    // the body besides auth (nil: the scenario's)
	path   string // "" : the scenario's
	status int
	// errcode is the answer's ("" none); completed the challenge's (401).
	errcode   string
	completed []string
	// flows, when set, are the challenge's flows.
	flows [][]string
	// upstream is the exact body the homeserver gets in this round ("" :
	// nothing reaches it); $S stands for the session.
	upstream string
}

// runRounds plays rounds as token on method path (fields the default body)
// and checks each; it returns the session of the exchange.
func runRounds(t *testing.T, e *fast, token, method, path string, fields obj, rounds []round) string {
	t.Helper()
	session := ""
	for i, rd := range rounds {
		body := obj{}
		f := fields
		if rd.fields != nil {
			f = rd.fields
		}
		for k, v := range f {
			body[k] = v
		}
		if rd.auth != nil {
			body["auth"] = rd.auth(e, session)
		}
		p := path
		if rd.path != "" {
			p = rd.path
		}
		_, before, _, _ := e.hs.counts()
		r := e.do(method, p, token, body)
		if r.Status != rd.status || r.str("errcode") != rd.errcode {
			t.Fatalf("round %d: got %d %s; want %d %q", i+1, r.Status, r.Raw, rd.status, rd.errcode)
		}
		if r.Status == 401 {
			if session == "" {
				session = r.str("session")
			}
			if got := r.strings("completed"); !slices.Equal(got, rd.completed) && len(got)+len(rd.completed) > 0 {
				t.Fatalf("round %d: completed %v; want %v: %s", i+1, got, rd.completed, r.Raw)
			}
			if rd.flows != nil {
				wantChallenge(t, r, rd.flows, rd.completed)
			}
		}
		_, after, _, _ := e.hs.counts()
		switch {
		case rd.upstream == "" && after != before:
			t.Fatalf("round %d: forwarded %s; want nothing upstream", i+1, e.hs.lastDo(t).Body)
		case rd.upstream != "" && after != before+1:
			t.Fatalf("round %d: %d requests upstream; want 1", i+1, after-before)
		case rd.upstream != "":
			sameJSON(t, "round "+string(rune('0'+i+1))+" upstream", e.hs.lastDo(t).Body, strings.ReplaceAll(rd.upstream, "$S", session))
		}
		if r.Status >= 200 && r.Status < 300 {
			session = "" // consumed: a next round starts anew
		}
	}
	return session
}

// noOwnStagesUpstream fails if any request the homeserver got carries one of
// the gateway's stage types or a code.
func noOwnStagesUpstream(t *testing.T, e *fast) {
	t.Helper()
	e.hs.mu.Lock()
	defer e.hs.mu.Unlock()
	for _, c := range e.hs.dos {
		if strings.Contains(string(c.Body), "m.login.2fa") || strings.Contains(string(c.Body), `"code"`) {
			t.Fatalf("the homeserver got the gateway's stage: %s", c.Body)
		}
	}
}

// TestFastGuardedStageOrder: for a user with 2FA, the 2FA stage comes before
// the homeserver's password stage, which is forwarded (bound to the owner,
// rebuilt) only then; a session authorises the operation it began with.
func TestFastGuardedStageOrder(t *testing.T) {
	t.Parallel()
	devices := obj{"devices": []string{"D1"}}
	learn := round{status: 401, upstream: `{"devices":["D1"]}`}
	totp := round{auth: totpOf(alice), status: 401, completed: []string{"m.login.2fa.totp"}}
	password := round{auth: passwordAuth2("alice", alicePW), status: 200, upstream: `{"devices":["D1"],"auth":` + passwordUpstream + `}`}
	tests := []struct {
		name   string
		rounds []round
	}{
		{"TOTP then password", []round{learn, totp, password}},
		{"recovery code then password", []round{learn,
			{auth: recoveryOf(alice, 0), status: 401, completed: []string{"m.login.2fa.recovery"}}, password}},
		{"TOTP in the first request", []round{{auth: totpOf(alice), status: 401, completed: []string{"m.login.2fa.totp"}, upstream: `{"devices":["D1"]}`}, password}},
		{"password before TOTP", []round{learn,
			{auth: passwordAuth2("alice", alicePW), status: 401, errcode: "M_FORBIDDEN"}, totp, password}},
		{"password without a session before TOTP", []round{
			{auth: passwordAuth2("alice", alicePW), status: 401, errcode: "M_FORBIDDEN", upstream: `{"devices":["D1"]}`}}},
		{"bare session before TOTP", []round{learn, {auth: bareAuth, status: 401}}},
		{"wrong code", []round{learn, {auth: wrongAuth(alice), status: 401, errcode: "M_FORBIDDEN"}, totp, password}},
		{"recovery stage after TOTP", []round{learn, totp,
			{auth: recoveryOf(alice, 1), status: 401, errcode: "M_FORBIDDEN", completed: []string{"m.login.2fa.totp"}}, password}},
		{"TOTP stage twice", []round{learn, totp,
			{auth: totpOf(alice), status: 401, errcode: "M_FORBIDDEN", completed: []string{"m.login.2fa.totp"}}}},
		{"wrong password upstream, then the right one", []round{learn, totp,
			{auth: passwordAuth2("alice", "nope"), status: 401, errcode: "M_FORBIDDEN", completed: []string{"m.login.2fa.totp"},
				upstream: `{"devices":["D1"],"auth":{"type":"m.login.password","session":"$S","identifier":{"type":"m.id.user","user":"@alice:example.org"},"password":"nope"}}`},
			password}},
		{"bare session after TOTP (fallback resume)", []round{learn, totp,
			{auth: bareAuth, status: 401, completed: []string{"m.login.2fa.totp"}, upstream: `{"devices":["D1"],"auth":{"session":"$S"}}`}}},
		{"password naming the owner by case variant and legacy field", []round{learn, totp,
			{auth: func(_ *fast, s string) obj {
				return obj{"type": "m.login.password", "session": s, "identifier": userID("ALICE"), "user": "ALICE", "password": alicePW,
					"extra": "x", "medium_x": 1}
			}, status: 200, upstream: `{"devices":["D1"],"auth":` + passwordUpstream + `}`}}},
		{"password naming no user", []round{learn, totp,
			{auth: func(_ *fast, s string) obj { return obj{"type": "m.login.password", "session": s, "password": alicePW} },
				status: 200, upstream: `{"devices":["D1"],"auth":` + passwordUpstream + `}`}}},
		{"unknown body fields dropped", []round{
			{fields: obj{"devices": []string{"D1"}, "evil": true, "user_id": carol}, status: 401, upstream: `{"devices":["D1"]}`},
			{fields: obj{"devices": []string{"D1"}, "other": 1}, auth: totpOf(alice), status: 401, completed: []string{"m.login.2fa.totp"}},
			{fields: obj{"devices": []string{"D1"}, "erase": true}, auth: passwordAuth2("alice", alicePW), status: 200,
				upstream: `{"devices":["D1"],"auth":` + passwordUpstream + `}`}}},
		{"changed body at the TOTP stage", []round{learn,
			{fields: obj{"devices": []string{"D2"}}, auth: totpOf(alice), status: 403, errcode: "M_FORBIDDEN"}}},
		{"changed body at the password stage", []round{learn, totp,
			{fields: obj{"devices": []string{"D1", "D2"}}, auth: passwordAuth2("alice", alicePW), status: 403, errcode: "M_FORBIDDEN"},
			password}},
		{"body changed at the password stage", []round{learn, totp,
			{fields: obj{"devices": []string{"OTHER"}}, auth: passwordAuth2("alice", alicePW), status: 403, errcode: "M_FORBIDDEN"}}},
		{"body dropped at the password stage", []round{learn, totp,
			{fields: obj{}, auth: passwordAuth2("alice", alicePW), status: 400, errcode: "M_MISSING_PARAM"}}},
		{"session used on another endpoint", []round{learn, totp,
			{path: "/_matrix/client/v3/account/deactivate", fields: obj{}, auth: passwordAuth2("alice", alicePW), status: 403, errcode: "M_FORBIDDEN"}}},
		{"session used under another prefix", []round{learn, totp,
			{path: "/_matrix/client/r0/delete_devices", auth: passwordAuth2("alice", alicePW), status: 403, errcode: "M_FORBIDDEN"}}},
		{"unknown session", []round{{auth: func(e *fast, _ string) obj {
			return obj{"type": "m.login.2fa.totp", "session": "nope", "code": e.code(alice)}
		},
			status: 400, errcode: "M_INVALID_PARAM"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			runRounds(t, e, aliceTok, "POST", deleteDevices, devices, tt.rounds)
			noOwnStagesUpstream(t, e)
		})
	}
}

// TestFastGuardedOtherUsersSession: a session is its user's: another user with
// 2FA cannot use it, even after its TOTP stage is done.
func TestFastGuardedOtherUsersSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth authFn
	}{
		{"TOTP stage", totpOf(carol)},
		{"password stage", passwordAuth2("carol", carolPW)},
		{"bare session", bareAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			e.enrol(carol)
			devices := obj{"devices": []string{"D1"}}
			s := runRounds(t, e, aliceTok, "POST", deleteDevices, devices, []round{
				{status: 401, upstream: `{"devices":["D1"]}`},
				{auth: totpOf(alice), status: 401, completed: []string{"m.login.2fa.totp"}}})
			r := e.do("POST", deleteDevices, carolTok, with(devices, obj{"auth": tt.auth(e, s)}))
			expect(t, r, 403, "M_FORBIDDEN")
			if _, n, _, _ := e.hs.counts(); n != 1 {
				t.Fatalf("%d requests upstream; want only alice's first", n)
			}
		})
	}
}

// TestFastGuardedEndpoints: every guarded endpoint, under each of its
// prefixes' kinds: rebuilt body, the 2FA stage in front for alice, the
// homeserver's challenge learnt without auth, then the password stage.
func TestFastGuardedEndpoints(t *testing.T) {
	t.Parallel()
	masterKey := obj{"user_id": alice, "usage": []string{"master"}, "keys": obj{"ed25519:K": "K"}}
	tests := []struct {
		name, method, path string
		fields             obj
		rebuilt            string // the fields the homeserver gets
	}{
		{"delete_devices r0", "POST", "/_matrix/client/r0/delete_devices", obj{"devices": []string{"A", "B"}, "x": 1}, `{"devices":["A","B"]}`},
		{"delete_devices unstable", "POST", "/_matrix/client/unstable/delete_devices", obj{"devices": []string{"A"}}, `{"devices":["A"]}`},
		{"devices/{id}", "DELETE", "/_matrix/client/v3/devices/ALICEDEV2", obj{"x": 1, "devices": []string{"A"}}, `{}`},
		{"account/password", "POST", "/_matrix/client/v3/account/password",
			obj{"new_password": "n3w", "logout_devices": false, "x": 1}, `{"new_password":"n3w","logout_devices":false}`},
		{"account/deactivate", "POST", "/_matrix/client/r0/account/deactivate",
			obj{"erase": true, "id_server": "is.example.org", "user_id": carol}, `{"erase":true,"id_server":"is.example.org"}`},
		{"account/3pid/add", "POST", "/_matrix/client/v3/account/3pid/add",
			obj{"client_secret": "cs", "sid": "s1", "bind": true}, `{"client_secret":"cs","sid":"s1"}`},
		{"keys/device_signing/upload unstable", "POST", "/_matrix/client/unstable/keys/device_signing/upload",
			obj{"master_key": masterKey, "x": 1}, mustJSON(t, obj{"master_key": masterKey})},
		{"login/get_token v1", "POST", "/_matrix/client/v1/login/get_token", obj{"x": 1}, `{}`},
		{"login/get_token msc3882", "POST", "/_matrix/client/unstable/org.matrix.msc3882/login/get_token", obj{}, `{}`},
		{"login/token msc3882", "POST", "/_matrix/client/unstable/org.matrix.msc3882/login/token", obj{}, `{}`},
	}
	withAuth := func(rebuilt, auth string) string {
		if rebuilt == `{}` {
			return `{"auth":` + auth + `}`
		}
		return strings.TrimSuffix(rebuilt, "}") + `,"auth":` + auth + `}`
	}
	for _, tt := range tests {
		t.Run(tt.name+" with 2FA", func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			r := e.do(tt.method, tt.path, aliceTok, tt.fields)
			wantChallenge(t, r, totpThenPassword, nil)
			first := e.hs.lastDo(t)
			sameJSON(t, "first request upstream", first.Body, tt.rebuilt)
			if first.Method != tt.method || first.Path != tt.path {
				t.Fatalf("upstream %s %s; want %s %s", first.Method, first.Path, tt.method, tt.path)
			}
			for k := range first.Header {
				if k != "Authorization" && k != "User-Agent" && !strings.HasPrefix(k, "X-Forwarded-") {
					t.Errorf("header %s forwarded", k)
				}
			}
			if a := first.Header.Get("Authorization"); a != "Bearer "+aliceTok {
				t.Errorf("Authorization upstream %q", a)
			}
			runRounds(t, e, aliceTok, tt.method, tt.path, tt.fields, []round{
				{auth: func(e *fast, _ string) obj { return totpOf(alice)(e, r.str("session")) }, status: 401, completed: []string{"m.login.2fa.totp"}},
				{auth: func(e *fast, _ string) obj { return passwordAuth2(alice, alicePW)(e, r.str("session")) }, status: 200,
					upstream: strings.ReplaceAll(withAuth(tt.rebuilt, passwordUpstream), "$S", r.str("session"))},
			})
			noOwnStagesUpstream(t, e)
		})
		t.Run(tt.name+" without 2FA", func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			body := with(tt.fields, obj{"auth": obj{"type": "m.login.password", "session": "client-session", "user": "bob", "password": bobPW, "x": 1}})
			e.do(tt.method, tt.path, bobTok, body)
			sameJSON(t, "request upstream", e.hs.lastDo(t).Body, withAuth(tt.rebuilt,
				`{"type":"m.login.password","session":"client-session","identifier":{"type":"m.id.user","user":"@bob:example.org"},"password":"bob-pw"}`))
		})
	}
}

// TestFastGuardedCrossUser: an auth dict naming anyone but the token's owner
// is refused before anything goes upstream, and audited on the owner's trail.
func TestFastGuardedCrossUser(t *testing.T) {
	t.Parallel()
	dicts := []struct {
		name    string
		auth    obj
		status  int
		errcode string
	}{
		{"identifier names another user", obj{"type": "m.login.password", "identifier": userID("carol"), "password": carolPW}, 403, "M_FORBIDDEN"},
		{"legacy user names another user", obj{"type": "m.login.password", "user": carol, "password": carolPW}, 403, "M_FORBIDDEN"},
		{"owner's localpart on another server", obj{"type": "m.login.password", "identifier": userID("@alice:evil.example"), "password": "x"}, 403, "M_FORBIDDEN"},
		{"third-party identifier", obj{"type": "m.login.password", "password": "x",
			"identifier": obj{"type": "m.id.thirdparty", "medium": "email", "address": "carol@example.org"}}, 403, "M_FORBIDDEN"},
		{"legacy medium and address", obj{"type": "m.login.password", "password": "x", "medium": "email", "address": "carol@example.org"}, 403, "M_FORBIDDEN"},
		{"owner and another user", obj{"type": "m.login.password", "identifier": userID("OWNER"), "user": "carol", "password": "x"}, 400, "M_INVALID_PARAM"},
		{"another stage naming another user", obj{"type": "m.login.dummy", "identifier": userID("carol")}, 403, "M_FORBIDDEN"},
		{"no stage, naming another user", obj{"session": "s", "user": "carol"}, 403, "M_FORBIDDEN"},
	}
	owners := []struct{ name, user, token string }{{"with 2FA", alice, aliceTok}, {"without 2FA", bob, bobTok}}
	for _, o := range owners {
		for _, d := range dicts {
			t.Run(o.name+"/"+d.name, func(t *testing.T) {
				t.Parallel()
				e := newFast(t)
				auth := obj{}
				for k, v := range d.auth {
					if id, ok := v.(obj); ok && id["user"] == "OWNER" {
						v = userID(o.user)
					}
					auth[k] = v
				}
				r := e.do("POST", deleteDevices, o.token, obj{"devices": []string{"D1"}, "auth": auth})
				expect(t, r, d.status, d.errcode)
				if _, n, _, _ := e.hs.counts(); n != 0 {
					t.Fatalf("forwarded %s", e.hs.lastDo(t).Body)
				}
				events, err := e.acc.AuditEvents(context.Background(), o.user, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) != 1 || events[0].Kind != storage.AuditRefused {
					t.Fatalf("audit trail %+v; want a %q event", events, storage.AuditRefused)
				}
			})
		}
	}
}

// TestFastGuardedRequestRefused: ambiguous or borrowed identities are refused
// before anything goes upstream.
func TestFastGuardedRequestRefused(t *testing.T) {
	t.Parallel()
	bearer := func(tok ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for _, t := range tok {
			h.Add("Authorization", "Bearer "+t)
		}
		return h
	}
	tests := []struct {
		name    string
		target  string
		header  http.Header
		status  int
		errcode string
		whoami  bool // the homeserver is asked who the token is
	}{
		{"token in header and query", deleteDevices + "?access_token=" + aliceTok, bearer(aliceTok), 401, "M_MISSING_TOKEN", false},
		{"two tokens in the header", deleteDevices, bearer(aliceTok, bobTok), 401, "M_MISSING_TOKEN", false},
		{"two tokens in the query", deleteDevices + "?access_token=" + bobTok + "&access_token=" + aliceTok, bearer(), 401, "M_MISSING_TOKEN", false},
		{"user_id assertion", deleteDevices + "?user_id=" + carol, bearer(asToken), 403, "M_FORBIDDEN", false},
		{"device_id assertion", deleteDevices + "?device_id=CAROLDEV", bearer(asToken), 403, "M_FORBIDDEN", false},
		{"MSC3202 device_id assertion", deleteDevices + "?org.matrix.msc3202.device_id=CAROLDEV", bearer(aliceTok), 403, "M_FORBIDDEN", false},
		{"no token", deleteDevices, bearer(), 401, "M_MISSING_TOKEN", false},
		{"Basic credentials are no token", deleteDevices, http.Header{"Authorization": {"Basic YWxpY2U6YWxpY2UtcHc="}}, 401, "M_MISSING_TOKEN", false},
		{"unknown token", deleteDevices, bearer("nope"), 401, "M_UNKNOWN_TOKEN", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			r := e.raw("POST", tt.target, tt.header, `{"devices":["D1"]}`)
			expect(t, r, tt.status, tt.errcode)
			if _, n, _, p := e.hs.counts(); n != 0 || p != 0 {
				t.Fatalf("%d requests upstream, %d passed through; want none", n, p)
			}
			var whoamis []string
			e.hs.locked(func() { whoamis = e.hs.whoamis })
			if asked := len(whoamis) > 0; asked != tt.whoami {
				t.Fatalf("whoami asked %v; want %v", whoamis, tt.whoami)
			}
		})
	}
}

// TestFastGuardedOwnSession: POST /account/3pid (deprecated, no UIA at some
// homeservers) gets the gateway's own 2FA session, then goes upstream
// without auth; without 2FA it goes as it is, rebuilt.
func TestFastGuardedOwnSession(t *testing.T) {
	t.Parallel()
	const path = "/_matrix/client/v3/account/3pid"
	creds := func(sid string) obj {
		return obj{"three_pid_creds": obj{"sid": sid, "client_secret": "cs", "x": 1}, "bind": false, "x": 1}
	}
	upstream := func(sid string) string {
		return `{"three_pid_creds":{"sid":"` + sid + `","client_secret":"cs"},"bind":false}`
	}
	challenge := round{status: 401, flows: secondFactorOnly}
	tests := []struct {
		name   string
		token  string
		rounds []round
	}{
		{"TOTP", aliceTok, []round{challenge, {auth: totpOf(alice), status: 200, upstream: upstream("s1")}}},
		{"recovery code", aliceTok, []round{challenge, {auth: recoveryOf(alice, 2), status: 200, upstream: upstream("s1")}}},
		{"TOTP without a session", aliceTok, []round{{auth: totpOf(alice), status: 200, upstream: upstream("s1")}}},
		{"wrong code", aliceTok, []round{challenge, {auth: wrongAuth(alice), status: 401, errcode: "M_FORBIDDEN"}}},
		{"password stage instead", aliceTok, []round{challenge, {auth: passwordAuth2("alice", alicePW), status: 401, errcode: "M_FORBIDDEN"}}},
		{"bare session", aliceTok, []round{challenge, {auth: bareAuth, status: 401}}},
		{"changed creds after the challenge", aliceTok, []round{challenge,
			{fields: creds("s2"), auth: totpOf(alice), status: 403, errcode: "M_FORBIDDEN"}}},
		{"without 2FA", bobTok, []round{{status: 200, upstream: upstream("s1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			e.hs.answer("POST", path, 200, `{}`)
			runRounds(t, e, tt.token, "POST", path, creds("s1"), tt.rounds)
			noOwnStagesUpstream(t, e)
		})
	}
}
