package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// TestDifferentialGuardedEndpoints walks every route the gateway serves for a
// homeserver endpoint (guardedEndpoints under each of its prefixes, taken
// from the router itself so a new entry is covered or flagged) and sends each
// body shape a homeserver accepts. For each, either the gateway refuses it,
// or everything the homeserver receives names only the token's owner (full
// user ID, m.id.user, no legacy user/medium/address), carries no query and
// exactly the owner's token. The auth dicts carry the VICTIM's password, so a
// homeserver acting on anyone but the owner would act on the victim: the
// victim must be untouched at the end.
func TestDifferentialGuardedEndpoints(t *testing.T) {
	e, spy := newSecEnv(t)
	victim := e.enrol("victim")
	owner := tesths.RegisterUser(t, e.hs, "owner")
	owner2 := e.enrol("ownertfa")
	victimDevice := e.secNewDevice(victim.User)
	victimKey := masterKey(victim.UserID)
	expect(t, e.direct("POST", "/_matrix/client/v3/keys/device_signing/upload", victim.AccessToken, map[string]any{"master_key": victimKey}), 200, "")

	// Every route under /_matrix/client that is not the gateway's own.
	known := map[string]bool{"/delete_devices": true, "/devices/{deviceId}": true, "/account/password": true,
		"/account/deactivate": true, "/account/3pid/add": true, "/account/3pid": true, "/keys/device_signing/upload": true,
		"/login/get_token": true, "/login/token": true}
	type route struct{ method, tmpl, suffix string }
	var routes []route
	err := e.gate.Router().Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := r.GetPathTemplate()
		if err != nil || !strings.HasPrefix(tmpl, "/_matrix/client/") {
			return nil
		}
		methods, _ := r.GetMethods()
		rest := strings.TrimPrefix(tmpl, "/_matrix/client/")
		for _, p := range []string{"unstable/org.matrix.msc3882", "api/v1", "r0", "v3", "v1", "unstable"} {
			if strings.HasPrefix(rest, p+"/") {
				rest = strings.TrimPrefix(rest, p)
				break
			}
		}
		switch {
		case strings.HasPrefix(rest, "/account/two-factor"), rest == "/login", strings.HasPrefix(rest, "/login/sso/"),
			strings.HasPrefix(rest, "/auth/"), strings.HasSuffix(rest, "/auth_metadata"):
			return nil // the gateway's own
		case !known[rest]:
			t.Errorf("route %v %s is not covered by this differential test: add its body shapes", methods, tmpl)
			return nil
		}
		for _, m := range methods {
			routes = append(routes, route{m, tmpl, rest})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"POST /_matrix/client/unstable/keys/device_signing/upload", "POST /_matrix/client/v3/account/3pid",
		"POST /_matrix/client/r0/account/deactivate", "DELETE /_matrix/client/v3/devices/{deviceId}"} {
		if !slices.ContainsFunc(routes, func(r route) bool { return r.method+" "+r.tmpl == must }) {
			t.Errorf("%s is not guarded", must)
		}
	}

	// fields are each endpoint's body without auth, for user u.
	fields := func(suffix string, u *dendrite.User, device string) map[string]any {
		switch suffix {
		case "/delete_devices":
			return map[string]any{"devices": []string{device}}
		case "/account/password":
			return map[string]any{"new_password": "differential-new-password", "logout_devices": false}
		case "/account/3pid":
			return map[string]any{"three_pid_creds": map[string]any{"sid": "s", "client_secret": "c"}}
		case "/account/3pid/add":
			return map[string]any{"sid": "s", "client_secret": "c"}
		case "/keys/device_signing/upload":
			return map[string]any{"master_key": masterKey(u.UserID)}
		}
		return map[string]any{}
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	vPW := q(victim.Password)
	type expectation int
	const (
		refuse  expectation = iota // a 4xx from the gateway, nothing with auth upstream
		forward                    // upstream, naming only the owner
		either                     // refused, or upstream naming only the owner
	)
	// shapes are auth dicts (raw JSON members, session added by the test).
	shapes := func(o *dendrite.User) []struct {
		name string
		auth string
		want expectation
	} {
		idu := func(u string) string { return `"identifier":{"type":"m.id.user","user":` + q(u) + `}` }
		up := strings.ToUpper(o.Localpart)
		return []struct {
			name string
			auth string
			want expectation
		}{
			{"password, identifier localpart", `"type":"m.login.password",` + idu(o.Localpart) + `,"password":` + vPW, forward},
			{"password, identifier full ID", `"type":"m.login.password",` + idu(o.UserID) + `,"password":` + vPW, forward},
			{"password, no identifier", `"type":"m.login.password","password":` + vPW, forward},
			{"password, legacy user", `"type":"m.login.password","user":` + q(o.Localpart) + `,"password":` + vPW, forward},
			{"password, legacy user full ID", `"type":"m.login.password","user":` + q(o.UserID) + `,"password":` + vPW, forward},
			{"password, identifier and user agree", `"type":"m.login.password",` + idu(o.Localpart) + `,"user":` + q(o.Localpart) + `,"password":` + vPW, forward},
			{"password, identifier localpart and user full ID", `"type":"m.login.password",` + idu(o.Localpart) + `,"user":` + q(o.UserID) + `,"password":` + vPW, either},
			{"password, identifier upper case", `"type":"m.login.password",` + idu(up) + `,"password":` + vPW, either},
			{"password, identifier full ID upper case", `"type":"m.login.password",` + idu("@"+up+":localhost") + `,"password":` + vPW, either},
			{"password, legacy user upper case", `"type":"m.login.password","user":` + q(up) + `,"password":` + vPW, either},
			{"password, identifier extra members", `"type":"m.login.password","identifier":{"type":"m.id.user","user":` + q(o.Localpart) + `,"medium":"email","address":"v@example.org"},"password":` + vPW, either},
			{"password, identifier without type", `"type":"m.login.password","identifier":{"user":` + q(o.Localpart) + `},"user":"victim","password":` + vPW, refuse},
			{"password, identifier owner, user victim", `"type":"m.login.password",` + idu(o.Localpart) + `,"user":"victim","password":` + vPW, refuse},
			{"password, identifier victim", `"type":"m.login.password",` + idu("victim") + `,"password":` + vPW, refuse},
			{"password, identifier VICTIM", `"type":"m.login.password",` + idu("VICTIM") + `,"password":` + vPW, refuse},
			{"password, identifier @victim:localhost", `"type":"m.login.password",` + idu(victim.UserID) + `,"password":` + vPW, refuse},
			{"password, legacy user victim", `"type":"m.login.password","user":"victim","password":` + vPW, refuse},
			{"password, medium/address", `"type":"m.login.password","medium":"email","address":"v@example.org","password":` + vPW, refuse},
			{"password, medium only plus user", `"type":"m.login.password","medium":"email","user":"victim","password":` + vPW, refuse},
			{"password, thirdparty identifier", `"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"v@example.org"},"password":` + vPW, refuse},
			{"password, phone identifier", `"type":"m.login.password","identifier":{"type":"m.id.phone","country":"GB","phone":"1"},"password":` + vPW, refuse},
			{"password, user_id member", `"type":"m.login.password","user_id":"@victim:localhost","password":` + vPW, either},
			{"dummy, naming the owner", `"type":"m.login.dummy",` + idu(o.Localpart), either},
			{"dummy, naming the victim", `"type":"m.login.dummy",` + idu("victim"), refuse},
			{"unknown stage, naming the victim by legacy user", `"type":"org.example.stage","user":"victim"`, refuse},
			{"email stage, naming the victim", `"type":"m.login.email.identity","threepid_creds":{"sid":"s","client_secret":"c"},` + idu("victim"), either},
			{"no type, naming the victim", idu("victim") + `,"password":` + vPW, refuse},
			{"session only", ``, either},
			{"case-variant Type", `"Type":"m.login.password",` + idu("victim") + `,"password":` + vPW, refuse},
			{"Unicode-folded uſer", `"type":"m.login.password","identifier":{"type":"m.id.user","uſer":"victim"},"password":` + vPW, refuse},
			{"duplicate user", `"type":"m.login.password","identifier":{"type":"m.id.user","user":` + q(o.Localpart) + `,"user":"victim"},"password":` + vPW, refuse},
			{"duplicate type", `"type":"m.login.dummy","type":"m.login.password",` + idu("victim") + `,"password":` + vPW, refuse},
		}
	}
	// send builds the body (fields + auth{session?, shape}) and sends it.
	send := func(rt route, u *dendrite.User, path string, f map[string]any, session, shape string, h http.Header) resp {
		b, _ := json.Marshal(f)
		members := shape
		if session != "" {
			if members != "" {
				members = "," + members
			}
			members = `"session":` + q(session) + members
		}
		body := string(b[:len(b)-1])
		if len(f) > 0 {
			body += ","
		}
		body += `"auth":{` + members + `}}`
		return e.secReq(rt.method, path, h, body)
	}
	pathFor := func(rt route, device string) string {
		return strings.Replace(rt.tmpl, "{deviceId}", url.PathEscape(device), 1)
	}
	check := func(t *testing.T, r resp, want expectation, owner *dendrite.User, suffix string) {
		t.Helper()
		var upstream []secSeen
		for _, s := range spy.all() {
			if s.auth() != nil && strings.Contains(s.Path, strings.SplitN(strings.TrimPrefix(suffix, "/"), "/{", 2)[0]) {
				upstream = append(upstream, s)
			}
		}
		switch want {
		case refuse:
			if r.Status < 400 || r.Status >= 500 || len(upstream) > 0 {
				t.Errorf("want a refusal by the gateway; got %d %s with %d auth dicts upstream", r.Status, r.Raw, len(upstream))
			}
		case either:
			if len(upstream) > 0 {
				t.Logf("forwarded (%d): %s", r.Status, upstream[len(upstream)-1].Body)
			} else {
				t.Logf("not forwarded with auth: %d %s", r.Status, r.Raw)
			}
		case forward:
			if len(upstream) == 0 && r.Status != 404 {
				t.Errorf("want it forwarded; got %d %s and nothing upstream", r.Status, r.Raw)
			}
		}
		secCheckForwarded(t, spy, owner.UserID, owner.AccessToken, strings.SplitN(suffix, "/{", 2)[0])
		for _, s := range spy.all() {
			if strings.Contains(strings.ToLower(string(s.Body)), "victim") {
				t.Errorf("the victim's name reached the homeserver: %s %s %s", s.Method, s.Path, s.Body)
			}
		}
	}

	t.Run("owner without 2FA", func(t *testing.T) {
		device := e.secNewDevice(owner).DeviceID
		for _, rt := range routes {
			for _, sh := range shapes(owner) {
				t.Run(rt.method+" "+rt.tmpl+"/"+sh.name, func(t *testing.T) {
					spy.reset()
					r := send(rt, owner, pathFor(rt, device), fields(rt.suffix, owner, device), "", sh.auth, bearer(owner.AccessToken))
					check(t, r, sh.want, owner, rt.suffix)
				})
			}
			t.Run(rt.method+" "+rt.tmpl+"/query and header spellings", func(t *testing.T) {
				for _, v := range []struct {
					query   string
					h       http.Header
					refused bool
				}{
					{"?access_token=" + url.QueryEscape(owner.AccessToken), http.Header{}, false},
					{"?foo=bar&user=victim", bearer(owner.AccessToken), false},
					{"", http.Header{"Authorization": {"bearer " + owner.AccessToken}}, false},
					{"?user_id=" + url.QueryEscape(victim.UserID), bearer(owner.AccessToken), true},
					{"?device_id=" + url.QueryEscape(victimDevice.DeviceID), bearer(owner.AccessToken), true},
					{"?org.matrix.msc3202.device_id=X", bearer(owner.AccessToken), true},
					{"?access_token=" + url.QueryEscape(victim.AccessToken), bearer(owner.AccessToken), true},
					{"", bearer(owner.AccessToken, victim.AccessToken), true},
				} {
					spy.reset()
					r := send(rt, owner, pathFor(rt, device)+v.query, fields(rt.suffix, owner, device), "", shapes(owner)[0].auth, v.h)
					want := either
					if v.refused {
						want = refuse
					}
					check(t, r, want, owner, rt.suffix)
				}
			})
		}
	})

	t.Run("owner with 2FA", func(t *testing.T) {
		device := e.secNewDevice(owner2.User).DeviceID
		for _, rt := range routes {
			path := pathFor(rt, device)
			f := fields(rt.suffix, owner2.User, device)
			for _, sh := range shapes(owner2.User) {
				t.Run(rt.method+" "+rt.tmpl+"/"+sh.name, func(t *testing.T) {
					// Before the 2FA stage: never forwarded.
					spy.reset()
					send(rt, owner2.User, path, f, "", sh.auth, bearer(owner2.AccessToken))
					for _, s := range spy.all() {
						if s.auth() != nil && !strings.HasSuffix(s.Path, "/whoami") {
							t.Errorf("an auth dict went upstream before the 2FA stage: %s %s", s.Path, s.Body)
						}
					}
					// The 2FA stage, then the shape on that session.
					b, _ := json.Marshal(f)
					ch := e.secReq(rt.method, path, bearer(owner2.AccessToken), string(b))
					s := ch.str("session")
					if ch.Status != 401 || s == "" {
						return // the homeserver needs no UIA here (or does not serve it): nothing to forward
					}
					spy.reset()
					r := send(rt, owner2.User, path, f, s, `"type":"m.login.2fa.totp","code":`+q(e.code(owner2)), bearer(owner2.AccessToken))
					if r.Status != 401 {
						// The gateway's own UIA (POST /account/3pid): done, and
						// forwarded without any auth dict.
						check(t, r, either, owner2.User, rt.suffix)
						return
					}
					if !slices.Contains(r.strings("completed"), e2eStageTOTP) {
						t.Fatalf("2FA stage: %d %s", r.Status, r.Raw)
					}
					spy.reset()
					r = send(rt, owner2.User, path, f, s, sh.auth, bearer(owner2.AccessToken))
					check(t, r, sh.want, owner2.User, rt.suffix)
				})
			}
		}
	})

	// Nothing happened to the victim.
	if !e.secTokenAlive(victim.AccessToken, victim.UserID) || !e.secTokenAlive(victimDevice.AccessToken, victim.UserID) {
		t.Error("the victim lost a device or was deactivated")
	}
	if st := e.secLoginStatus("victim", victim.Password); st != 200 {
		t.Errorf("the victim's password no longer works: %d", st)
	}
	if got := e.secMasterKey(victim.AccessToken, victim.UserID); got != keysOf(victimKey) {
		t.Errorf("the victim's master key changed: %s", got)
	}
}
