package gateway_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/gateway"
)

// Fast tests of the gateway's decisions that need no Dendrite: session-kind
// boundaries, error mapping, routing and the gateway's own 2FA endpoints. The
// homeserver is fakeHS (fake_test.go); accounts, sessions and TOTP codes are
// real (SQLite in a temporary directory). Run them alone with
// `go test -run TestFast ./gateway/`.

const totpFallback = "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web"

// kindSession is a session of one kind, made the way clients make it, and a
// check that it still works where it belongs.
type kindSession struct {
	id     string
	intact func(t *testing.T)
}

// Sessions of each kind, for alice unless said otherwise.
var sessionMakers = map[string]func(t *testing.T, e *fast) kindSession{
	"held login": func(t *testing.T, e *fast) kindSession {
		r := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
		wantChallenge(t, r, passwordThen2FA, []string{"m.login.password"})
		s := r.str("session")
		return kindSession{s, func(t *testing.T) {
			expect(t, e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}}), 200, "")
		}}
	},
	"guarded UIA": func(t *testing.T, e *fast) kindSession {
		r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
		wantChallenge(t, r, totpThenPassword, nil)
		s := r.str("session")
		return kindSession{s, func(t *testing.T) {
			r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}, "auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}})
			wantChallenge(t, r, totpThenPassword, []string{"m.login.2fa.totp"})
		}}
	},
	"own-endpoint UIA": func(t *testing.T, e *fast) kindSession {
		const path = "/_matrix/client/v3/account/two-factor/recovery"
		r := e.do("POST", path, aliceTok, obj{})
		wantChallenge(t, r, secondFactorOnly, nil)
		s := r.str("session")
		return kindSession{s, func(t *testing.T) {
			expect(t, e.do("POST", path, aliceTok, obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}}), 200, "")
		}}
	},
	"sign-in page login": func(t *testing.T, e *fast) kindSession {
		c, page := e.pages(), ssoPage(ssoAllowed)
		p := c.ssoCredentials(page, "alice", alicePW)
		pgWant(t, p, 200, `name="code"`)
		return kindSession{p.hidden("session"), func(t *testing.T) {
			ssoToken(t, c.ssoCode(page, p, e.code(alice)), ssoAllowed)
		}}
	},
	"login token": func(t *testing.T, e *fast) kindSession {
		c, page := e.pages(), ssoPage(ssoAllowed)
		tok := ssoToken(t, c.ssoCredentials(page, "bob", bobPW), ssoAllowed)
		h := sha256.Sum256([]byte(tok))
		return kindSession{"login-token:" + base64.RawURLEncoding.EncodeToString(h[:]), func(t *testing.T) {
			r := e.do("POST", loginPath, "", obj{"type": "m.login.token", "token": tok})
			expect(t, r, 200, "")
			if r.str("user_id") != bob {
				t.Fatalf("redeemed %s", r.Raw)
			}
		}}
	},
}

// sessionUses use a session ID somewhere.
var sessionUses = map[string]func(e *fast, s string) resp{
	"/login with TOTP": func(e *fast, s string) resp {
		return e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}})
	},
	"/login bare": func(e *fast, s string) resp {
		return e.do("POST", loginPath, "", obj{"auth": obj{"session": s}})
	},
	"guarded endpoint": func(e *fast, s string) resp {
		return e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}, "auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}})
	},
	"own endpoint": func(e *fast, s string) resp {
		return e.do("POST", "/_matrix/client/v3/account/two-factor/recovery", aliceTok, obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.code(alice)}})
	},
	"fallback page": func(e *fast, s string) resp {
		return e.raw("GET", totpFallback+"?session="+url.QueryEscape(s), http.Header{"Accept": {"application/json"}}, "")
	},
}

// TestFastSessionKinds: a session is usable only where its kind belongs; used
// elsewhere it is refused and stays intact where it belongs.
func TestFastSessionKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, use string
		status    int
		errcode   string
	}{
		{"held login", "guarded endpoint", 400, "M_INVALID_PARAM"},
		{"held login", "own endpoint", 400, "M_INVALID_PARAM"},
		{"held login", "fallback page", 403, "M_FORBIDDEN"},
		{"guarded UIA", "/login with TOTP", 403, "M_FORBIDDEN"},
		{"guarded UIA", "/login bare", 403, "M_FORBIDDEN"},
		{"guarded UIA", "own endpoint", 403, "M_FORBIDDEN"},
		{"own-endpoint UIA", "/login with TOTP", 403, "M_FORBIDDEN"},
		{"own-endpoint UIA", "guarded endpoint", 403, "M_FORBIDDEN"},
		{"sign-in page login", "/login with TOTP", 403, "M_FORBIDDEN"},
		{"sign-in page login", "/login bare", 403, "M_FORBIDDEN"},
		{"sign-in page login", "guarded endpoint", 400, "M_INVALID_PARAM"},
		{"sign-in page login", "fallback page", 400, "M_INVALID_PARAM"},
		{"login token", "/login bare", 400, "M_INVALID_PARAM"},
		{"login token", "/login with TOTP", 400, "M_INVALID_PARAM"},
		{"login token", "guarded endpoint", 400, "M_INVALID_PARAM"},
		{"login token", "fallback page", 400, "M_INVALID_PARAM"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" on "+tt.use, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			s := sessionMakers[tt.kind](t, e)
			logins, _, _, _ := e.hs.counts()
			expect(t, sessionUses[tt.use](e, s.id), tt.status, tt.errcode)
			if n, _, _, _ := e.hs.counts(); n != logins {
				t.Fatalf("the homeserver got a login")
			}
			s.intact(t)
		})
	}
}

// TestFastFallbackHeldLogin: the fallback page refuses a held /login unless
// FallbackCompletesLogin; a UIA session's page is served.
func TestFastFallbackHeldLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		kind     string
		complete bool // FallbackCompletesLogin
		accept   string
		status   int
		contains string
	}{
		{"held login, JSON", "held login", false, "application/json", 403, `"M_FORBIDDEN"`},
		{"held login, HTML", "held login", false, "text/html", 403, "confirmed in the app where the password was typed"},
		{"held login, allowed by configuration", "held login", true, "text/html", 200, `name="code"`},
		{"guarded UIA", "guarded UIA", false, "text/html", 200, `name="code"`},
		{"own-endpoint UIA", "own-endpoint UIA", false, "text/html", 200, `name="code"`},
		{"sign-in page login", "sign-in page login", true, "text/html", 400, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t, func(c *gateway.Config) { c.FallbackCompletesLogin = tt.complete })
			s := sessionMakers[tt.kind](t, e)
			r := e.raw("GET", totpFallback+"?session="+url.QueryEscape(s.id), http.Header{"Accept": {tt.accept}}, "")
			if r.Status != tt.status || !strings.Contains(string(r.Raw), tt.contains) {
				t.Fatalf("got %d %s; want %d with %q", r.Status, r.Raw, tt.status, tt.contains)
			}
			s.intact(t)
		})
	}
}

// TestFastErrorMapping: malformed bodies get the Matrix error of the one
// table and reach nothing upstream, on every kind of route.
func TestFastErrorMapping(t *testing.T) {
	t.Parallel()
	routes := []struct{ name, method, path, token string }{
		{"login", "POST", loginPath, ""},
		{"guarded", "POST", deleteDevices, aliceTok},
		{"own", "POST", "/_matrix/client/v3/account/two-factor/totp/confirm", bobTok},
	}
	deep := strings.Repeat(`{"a":`, 80) + "1" + strings.Repeat("}", 80)
	bodies := []struct {
		name, body string
		status     int
		errcode    string
	}{
		{"truncated JSON", `{"type":`, 400, "M_NOT_JSON"},
		{"not JSON", `type=m.login.password`, 400, "M_NOT_JSON"},
		{"trailing garbage", `{"type":"m.login.password"} x`, 400, "M_NOT_JSON"},
		{"array", `[1,2]`, 400, "M_BAD_JSON"},
		{"string", `"x"`, 400, "M_BAD_JSON"},
		{"null", `null`, 400, "M_BAD_JSON"},
		{"duplicate member", `{"type":"m.login.password","type":"m.login.token"}`, 400, "M_BAD_JSON"},
		{"case-variant member", `{"Type":"m.login.password"}`, 400, "M_BAD_JSON"},
		{"upper-case auth", `{"AUTH":{"type":"m.login.2fa.totp","session":"s"}}`, 400, "M_BAD_JSON"},
		{"duplicate member in auth", `{"auth":{"session":"a","session":"b"}}`, 400, "M_BAD_JSON"},
		{"Unicode-folded member in auth", `{"auth":{"ſession":"a"}}`, 400, "M_BAD_JSON"},
		{"duplicate member in identifier", `{"identifier":{"type":"m.id.user","user":"a","user":"b"}}`, 400, "M_BAD_JSON"},
		{"duplicate member deep down", `{"x":[{"y":1,"y":2}]}`, 400, "M_BAD_JSON"},
		{"nested too deeply", `{"x":` + deep + `}`, 400, "M_BAD_JSON"},
		{"too large", `{"x":"` + strings.Repeat("a", 65<<10) + `"}`, 413, "M_TOO_LARGE"},
	}
	e := newFast(t) // shared: every request is refused before it changes anything
	for _, rt := range routes {
		for _, b := range bodies {
			t.Run(rt.name+"/"+b.name, func(t *testing.T) {
				e.hs.reset()
				h := http.Header{"Content-Type": {"application/json"}}
				if rt.token != "" {
					h.Set("Authorization", "Bearer "+rt.token)
				}
				r := e.raw(rt.method, rt.path, h, b.body)
				expect(t, r, b.status, b.errcode)
				if l, d, _, p := e.hs.counts(); l+d+p != 0 {
					t.Fatalf("reached the homeserver: %d logins, %d requests, %d passed through", l, d, p)
				}
			})
		}
	}
}

// TestFastWrongFieldTypes: a known field of the wrong JSON type is 400
// M_BAD_JSON and nothing goes upstream.
func TestFastWrongFieldTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, token, body string
	}{
		{"login password", "POST", loginPath, "", `{"type":"m.login.password","user":"bob","password":7}`},
		{"login user", "POST", loginPath, "", `{"type":"m.login.password","user":["bob"],"password":"x"}`},
		{"login identifier", "POST", loginPath, "", `{"type":"m.login.password","identifier":"bob","password":"x"}`},
		{"login identifier user", "POST", loginPath, "", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":1},"password":"x"}`},
		{"login device_id", "POST", loginPath, "", `{"type":"m.login.password","user":"bob","password":"x","device_id":1}`},
		{"login display name", "POST", loginPath, "", `{"type":"m.login.password","user":"bob","password":"x","initial_device_display_name":{}}`},
		{"login refresh_token", "POST", loginPath, "", `{"type":"m.login.password","user":"bob","password":"x","refresh_token":"yes"}`},
		{"login token", "POST", loginPath, "", `{"type":"m.login.token","token":5}`},
		{"login auth session", "POST", loginPath, "", `{"auth":{"type":"m.login.2fa.totp","session":5,"code":"1"}}`},
		{"login auth code", "POST", loginPath, "", `{"type":"m.login.2fa.totp","session":"s","code":123456}`},
		{"delete_devices devices", "POST", deleteDevices, aliceTok, `{"devices":"D1"}`},
		{"delete_devices device list", "POST", deleteDevices, aliceTok, `{"devices":[1]}`},
		{"delete_devices auth", "POST", deleteDevices, aliceTok, `{"devices":["D1"],"auth":"x"}`},
		{"delete_devices auth type", "POST", deleteDevices, bobTok, `{"devices":["D1"],"auth":{"type":1}}`},
		{"delete_devices auth password", "POST", deleteDevices, bobTok, `{"devices":["D1"],"auth":{"type":"m.login.password","password":1}}`},
		{"delete_devices TOTP code", "POST", deleteDevices, aliceTok, `{"devices":["D1"],"auth":{"type":"m.login.2fa.totp","code":1}}`},
		{"account/password new_password", "POST", "/_matrix/client/v3/account/password", bobTok, `{"new_password":5}`},
		{"account/password logout_devices", "POST", "/_matrix/client/v3/account/password", aliceTok, `{"new_password":"x","logout_devices":"no"}`},
		{"deactivate erase", "POST", "/_matrix/client/v3/account/deactivate", aliceTok, `{"erase":"true"}`},
		{"3pid creds", "POST", "/_matrix/client/v3/account/3pid", aliceTok, `{"three_pid_creds":{"sid":1,"client_secret":"c"}}`},
		{"3pid creds missing secret", "POST", "/_matrix/client/v3/account/3pid", bobTok, `{"three_pid_creds":{"sid":"s"}}`},
		{"cross-signing key", "POST", "/_matrix/client/v3/keys/device_signing/upload", aliceTok, `{"master_key":"k"}`},
		{"email stage without creds", "POST", deleteDevices, bobTok, `{"devices":["D1"],"auth":{"type":"m.login.email.identity","session":"s"}}`},
		{"confirm code", "POST", "/_matrix/client/v3/account/two-factor/totp/confirm", bobTok, `{"code":123456}`},
		{"our endpoint auth", "POST", "/_matrix/client/v3/account/two-factor/recovery", aliceTok, `{"auth":[]}`},
	}
	e := newFast(t) // shared: every request is refused before it changes anything
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.hs.reset()
			h := http.Header{"Content-Type": {"application/json"}}
			if tt.token != "" {
				h.Set("Authorization", "Bearer "+tt.token)
			}
			expect(t, e.raw(tt.method, tt.path, h, tt.body), 400, "M_BAD_JSON")
			if l, d, _, p := e.hs.counts(); l+d+p != 0 {
				t.Fatalf("reached the homeserver: %d logins, %d requests, %d passed through", l, d, p)
			}
		})
	}
}

// TestFastRouting: guarded names under prefixes or in letter cases the
// gateway does not route are refused; non-canonical spellings are routed as
// the canonical path; admin APIs are refused; everything else reaches the
// homeserver untouched.
func TestFastRouting(t *testing.T) {
	t.Parallel()
	const (
		refused = iota // 404 M_UNRECOGNIZED (or 403), the homeserver asked nothing
		guarded        // delete_devices, guarded: the challenge, canonical path upstream
		proxied        // passed through untouched
		login          // POST /login, handled
	)
	auth := http.Header{"Authorization": {"Bearer " + aliceTok}, "Content-Type": {"application/json"}}
	tests := []struct {
		name           string
		admin          bool
		method, target string
		body           string
		want           int
		status         int
		errcode        string
	}{
		{"unknown version prefix", false, "POST", "/_matrix/client/v4/delete_devices", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"upper-case version prefix", false, "POST", "/_matrix/client/V3/delete_devices", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"upper-case name", false, "POST", "/_matrix/client/v3/DELETE_DEVICES", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"mixed-case login", false, "POST", "/_matrix/client/v3/Login", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"legacy api/v1 delete_devices", false, "POST", "/_matrix/client/api/v1/delete_devices", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"get_token under v3", false, "POST", "/_matrix/client/v3/login/get_token", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"login/token under v1", false, "POST", "/_matrix/client/v1/login/token", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"two-factor under v1", false, "GET", "/_matrix/client/v1/account/two-factor", ``, refused, 404, "M_UNRECOGNIZED"},
		{"3pid under an MSC prefix", false, "POST", "/_matrix/client/unstable/org.matrix.msc9999/account/3pid", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"delete_devices under an MSC prefix", false, "POST", "/_matrix/client/unstable/org.matrix.msc9999/delete_devices", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"devices/{id} under the MSC3882 prefix", false, "DELETE", "/_matrix/client/unstable/org.matrix.msc3882/devices/ALICEDEV", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"lower-case method", false, "post", "/_matrix/client/v3/delete_devices", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"mixed-case method on login", false, "Post", "/_matrix/client/v3/login", `{}`, refused, 404, "M_UNRECOGNIZED"},
		{"double slash", false, "POST", "/_matrix/client/v3//delete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"leading double slash", false, "POST", "//_matrix/client/v3/delete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"trailing slash", false, "POST", "/_matrix/client/v3/delete_devices/", `{"devices":["D1"]}`, guarded, 401, ""},
		{"dot segment", false, "POST", "/_matrix/client/v3/./delete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"dot-dot segment", false, "POST", "/_matrix/client/v3/x/../delete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"percent-encoded letter", false, "POST", "/_matrix/client/v3/%64elete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"percent-encoded slash", false, "POST", "/_matrix/client/v3%2Fdelete_devices", `{"devices":["D1"]}`, guarded, 401, ""},
		{"login with a trailing slash", false, "POST", "/_matrix/client/v3/login/", `{"type":"m.login.password","user":"bob","password":"bob-pw"}`, login, 200, ""},
		{"Synapse admin API", false, "GET", "/_synapse/admin/v1/users/@alice:example.org", ``, refused, 403, "M_FORBIDDEN"},
		{"Dendrite admin API", false, "POST", "/_dendrite/admin/evacuateUser/@alice:example.org", `{}`, refused, 403, "M_FORBIDDEN"},
		{"admin API, double slash", false, "GET", "/_synapse//admin/v1/users", ``, refused, 403, "M_FORBIDDEN"},
		{"admin API, percent-encoded", false, "GET", "/_synapse/%61dmin/v1/users", ``, refused, 403, "M_FORBIDDEN"},
		{"admin API, dot-dot", false, "GET", "/_matrix/../_synapse/admin/v1/users", ``, refused, 403, "M_FORBIDDEN"},
		{"admin API served when configured", true, "GET", "/_synapse/admin/v1/users", ``, proxied, 200, ""},
		{"sync", false, "GET", "/_matrix/client/v3/sync?since=s1&timeout=0&access_token=x", ``, proxied, 200, ""},
		{"room send", false, "PUT", "/_matrix/client/v3/rooms/%21r:example.org/send/m.room.message/t1", `{"body":"hi","msgtype":"m.text","x":[1]}`, proxied, 200, ""},
		{"GET a device", false, "GET", "/_matrix/client/v3/devices/ALICEDEV", ``, proxied, 200, ""},
		{"rename a device", false, "PUT", "/_matrix/client/v3/devices/ALICEDEV", `{"display_name":"x"}`, proxied, 200, ""},
		{"CORS preflight of a guarded path", false, "OPTIONS", "/_matrix/client/v3/delete_devices", ``, proxied, 200, ""},
		{"logout", false, "POST", "/_matrix/client/v3/logout", `{}`, proxied, 200, ""},
		{"versions", false, "GET", "/_matrix/client/versions", ``, proxied, 200, ""},
		{"unguarded path, non-canonical", false, "GET", "/_matrix/client/v3//sync", ``, proxied, 200, ""},
		{"homeserver SSO provider", false, "GET", "/_matrix/client/v3/login/sso/redirect/oidc?redirectUrl=x", ``, proxied, 200, ""},
		{"well-known", false, "GET", "/.well-known/matrix/client", ``, proxied, 200, ""},
		{"media", false, "GET", "/_matrix/media/v3/download/example.org/abc", ``, proxied, 200, ""},
	}
	// One gateway per configuration, shared by its cases (none changes what
	// another decides: sessions started by the guarded ones stay unused).
	envs := map[bool]*fast{}
	for _, admin := range []bool{false, true} {
		envs[admin] = newFast(t, func(c *gateway.Config) { c.AdminAPI = admin })
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := envs[tt.admin]
			e.hs.reset()
			r := e.raw(tt.method, tt.target, auth, tt.body)
			if r.Status != tt.status || r.str("errcode") != tt.errcode {
				t.Fatalf("got %d %s; want %d %q", r.Status, r.Raw, tt.status, tt.errcode)
			}
			logins, dos, _, passed := e.hs.counts()
			switch tt.want {
			case refused:
				var whoamis []string
				e.hs.locked(func() { whoamis = e.hs.whoamis })
				if logins+dos+passed+len(whoamis) != 0 {
					t.Fatalf("reached the homeserver: %d logins, %d requests, %d passed through, whoami %v", logins, dos, passed, whoamis)
				}
			case guarded:
				wantChallenge(t, r, totpThenPassword, nil)
				if got := e.hs.lastDo(t); dos != 1 || passed != 0 || got.Path != deleteDevices {
					t.Fatalf("%d requests upstream, last to %q, %d passed through; want one to %s", dos, got.Path, passed, deleteDevices)
				}
			case login:
				if logins != 1 || passed != 0 {
					t.Fatalf("%d logins, %d passed through; want the login handled", logins, passed)
				}
			case proxied:
				e.hs.mu.Lock()
				defer e.hs.mu.Unlock()
				if logins+dos != 0 || passed != 1 {
					t.Fatalf("%d logins, %d requests, %d passed through; want one passed through", logins, dos, passed)
				}
				got := e.hs.proxied[0]
				if got.Method != tt.method || got.Path != tt.target || string(got.Body) != tt.body ||
					got.Header.Get("Authorization") != "Bearer "+aliceTok || r.Header.Get("X-Fake-Proxy") != "yes" {
					t.Fatalf("passed through %s %s %q (Authorization %q); want %s %s %q untouched",
						got.Method, got.Path, got.Body, got.Header.Get("Authorization"), tt.method, tt.target, tt.body)
				}
			}
		})
	}
}

// TestFastTwoFactorEndpoints: the gateway's own endpoints ask the stages
// their policy names, check the password with the homeserver, and never
// forward anything.
func TestFastTwoFactorEndpoints(t *testing.T) {
	t.Parallel()
	const (
		totp     = "/_matrix/client/v3/account/two-factor/totp"
		recovery = "/_matrix/client/r0/account/two-factor/recovery"
	)
	password := [][]string{{"m.login.password"}}
	pwThen2FA := [][]string{{"m.login.password", "m.login.2fa.totp"}, {"m.login.password", "m.login.2fa.recovery"}}
	tests := []struct {
		name          string
		token, method string
		path          string
		rounds        []round
	}{
		{"enrol without 2FA: password", bobTok, "POST", totp, []round{{status: 401, flows: password},
			{auth: passwordAuth2("bob", bobPW), status: 200}}},
		{"enrol: wrong password", bobTok, "POST", totp, []round{{status: 401, flows: password},
			{auth: passwordAuth2("bob", "nope"), status: 401, errcode: "M_FORBIDDEN", flows: password}}},
		{"enrol: password naming another user", bobTok, "POST", totp, []round{{status: 401},
			{auth: passwordAuth2("alice", alicePW), status: 403, errcode: "M_FORBIDDEN"}}},
		{"enrol: TOTP stage not in the flow", bobTok, "POST", totp, []round{{status: 401},
			{auth: codeAuth("123456"), status: 401, errcode: "M_FORBIDDEN"}}},
		{"re-enrol with 2FA: password then TOTP", aliceTok, "POST", totp, []round{{status: 401, flows: pwThen2FA},
			{auth: passwordAuth2("alice", alicePW), status: 401, completed: []string{"m.login.password"}},
			{auth: totpOf(alice), status: 200}}},
		{"re-enrol with 2FA: TOTP first", aliceTok, "POST", totp, []round{{status: 401},
			{auth: totpOf(alice), status: 401, errcode: "M_FORBIDDEN"}}},
		{"disable without 2FA", bobTok, "DELETE", totp, []round{{status: 400, errcode: "M_INVALID_PARAM"}}},
		{"disable: password then recovery code", aliceTok, "DELETE", totp, []round{{status: 401, flows: pwThen2FA},
			{auth: passwordAuth2("alice", alicePW), status: 401, completed: []string{"m.login.password"}},
			{auth: recoveryOf(alice, 5), status: 200}}},
		{"regenerate: a second factor", aliceTok, "POST", recovery, []round{{status: 401, flows: secondFactorOnly},
			{auth: totpOf(alice), status: 200}}},
		{"regenerate: a used recovery code", aliceTok, "POST", recovery, []round{{status: 401},
			{auth: recoveryOf(alice, 4), status: 200}, {status: 401}, {auth: recoveryOf(alice, 4), status: 401, errcode: "M_FORBIDDEN"}}},
		{"regenerate without 2FA", bobTok, "POST", recovery, []round{{status: 400, errcode: "M_INVALID_PARAM"}}},
		{"no token", "", "POST", recovery, []round{{status: 401, errcode: "M_MISSING_TOKEN"}}},
		{"unknown token", "nope", "GET", "/_matrix/client/v3/account/two-factor", []round{{status: 401, errcode: "M_UNKNOWN_TOKEN"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			runRounds(t, e, tt.token, tt.method, tt.path, obj{}, tt.rounds)
		})
	}
}

// TestFastEnrolment: enrolment through the endpoints turns 2FA on, after
// which logins are held and guarded endpoints ask the second factor.
func TestFastEnrolment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		confirm func(e *fast, secret []byte) obj
		status  int
		errcode string
		enabled bool
	}{
		{"right code", func(e *fast, secret []byte) obj {
			e.secrets[bob] = secret
			return obj{"code": e.code(bob)}
		}, 200, "", true},
		{"right code as token", func(e *fast, secret []byte) obj {
			e.secrets[bob] = secret
			return obj{"token": e.code(bob)}
		}, 200, "", true},
		{"wrong code", func(e *fast, secret []byte) obj {
			e.secrets[bob] = secret
			return obj{"code": e.wrongCode(bob)}
		}, 403, "M_FORBIDDEN", false},
		{"no code", func(*fast, []byte) obj { return obj{} }, 400, "M_MISSING_PARAM", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFast(t)
			const path = "/_matrix/client/v3/account/two-factor/totp"
			ch := e.do("POST", path, bobTok, obj{})
			r := e.do("POST", path, bobTok, obj{"auth": passwordAuth2("bob", bobPW)(e, ch.str("session"))})
			expect(t, r, 200, "")
			secret, err := decodeB32(r.str("secret"))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, e.do("POST", path+"/confirm", bobTok, tt.confirm(e, secret)), tt.status, tt.errcode)
			st := e.do("GET", "/_matrix/client/v3/account/two-factor", bobTok, nil)
			if got := st.Body["totp"].(map[string]any)["enabled"]; got != tt.enabled {
				t.Fatalf("enabled %v; want %v: %s", got, tt.enabled, st.Raw)
			}
			login := e.do("POST", loginPath, "", passwordLogin("bob", bobPW))
			if tt.enabled {
				wantChallenge(t, login, passwordThen2FA, []string{"m.login.password"})
			} else {
				expect(t, login, 200, "")
			}
			var got []string
			e.hs.locked(func() { got = e.hs.passwordChecks })
			if len(got) != 1 || got[0] != bob {
				t.Fatalf("password checks %v; want one for %s", got, bob)
			}
		})
	}
}
