package gateway_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// Fast tests of POST /login against the fake homeserver (fake_test.go): what
// is forwarded, rebuilt, held or refused. Run them alone with
// `go test -run TestFast ./gateway/`.

const loginPath = "/_matrix/client/v3/login"

// obj is a JSON object literal.
type obj = map[string]any

func userID(user string) obj { return obj{"type": "m.id.user", "user": user} }

func passwordLogin(user, password string) obj {
	return obj{"type": "m.login.password", "identifier": userID(user), "password": password}
}

// with returns a copy of o with the fields of extra set.
func with(o obj, extra obj) obj {
	out := obj{}
	for k, v := range o {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// wantChallenge fails unless r is a 401 UIA body with every field a client
// needs (flows, params, session, completed) and the given flows and completed
// stages.
func wantChallenge(t *testing.T, r resp, flows [][]string, completed []string) {
	t.Helper()
	if r.Status != 401 {
		t.Fatalf("got %d %s; want a 401 challenge", r.Status, r.Raw)
	}
	for _, k := range []string{"flows", "params", "session", "completed"} {
		if _, ok := r.Body[k]; !ok {
			t.Fatalf("challenge without %q: %s", k, r.Raw)
		}
	}
	if r.str("session") == "" {
		t.Fatalf("challenge without a session: %s", r.Raw)
	}
	if got := r.flows(); !slices.EqualFunc(got, flows, slices.Equal) {
		t.Fatalf("flows %v; want %v", got, flows)
	}
	if got := r.strings("completed"); !slices.Equal(got, completed) && !(len(got) == 0 && len(completed) == 0) {
		t.Fatalf("completed %v; want %v", got, completed)
	}
}

var (
	passwordThen2FA = [][]string{{"m.login.password", "m.login.2fa.totp"}, {"m.login.password", "m.login.2fa.recovery"}}
	tokenThen2FA    = [][]string{{"m.login.token", "m.login.2fa.totp"}, {"m.login.token", "m.login.2fa.recovery"}}
)

// TestFastLoginForwarded: password, token and appservice logins reach the
// homeserver rebuilt: the user named once, in "identifier", only the fields
// the gateway read, the appservice's token as the only credential.
func TestFastLoginForwarded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target string
		header http.Header
		body   obj
		status int
		// want is the exact body the homeserver gets; authz its Authorization.
		want  string
		authz string
	}{
		{name: "password with identifier", body: passwordLogin("bob", bobPW), status: 200,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"bob-pw"}`},
		{name: "password with the legacy user field", body: obj{"type": "m.login.password", "user": "bob", "password": bobPW}, status: 200,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"bob-pw"}`},
		{name: "password naming the user twice alike", body: with(passwordLogin("bob", bobPW), obj{"user": "bob"}), status: 200,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"bob-pw"}`},
		{name: "password, unknown fields dropped, known kept",
			body: with(passwordLogin("bob", bobPW), obj{"initial_device_display_name": "Phone", "refresh_token": true,
				"evil": "x", "user_id": carol, "auth_extra": obj{"a": 1}}), status: 200,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"bob-pw","initial_device_display_name":"Phone","refresh_token":true}`},
		{name: "password, 3PID identifier", body: obj{"type": "m.login.password", "password": bobPW,
			"identifier": obj{"type": "m.id.thirdparty", "medium": "email", "address": "bob@example.org", "extra": 1}}, status: 403,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"bob@example.org"},"password":"bob-pw"}`},
		{name: "password, legacy medium and address", body: obj{"type": "m.login.password", "password": bobPW,
			"medium": "email", "address": "bob@example.org"}, status: 403,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"bob@example.org"},"password":"bob-pw"}`},
		{name: "password, phone identifier", body: obj{"type": "m.login.password", "password": bobPW,
			"identifier": obj{"type": "m.id.phone", "country": "GB", "phone": "07700900000"}}, status: 403,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.phone","country":"GB","phone":"07700900000"},"password":"bob-pw"}`},
		{name: "password, the client's own token not sent", header: http.Header{"Authorization": {"Bearer " + bobTok}, "Cookie": {"a=b"}},
			body: passwordLogin("bob", bobPW), status: 200,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"bob-pw"}`},
		{name: "wrong password: the homeserver's refusal", body: passwordLogin("bob", "nope"), status: 403,
			want: `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"password":"nope"}`},
		{name: "token", body: obj{"type": "m.login.token", "token": "hs-login-token", "user": "x"}, status: 200,
			want: `{"type":"m.login.token","token":"hs-login-token"}`},
		{name: "appservice with its token", header: http.Header{"Authorization": {"Bearer " + asToken}},
			body: obj{"type": "m.login.application_service", "identifier": userID("as_user1"), "password": "ignored"}, status: 200,
			want: `{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"as_user1"}}`, authz: "Bearer " + asToken},
		{name: "appservice token in the query goes as the header", target: loginPath + "?access_token=" + asToken,
			body: obj{"type": "m.login.application_service", "identifier": userID("as_user2")}, status: 200,
			want: `{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"as_user2"}}`, authz: "Bearer " + asToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			e.hs.locked(func() { e.hs.loginTokens["hs-login-token"] = bob })
			target := tt.target
			if target == "" {
				target = loginPath
			}
			h := http.Header{"Content-Type": {"application/json"}}
			for k, v := range tt.header {
				h[k] = v
			}
			r := e.raw("POST", target, h, mustJSON(t, tt.body))
			if r.Status != tt.status {
				t.Fatalf("got %d %s; want %d", r.Status, r.Raw, tt.status)
			}
			got := e.hs.lastLogin(t)
			sameJSON(t, "body the homeserver got", got.Body, tt.want)
			if a := got.Header.Get("Authorization"); a != tt.authz {
				t.Errorf("Authorization upstream %q; want %q", a, tt.authz)
			}
			if c := got.Header.Get("Cookie"); c != "" {
				t.Errorf("Cookie forwarded: %q", c)
			}
		})
	}
}

// TestFastLoginRefused: login types and shapes the gateway does not forward.
func TestFastLoginRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		header  http.Header
		body    string
		status  int
		errcode string
	}{
		{"sso type", nil, `{"type":"m.login.sso"}`, 400, "M_UNKNOWN"},
		{"dummy type", nil, `{"type":"m.login.dummy"}`, 400, "M_UNKNOWN"},
		{"recaptcha type", nil, `{"type":"m.login.recaptcha","response":"x"}`, 400, "M_UNKNOWN"},
		{"custom type", nil, `{"type":"org.example.login","user":"bob","password":"bob-pw"}`, 400, "M_UNKNOWN"},
		{"no type", nil, `{"user":"bob","password":"bob-pw"}`, 400, "M_UNKNOWN"},
		{"type not a string", nil, `{"type":1,"user":"bob","password":"bob-pw"}`, 400, "M_BAD_JSON"},
		{"user named two ways", nil, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bob"},"user":"alice","password":"x"}`, 400, "M_INVALID_PARAM"},
		{"identifier without type", nil, `{"type":"m.login.password","identifier":{"user":"bob"},"password":"x"}`, 400, "M_MISSING_PARAM"},
		{"unknown identifier type", nil, `{"type":"m.login.password","identifier":{"type":"org.example.id","user":"bob"},"password":"x"}`, 400, "M_UNKNOWN"},
		{"half a legacy 3PID", nil, `{"type":"m.login.password","medium":"email","password":"x"}`, 400, "M_INVALID_PARAM"},
		{"appservice token given twice", http.Header{"Authorization": {"Bearer " + asToken, "Bearer " + asToken}},
			`{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"as_user"}}`, 401, "M_MISSING_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			h := http.Header{"Content-Type": {"application/json"}}
			for k, v := range tt.header {
				h[k] = v
			}
			r := e.raw("POST", loginPath, h, tt.body)
			expect(t, r, tt.status, tt.errcode)
			if n, _, _, _ := e.hs.counts(); n != 0 {
				t.Fatalf("the homeserver got %d logins; want none", n)
			}
		})
	}
}

// TestFastLoginContinuationNotForwarded: a body continuing a held login
// ("auth" with a session, or a top-level 2FA dict) goes to the 2FA stage and
// never to the homeserver, whatever else it carries.
func TestFastLoginContinuationNotForwarded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    func(e *fast, session string) any
		status  int
		errcode string
	}{
		{"auth with an unknown session", func(e *fast, _ string) any {
			return obj{"auth": obj{"type": "m.login.2fa.totp", "session": "nope", "code": e.code(alice)}}
		}, 400, "M_INVALID_PARAM"},
		{"bare session, unknown", func(*fast, string) any { return obj{"auth": obj{"session": "nope"}} }, 400, "M_INVALID_PARAM"},
		{"top-level TOTP dict, unknown session", func(e *fast, _ string) any {
			return obj{"type": "m.login.2fa.totp", "session": "nope", "code": e.code(alice)}
		}, 400, "M_INVALID_PARAM"},
		{"top-level recovery dict, no session", func(e *fast, _ string) any {
			return obj{"type": "m.login.2fa.recovery", "code": e.recovery[alice][0]}
		}, 400, "M_INVALID_PARAM"},
		{"auth beside a full password login", func(_ *fast, s string) any {
			return with(passwordLogin("bob", bobPW), obj{"auth": obj{"session": s}})
		}, 401, ""},
		{"auth with a password stage", func(_ *fast, s string) any {
			return obj{"auth": with(passwordLogin("alice", alicePW), obj{"session": s})}
		}, 401, "M_FORBIDDEN"},
		{"auth not an object", func(*fast, string) any { return obj{"auth": "x"} }, 400, "M_BAD_JSON"},
		{"auth with a wrong code", func(e *fast, s string) any {
			return obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.wrongCode(alice)}}
		}, 401, "M_FORBIDDEN"},
		{"auth with the right code", func(e *fast, s string) any {
			return obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}}
		}, 200, ""},
		{"top-level TOTP dict with the right code", func(e *fast, s string) any {
			return obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}
		}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			held := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
			wantChallenge(t, held, passwordThen2FA, []string{"m.login.password"})
			r := e.do("POST", loginPath, "", tt.body(e, held.str("session")))
			expect(t, r, tt.status, tt.errcode)
			if n, _, _, _ := e.hs.counts(); n != 1 {
				t.Fatalf("the homeserver got %d logins; want only the first", n)
			}
		})
	}
}

// TestFastLoginDeviceID: device_id reaches the homeserver only for a user the
// gateway knows has no 2FA, named plainly; everything else loses it (a login
// with an existing device ID replaces that device's token at once).
func TestFastLoginDeviceID(t *testing.T) {
	t.Parallel()
	const dev = "EXISTINGDEV"
	tests := []struct {
		name    string
		unknown bool // the gateway has not learnt the server name yet
		header  http.Header
		body    obj
		// identifier is the identifier the homeserver gets (nil: not checked).
		identifier obj
		kept       bool
	}{
		{name: "user without 2FA, localpart", body: passwordLogin("bob", bobPW), identifier: userID(bob), kept: true},
		{name: "user without 2FA, full ID", body: passwordLogin(bob, bobPW), identifier: userID(bob), kept: true},
		{name: "user without 2FA, legacy user field", body: obj{"type": "m.login.password", "user": "bob", "password": bobPW}, identifier: userID(bob), kept: true},
		{name: "user without 2FA, full ID before the server name is known", unknown: true, body: passwordLogin(bob, bobPW), identifier: userID(bob), kept: true},
		{name: "user without 2FA, localpart before the server name is known", unknown: true, body: passwordLogin("bob", bobPW), identifier: userID("bob")},
		{name: "unknown user (no 2FA)", body: passwordLogin("dave", "x"), identifier: userID("@dave:example.org"), kept: true},
		{name: "user with 2FA, localpart", body: passwordLogin("alice", alicePW), identifier: userID(alice)},
		{name: "user with 2FA, full ID", body: passwordLogin(alice, alicePW), identifier: userID(alice)},
		{name: "user with 2FA, upper-case localpart", body: passwordLogin("ALICE", alicePW), identifier: userID("@ALICE:example.org")},
		{name: "user with 2FA, mixed-case full ID", body: passwordLogin("@aLiCe:example.org", alicePW), identifier: userID("@aLiCe:example.org")},
		{name: "trailing space", body: passwordLogin("bob ", bobPW), identifier: userID("bob ")},
		{name: "leading space", body: passwordLogin(" bob", bobPW), identifier: userID(" bob")},
		{name: "non-ASCII localpart", body: passwordLogin("böb", bobPW), identifier: userID("böb")},
		{name: "fullwidth letters", body: passwordLogin("ｂｏｂ", bobPW), identifier: userID("ｂｏｂ")},
		{name: "colon in a localpart", body: passwordLogin("bob:evil", bobPW), identifier: userID("bob:evil")},
		{name: "full ID without a server name", body: passwordLogin("@bob", bobPW), identifier: userID("@bob")},
		{name: "3PID identifier", body: obj{"type": "m.login.password", "password": bobPW,
			"identifier": obj{"type": "m.id.thirdparty", "medium": "email", "address": "bob@example.org"}}},
		{name: "legacy 3PID", body: obj{"type": "m.login.password", "password": bobPW, "medium": "email", "address": "bob@example.org"}},
		{name: "token login", body: obj{"type": "m.login.token", "token": "hs-login-token"}},
		{name: "appservice login without a token", body: obj{"type": "m.login.application_service", "identifier": userID("bob")}},
		{name: "appservice login with a user's token", header: http.Header{"Authorization": {"Bearer " + bobTok}},
			body: obj{"type": "m.login.application_service", "identifier": userID("bob")}},
		{name: "appservice login with an unknown token", header: http.Header{"Authorization": {"Bearer nope"}},
			body: obj{"type": "m.login.application_service", "identifier": userID("bob")}},
		{name: "appservice login with an appservice token", header: http.Header{"Authorization": {"Bearer " + asToken}},
			body: obj{"type": "m.login.application_service", "identifier": userID("alice")}, identifier: userID("alice"), kept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			e.hs.locked(func() { e.hs.loginTokens["hs-login-token"] = bob })
			if !tt.unknown {
				e.learnServerName()
			}
			h := http.Header{"Content-Type": {"application/json"}}
			for k, v := range tt.header {
				h[k] = v
			}
			e.raw("POST", loginPath, h, mustJSON(t, with(tt.body, obj{"device_id": dev})))
			got := e.hs.lastLogin(t)
			var body obj
			mustUnmarshal(t, got.Body, &body)
			if d, ok := body["device_id"]; ok != tt.kept || (ok && d != dev) {
				t.Fatalf("device_id upstream %v (present %v); want kept=%v: %s", d, ok, tt.kept, got.Body)
			}
			if tt.identifier != nil {
				sameJSON(t, "identifier upstream", []byte(mustJSON(t, body["identifier"])), mustJSON(t, tt.identifier))
			}
		})
	}
}

// TestFastLoginFailClosed: a 200 from the homeserver is released only when it
// names a user without 2FA; a 200 the gateway cannot read is 502, a 2FA
// user's is held behind the challenge (or refused and logged out with
// ForbidBarePassword); no access token of a held login reaches the client.
func TestFastLoginFailClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		forbid  bool
		answer  *homeserver.Response // the homeserver's answer (nil: the fake's accounts)
		body    obj
		status  int
		errcode string
		flows   [][]string // the challenge's (401)
		done    string     // the challenge's completed stage
		logout  bool       // the issued token is logged out
	}{
		{name: "200 without user_id", answer: jsonResponse(200, obj{"access_token": "leaked-1", "device_id": "D"}),
			body: passwordLogin("alice", alicePW), status: 502, errcode: "M_UNKNOWN"},
		{name: "200 without access_token", answer: jsonResponse(200, obj{"user_id": alice, "device_id": "D"}),
			body: passwordLogin("alice", alicePW), status: 502, errcode: "M_UNKNOWN"},
		{name: "200 with an empty object", answer: jsonResponse(200, obj{}), body: passwordLogin("bob", bobPW), status: 502, errcode: "M_UNKNOWN"},
		{name: "200 that is not JSON", answer: &homeserver.Response{Status: 200, Body: []byte(`access_token=leaked-1`)},
			body: passwordLogin("bob", bobPW), status: 502, errcode: "M_UNKNOWN"},
		{name: "200 with user_id of the wrong type", answer: jsonResponse(200, obj{"user_id": 7, "access_token": "leaked-1"}),
			body: passwordLogin("bob", bobPW), status: 502, errcode: "M_UNKNOWN"},
		{name: "password login of a 2FA user", body: passwordLogin("alice", alicePW), status: 401, flows: passwordThen2FA, done: "m.login.password"},
		{name: "password login of a 2FA user by a case variant", body: passwordLogin("Alice", alicePW), status: 401, flows: passwordThen2FA, done: "m.login.password"},
		{name: "password login by 3PID answered for a 2FA user", answer: jsonResponse(200, obj{"user_id": alice, "access_token": "leaked-1", "device_id": "D"}),
			body:   obj{"type": "m.login.password", "password": alicePW, "identifier": obj{"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}},
			status: 401, flows: passwordThen2FA, done: "m.login.password"},
		{name: "token login of a 2FA user", body: obj{"type": "m.login.token", "token": "alice-login-token"}, status: 401, flows: tokenThen2FA, done: "m.login.token"},
		{name: "ForbidBarePassword: password login of a 2FA user", forbid: true, body: passwordLogin("alice", alicePW),
			status: 403, errcode: "M_FORBIDDEN", logout: true},
		{name: "ForbidBarePassword: token login of a 2FA user", forbid: true, body: obj{"type": "m.login.token", "token": "alice-login-token"},
			status: 403, errcode: "M_FORBIDDEN", logout: true},
		{name: "ForbidBarePassword: a user without 2FA", forbid: true, body: passwordLogin("bob", bobPW), status: 200},
		{name: "a user without 2FA", body: passwordLogin("bob", bobPW), status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t, func(c *gateway.Config) { c.ForbidBarePassword = tt.forbid })
			e.hs.locked(func() {
				e.hs.loginTokens["alice-login-token"] = alice
				if tt.answer != nil {
					e.hs.loginAnswer = func(obj) *homeserver.Response { return tt.answer }
				}
			})
			r := e.do("POST", loginPath, "", tt.body)
			if tt.flows != nil {
				wantChallenge(t, r, tt.flows, []string{tt.done})
				if p, _ := r.Body["params"].(map[string]any); p["m.login.2fa.totp"] == nil {
					t.Errorf("challenge params %v: want the TOTP stage's", r.Body["params"])
				}
			} else {
				expect(t, r, tt.status, tt.errcode)
			}
			if tt.status != 200 {
				noSecretIn(t, r, "leaked-1", "access_token", "syt_")
			} else if !strings.Contains(string(r.Raw), e.hs.lastIssued(t)) {
				t.Fatalf("a user without 2FA did not get the homeserver's login: %s", r.Raw)
			}
			var want []string
			if tt.logout {
				want = []string{e.hs.lastIssued(t)}
			}
			if got := e.hs.loggedOut(); !slices.Equal(got, want) {
				t.Fatalf("logged out %v; want %v", got, want)
			}
		})
	}
}

// TestFastHeldLogin: the held login is released (exactly the homeserver's
// answer, once) after the second factor; wrong codes keep it, a lockout or
// an expiry logs it out at the homeserver.
func TestFastHeldLogin(t *testing.T) {
	t.Parallel()
	code := func(e *fast, s string) obj {
		return obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}}
	}
	wrong := func(e *fast, s string) obj {
		return obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.wrongCode(alice)}}
	}
	recovery := func(e *fast, s string) obj {
		return obj{"auth": obj{"type": "m.login.2fa.recovery", "session": s, "code": e.recovery[alice][3]}}
	}
	type round struct {
		body    func(e *fast, session string) obj
		advance time.Duration // the clock moves on first
		sweep   bool          // the sweeper runs first
		status  int
		errcode string
	}
	tests := []struct {
		name     string
		rounds   []round
		released bool // the last 200 is the held login
		logout   bool // the held token is logged out
	}{
		{"TOTP code", []round{{body: code, status: 200}}, true, false},
		{"recovery code", []round{{body: recovery, status: 200}}, true, false},
		{"wrong code, then the right one", []round{{body: wrong, status: 401, errcode: "M_FORBIDDEN"}, {body: code, status: 200}}, true, false},
		{"bare session first", []round{{body: func(_ *fast, s string) obj { return obj{"auth": obj{"session": s}} }, status: 401}, {body: code, status: 200}}, true, false},
		{"released once", []round{{body: code, status: 200}, {body: code, status: 400, errcode: "M_INVALID_PARAM"}}, true, false},
		{"lockout logs it out", []round{
			{body: wrong, status: 401, errcode: "M_FORBIDDEN"}, {body: wrong, status: 401, errcode: "M_FORBIDDEN"},
			{body: wrong, status: 401, errcode: "M_FORBIDDEN"}, {body: wrong, status: 401, errcode: "M_FORBIDDEN"},
			{body: wrong, status: 401, errcode: "M_FORBIDDEN"},
			{body: wrong, status: 429, errcode: "M_LIMIT_EXCEEDED"},
			{body: code, status: 400, errcode: "M_INVALID_PARAM"}}, false, true},
		{"expired", []round{{body: code, advance: 6 * time.Minute, status: 400, errcode: "M_INVALID_PARAM"}}, false, false},
		{"expired and swept", []round{{body: code, advance: 6 * time.Minute, sweep: true, status: 400, errcode: "M_INVALID_PARAM"}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			held := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
			wantChallenge(t, held, passwordThen2FA, []string{"m.login.password"})
			token := e.hs.lastIssued(t)
			var last, released resp
			for i, rd := range tt.rounds {
				e.clock.Add(rd.advance)
				if rd.sweep {
					e.gw.Sweep(t.Context())
				}
				last = e.do("POST", loginPath, "", rd.body(e, held.str("session")))
				if last.Status != rd.status || (rd.errcode != "" && last.str("errcode") != rd.errcode) {
					t.Fatalf("round %d: got %d %s; want %d %s", i+1, last.Status, last.Raw, rd.status, rd.errcode)
				}
				if last.Status != 200 {
					noSecretIn(t, last, token)
				} else {
					released = last
				}
			}
			if tt.released {
				sameJSON(t, "released login", released.Raw,
					`{"user_id":"@alice:example.org","access_token":"`+token+`","device_id":"DEV1","home_server":"example.org"}`)
			}
			var want []string
			if tt.logout {
				want = []string{token}
			}
			if got := e.hs.loggedOut(); !slices.Equal(got, want) {
				t.Fatalf("logged out %v; want %v", got, want)
			}
			if n, _, _, _ := e.hs.counts(); n != 1 {
				t.Fatalf("the homeserver got %d logins; want 1", n)
			}
		})
	}
}

// TestFastHeldLoginBound: a user has at most MaxHeld logins waiting for the
// second factor; the next retires the oldest (logged out at the homeserver).
func TestFastHeldLoginBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     int // 0: the default (3)
		logins  int
		retired []int // indexes of the logins retired, oldest first
	}{
		{"three of three", 0, 3, nil},
		{"fourth retires the oldest", 0, 4, []int{0}},
		{"sixth retires the three oldest", 0, 6, []int{0, 1, 2}},
		{"bound of one", 1, 2, []int{0}},
		{"bound of five", 5, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t, func(c *gateway.Config) { c.MaxHeld = tt.max })
			var sessions, tokens []string
			for range tt.logins {
				r := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
				wantChallenge(t, r, passwordThen2FA, []string{"m.login.password"})
				sessions, tokens = append(sessions, r.str("session")), append(tokens, e.hs.lastIssued(t))
				e.clock.Add(time.Second)
			}
			var want []string
			for _, i := range tt.retired {
				want = append(want, tokens[i])
			}
			if got := e.hs.loggedOut(); !slices.Equal(got, want) {
				t.Fatalf("logged out %v; want %v (issued %v)", got, want, tokens)
			}
			// A retired login is gone; the newest completes.
			for _, i := range tt.retired {
				r := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": sessions[i], "code": e.code(alice)}})
				expect(t, r, 400, "M_INVALID_PARAM")
			}
			r := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": sessions[len(sessions)-1], "code": e.code(alice)}})
			expect(t, r, 200, "")
		})
	}
}

// TestFastLoginFlows: GET /login adds "Sign in with 2FA" and m.login.token to
// the homeserver's flows.
func TestFastLoginFlows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hs     string
		status int
		want   string
	}{
		{"password only", `{"flows":[{"type":"m.login.password"}]}`, 200,
			`{"flows":[{"type":"m.login.password"},{"type":"m.login.sso","identity_providers":[{"id":"matrix-2fa","name":"Sign in with 2FA"}]},{"type":"m.login.token"}]}`},
		{"homeserver SSO kept, ours added", `{"flows":[{"type":"m.login.sso","identity_providers":[{"id":"oidc","name":"OIDC"}]},{"type":"m.login.token"}]}`, 200,
			`{"flows":[{"type":"m.login.sso","identity_providers":[{"id":"oidc","name":"OIDC"},{"id":"matrix-2fa","name":"Sign in with 2FA"}]},{"type":"m.login.token"}]}`},
		{"homeserver error passed on", `{"errcode":"M_UNKNOWN","error":"down"}`, 500, `{"errcode":"M_UNKNOWN","error":"down"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			e.hs.answer("GET", loginPath, tt.status, tt.hs)
			r := e.do("GET", loginPath, "", nil)
			if r.Status != tt.status {
				t.Fatalf("got %d %s; want %d", r.Status, r.Raw, tt.status)
			}
			sameJSON(t, "GET /login", r.Raw, tt.want)
		})
	}
}
