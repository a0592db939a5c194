package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// Red-team regressions of issue 8 ("forward only what was checked"), end to
// end against a real Dendrite: B1 (password alone replaces a device), B2
// (password alone deactivates another user), B3 (a forwarded password stage
// names another user), B4 (deprecated POST /account/3pid), cross-signing
// under the unstable prefix, the held-login bound, "no difference" for users
// without 2FA, and spellings of paths, tokens and member names. A spy between
// the gateway and Dendrite records every request the homeserver received,
// with its query and Authorization headers, so a test proves what never got
// there.

// secSeen is one request that reached the homeserver.
type secSeen struct {
	Method  string
	Path    string // decoded
	RawPath string // as sent
	Query   string
	Authz   []string // Authorization header values
	Body    []byte
}

// obj returns the body as a JSON object (nil when it is not one).
func (s secSeen) obj() map[string]any {
	var m map[string]any
	json.Unmarshal(s.Body, &m)
	return m
}

// auth returns the body's auth dict (nil when none).
func (s secSeen) auth() map[string]any {
	a, _ := s.obj()["auth"].(map[string]any)
	return a
}

// secSpy records what reaches Dendrite.
type secSpy struct {
	mu   sync.Mutex
	seen []secSeen
}

func (s *secSpy) reset() { s.mu.Lock(); s.seen = nil; s.mu.Unlock() }

func (s *secSpy) all() []secSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// to returns the requests whose decoded path ends with suffix.
func (s *secSpy) to(suffix string) []secSeen {
	var out []secSeen
	for _, r := range s.all() {
		if strings.HasSuffix(r.Path, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// newSecEnv is a gateway in front of Dendrite with a recording proxy
// between them; e.direct and e.hs still reach Dendrite itself.
func newSecEnv(t *testing.T, opts ...envOption) (*env, *secSpy) {
	t.Helper()
	hs := tesths.Dendrite(t)
	target, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	spy := &secSpy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		spy.mu.Lock()
		spy.seen = append(spy.seen, secSeen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
			Query: r.URL.RawQuery, Authz: slices.Clone(r.Header.Values("Authorization")), Body: body})
		spy.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e := newEnvWith(t, &dendrite.Server{URL: srv.URL, ServerName: hs.ServerName}, opts...)
	e.hs = hs
	return e, spy
}

// secReq sends a request to the gateway with raw control of the path,
// headers and body (a string is sent as is, anything else as JSON).
func (e *env) secReq(method, pathAndQuery string, header http.Header, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+pathAndQuery, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	defer hr.Body.Close()
	raw, _ := io.ReadAll(hr.Body)
	out := resp{Status: hr.StatusCode, Header: hr.Header, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

func bearer(tokens ...string) http.Header {
	h := http.Header{}
	for _, t := range tokens {
		h.Add("Authorization", "Bearer "+t)
	}
	return h
}

// secTokenAlive reports whether token is a live access token of userID at
// Dendrite itself.
func (e *env) secTokenAlive(token, userID string) bool {
	e.t.Helper()
	r := e.direct("GET", e2eWhoAmIPath, token, nil)
	return r.Status == 200 && r.str("user_id") == userID
}

// secLoginStatus tries a password login directly at Dendrite and logs the
// new device out again; it returns Dendrite's status.
func (e *env) secLoginStatus(localpart, password string) int {
	e.t.Helper()
	r := e.direct("POST", e2eLoginPath, "", map[string]any{"type": e2eStagePass,
		"identifier": map[string]any{"type": "m.id.user", "user": localpart}, "password": password})
	if r.Status == 200 {
		e.direct("POST", "/_matrix/client/v3/logout", r.str("access_token"), map[string]any{})
	}
	return r.Status
}

// secNewDevice logs u in directly at Dendrite: a new device and its token.
func (e *env) secNewDevice(u *dendrite.User) *dendrite.User {
	e.t.Helper()
	d, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// secMasterKey returns the keys of userID's master cross-signing key as
// Dendrite reports it ("" when none).
func (e *env) secMasterKey(token, userID string) string {
	e.t.Helper()
	q := e.direct("POST", "/_matrix/client/v3/keys/query", token, map[string]any{"device_keys": map[string]any{userID: []string{}}})
	masters, _ := q.Body["master_keys"].(map[string]any)
	mk, _ := masters[userID].(map[string]any)
	if mk == nil {
		return ""
	}
	b, _ := json.Marshal(mk["keys"])
	return string(b)
}

func keysOf(k map[string]any) string { b, _ := json.Marshal(k["keys"]); return string(b) }

// secCheckForwarded checks every request the homeserver received on a
// guarded path (suffixes) since the last reset: its auth dict names, if
// anyone, exactly owner (full user ID, m.id.user) and has no legacy user
// fields; the body has no top-level user, medium, address or user_id; no
// query string; one Authorization header, the owner's token.
func secCheckForwarded(t *testing.T, spy *secSpy, ownerID, ownerToken string, suffixes ...string) {
	t.Helper()
	for _, r := range spy.all() {
		if !slices.ContainsFunc(suffixes, func(s string) bool { return strings.HasSuffix(r.Path, s) }) {
			continue
		}
		body := r.obj()
		for _, k := range []string{"user", "medium", "address", "user_id", "identifier"} {
			if _, ok := body[k]; ok {
				t.Errorf("forwarded %s %s has top-level %q: %s", r.Method, r.Path, k, r.Body)
			}
		}
		if a := r.auth(); a != nil {
			for _, k := range []string{"user", "medium", "address", "user_id"} {
				if _, ok := a[k]; ok {
					t.Errorf("forwarded %s %s has auth.%s: %s", r.Method, r.Path, k, r.Body)
				}
			}
			if id, ok := a["identifier"]; ok {
				m, _ := id.(map[string]any)
				if m["type"] != "m.id.user" || m["user"] != ownerID || len(m) != 2 {
					t.Errorf("forwarded %s %s names %v, not the token owner %s: %s", r.Method, r.Path, id, ownerID, r.Body)
				}
			}
		}
		if r.Query != "" {
			t.Errorf("forwarded %s %s with a query %q", r.Method, r.Path, r.Query)
		}
		if len(r.Authz) != 1 || r.Authz[0] != "Bearer "+ownerToken {
			t.Errorf("forwarded %s %s with Authorization %q; want only the owner's token", r.Method, r.Path, r.Authz)
		}
	}
}

// secStatusIn fails unless r's status is one of want (want empty: any 4xx).
func secStatusIn(t *testing.T, r resp, want ...int) {
	t.Helper()
	if len(want) == 0 {
		if r.Status < 400 || r.Status >= 500 {
			t.Errorf("got %d %s; want a 4xx refusal", r.Status, r.Raw)
		}
		return
	}
	if !slices.Contains(want, r.Status) {
		t.Errorf("got %d %s; want one of %v", r.Status, r.Raw, want)
	}
}

// ---------------------------------------------------------------- B1

// TestSecurityB1LoginNeverReplacesDevice: a password login naming the 2FA
// victim, in every spelling, never reaches Dendrite with the victim's
// device_id, so the device and its token survive; also after the held logins
// expire and are logged out.
func TestSecurityB1LoginNeverReplacesDevice(t *testing.T) {
	e, spy := newSecEnv(t)
	victim := e.enrol("victim")
	nobody := tesths.RegisterUser(t, e.hs, "nobody")
	e.secLoginStatus(nobody.Localpart, nobody.Password) // Dendrite warm
	// The gateway learns the server name from a login it sees.
	expect(t, e.gw("POST", e2eLoginPath, "", e2ePasswordLogin(nobody)), 200, "")
	vid := victim.UserID
	pw := victim.Password
	id := func(user string) map[string]any { return map[string]any{"type": "m.id.user", "user": user} }
	login := func(kv ...any) map[string]any {
		m := map[string]any{"type": e2eStagePass, "password": pw}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	type tc struct {
		name   string
		token  string
		body   func(d string) any
		status []int // empty: any 4xx
	}
	cases := []tc{
		{"identifier without type, top-level user=victim", "", func(d string) any {
			return login("identifier", map[string]any{"user": "@nobody:localhost"}, "user", "victim", "device_id", d)
		}, []int{400}},
		{"identifier without type naming the victim", "", func(d string) any {
			return login("identifier", map[string]any{"user": "victim"}, "device_id", d)
		}, []int{400}},
		{"identifier m.id.user @nobody, top-level user=victim", "", func(d string) any {
			return login("identifier", id("@nobody:localhost"), "user", "victim", "device_id", d)
		}, []int{400}},
		{"identifier m.id.user nobody, top-level user=victim", "", func(d string) any {
			return login("identifier", id("nobody"), "user", "victim", "device_id", d)
		}, []int{400}},
		{"top-level user=victim only", "", func(d string) any { return login("user", "victim", "device_id", d) }, []int{401}},
		{"top-level user=full ID only", "", func(d string) any { return login("user", vid, "device_id", d) }, []int{401}},
		{"identifier VICTIM", "", func(d string) any { return login("identifier", id("VICTIM"), "device_id", d) }, []int{401}},
		{"identifier ViCtIm", "", func(d string) any { return login("identifier", id("ViCtIm"), "device_id", d) }, []int{401}},
		{"identifier full ID", "", func(d string) any { return login("identifier", id(vid), "device_id", d) }, []int{401}},
		{"identifier @VICTIM:localhost", "", func(d string) any { return login("identifier", id("@VICTIM:localhost"), "device_id", d) }, []int{401}},
		{"identifier @Victim:localhost", "", func(d string) any { return login("identifier", id("@Victim:localhost"), "device_id", d) }, []int{401}},
		{"identifier and user agree (victim)", "", func(d string) any {
			return login("identifier", id("victim"), "user", "victim", "device_id", d)
		}, []int{401}},
		{"identifier victim, user VICTIM", "", func(d string) any {
			return login("identifier", id("victim"), "user", "VICTIM", "device_id", d)
		}, []int{400}},
		{"medium/address legacy", "", func(d string) any {
			return login("medium", "email", "address", "victim@example.org", "device_id", d)
		}, nil},
		{"medium/address legacy plus user=victim", "", func(d string) any {
			return login("medium", "email", "address", "victim@example.org", "user", "victim", "device_id", d)
		}, []int{400}},
		{"identifier m.id.thirdparty", "", func(d string) any {
			return login("identifier", map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "victim@example.org"}, "device_id", d)
		}, nil},
		{"identifier m.id.thirdparty plus user=victim", "", func(d string) any {
			return login("identifier", map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "victim@example.org"}, "user", "victim", "device_id", d)
		}, []int{400}},
		{"identifier m.id.phone plus user=victim", "", func(d string) any {
			return login("identifier", map[string]any{"type": "m.id.phone", "country": "GB", "phone": "123"}, "user", "victim", "device_id", d)
		}, []int{400}},
		{"identifier of unknown type plus user=victim", "", func(d string) any {
			return login("identifier", map[string]any{"type": "m.id.USER", "user": "nobody"}, "user", "victim", "device_id", d)
		}, []int{400}},
		{"victim with a trailing space", "", func(d string) any { return login("identifier", id("victim "), "device_id", d) }, nil},
		{"victim with a leading tab", "", func(d string) any { return login("identifier", id("\tvictim"), "device_id", d) }, nil},
		{"full ID with a trailing newline in the localpart", "", func(d string) any { return login("identifier", id("@victim\n:localhost"), "device_id", d) }, nil},
		{"non-ASCII look-alike of the victim (Kelvin sign K)", "", func(d string) any {
			return login("identifier", id("victim\u212a"), "device_id", d)
		}, nil},
		{"appservice type without a token", "", func(d string) any {
			return map[string]any{"type": "m.login.application_service", "identifier": id("victim"), "device_id": d}
		}, nil},
		{"appservice type with a bogus token", "not-an-as-token", func(d string) any {
			return map[string]any{"type": "m.login.application_service", "identifier": id("victim"), "device_id": d}
		}, nil},
		{"appservice type with a user's own token", nobody.AccessToken, func(d string) any {
			return map[string]any{"type": "m.login.application_service", "identifier": id("victim"), "device_id": d}
		}, nil},
		{"token type with a bogus token", "", func(d string) any {
			return map[string]any{"type": "m.login.token", "token": "bogus", "device_id": d, "user": "victim"}
		}, nil},
		{"case-variant device_id key", "", func(d string) any {
			return `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"victim"},"password":"` + pw + `","Device_id":"` + d + `"}`
		}, []int{400}},
		{"duplicate user keys (nobody, victim)", "", func(d string) any {
			return `{"type":"m.login.password","user":"nobody","user":"victim","password":"` + pw + `","device_id":"` + d + `"}`
		}, []int{400}},
		{"Unicode-folded key uſer", "", func(d string) any {
			return `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nobody"},"uſer":"victim","password":"` + pw + `","device_id":"` + d + `"}`
		}, []int{400}},
		{"Unicode-folded identifier key uſer", "", func(d string) any {
			return `{"type":"m.login.password","identifier":{"type":"m.id.user","uſer":"victim"},"password":"` + pw + `","device_id":"` + d + `"}`
		}, []int{400}},
	}
	var devices []*dendrite.User
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.secNewDevice(victim.User)
			devices = append(devices, d)
			spy.reset()
			h := http.Header{}
			if c.token != "" {
				h = bearer(c.token)
			}
			r := e.secReq("POST", e2eLoginPath, h, c.body(d.DeviceID))
			if r.str("access_token") != "" {
				t.Fatalf("a login without the second factor released a token: %d %s", r.Status, r.Raw)
			}
			secStatusIn(t, r, c.status...)
			for _, s := range spy.to("/login") {
				if bytes.Contains(s.Body, []byte(d.DeviceID)) {
					t.Errorf("the homeserver received the victim's device_id: %s", s.Body)
				}
				for _, k := range []string{"user", "medium", "address"} {
					if _, ok := s.obj()[k]; ok {
						t.Errorf("forwarded login has top-level %q: %s", k, s.Body)
					}
				}
			}
			if !e.secTokenAlive(d.AccessToken, vid) || !e.e2eHasDevice(victim.AccessToken, d.DeviceID) {
				t.Fatalf("device %s replaced or signed out by a password-only login (answer %d %s)", d.DeviceID, r.Status, r.Raw)
			}
		})
	}
	t.Run("user without 2FA logs in with the victim's device ID", func(t *testing.T) {
		d := e.secNewDevice(victim.User)
		devices = append(devices, d)
		r := e.gw("POST", e2eLoginPath, "", map[string]any{"type": e2eStagePass, "identifier": id("nobody"),
			"password": nobody.Password, "device_id": d.DeviceID})
		expect(t, r, 200, "")
		if r.str("user_id") != nobody.UserID {
			t.Fatalf("logged in as %s", r.str("user_id"))
		}
		if !e.secTokenAlive(d.AccessToken, vid) {
			t.Fatal("the victim's device token died when another user took its device ID")
		}
	})
	// Every held login expires; the sweeper logs them out upstream. The
	// victim's own devices must outlive that.
	e.clock.Add(time.Hour)
	e.gate.Sweep(context.Background())
	for _, d := range append(devices, victim.User) {
		if !e.secTokenAlive(d.AccessToken, vid) {
			t.Errorf("device %s signed out when the held logins expired", d.DeviceID)
		}
	}
}

// TestSecurityHeldLoginBound: five password logins of a 2FA user leave at
// most three extra devices at the homeserver (the oldest held logins retired
// and logged out), the user's existing devices untouched, and the newest
// held login still completes.
func TestSecurityHeldLoginBound(t *testing.T) {
	e, _ := newSecEnv(t)
	u := e.enrol("flooded")
	other := e.secNewDevice(u.User)
	before := e.deviceIDs(u.AccessToken)
	var sessions []string
	for range 5 {
		// The clock stands still: "oldest" is by creation order, even
		// within one millisecond (a burst of logins).
		sessions = append(sessions, e.e2eHeldLogin(u))
	}
	after := e.deviceIDs(u.AccessToken)
	for _, d := range before {
		if !slices.Contains(after, d) {
			t.Errorf("existing device %s gone after password logins", d)
		}
	}
	if extra := len(after) - len(before); extra > 3 {
		t.Errorf("%d extra devices after 5 held logins; want at most 3 (%v)", extra, after)
	}
	for _, tok := range []string{u.AccessToken, other.AccessToken} {
		if !e.secTokenAlive(tok, u.UserID) {
			t.Errorf("an existing token died after password logins")
		}
	}
	// The oldest held login was retired; the newest completes.
	r := e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, sessions[0], e.code(u))})
	if r.Status == 200 {
		t.Fatalf("the oldest held login was not retired: %s", r.Raw)
	}
	r = e.gw("POST", e2eLoginPath, "", map[string]any{"auth": e2eAuth(e2eStageTOTP, sessions[4], e.code(u))})
	e.e2eCheckLoggedIn(r, u)
}

// ---------------------------------------------------------------- B2

// secAuthShapes are auth dicts naming victim (with victim's password) the
// way Dendrite or Synapse would read them; each must be refused.
func secAuthShapes(victim, attacker *dendrite.User) []struct {
	name   string
	auth   string // raw JSON of the auth dict
	status []int
} {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	pw := q(victim.Password)
	id := func(u string) string { return `{"type":"m.id.user","user":` + q(u) + `}` }
	upper := strings.ToUpper(victim.Localpart)
	return []struct {
		name   string
		auth   string
		status []int
	}{
		{"identifier localpart", `{"type":"m.login.password","identifier":` + id(victim.Localpart) + `,"password":` + pw + `}`, []int{403}},
		{"identifier full ID", `{"type":"m.login.password","identifier":` + id(victim.UserID) + `,"password":` + pw + `}`, []int{403}},
		{"identifier upper case", `{"type":"m.login.password","identifier":` + id(upper) + `,"password":` + pw + `}`, []int{403}},
		{"identifier full ID upper-case localpart", `{"type":"m.login.password","identifier":` + id("@"+upper+":localhost") + `,"password":` + pw + `}`, []int{403}},
		{"legacy user", `{"type":"m.login.password","user":` + q(victim.Localpart) + `,"password":` + pw + `}`, []int{403}},
		{"legacy user full ID", `{"type":"m.login.password","user":` + q(victim.UserID) + `,"password":` + pw + `}`, []int{403}},
		{"identifier without type plus user", `{"type":"m.login.password","identifier":{"user":` + q(attacker.Localpart) + `},"user":` + q(victim.Localpart) + `,"password":` + pw + `}`, []int{400, 403}},
		{"identifier without type", `{"type":"m.login.password","identifier":{"user":` + q(victim.Localpart) + `},"password":` + pw + `}`, []int{400, 403}},
		{"identifier attacker, user victim", `{"type":"m.login.password","identifier":` + id(attacker.Localpart) + `,"user":` + q(victim.Localpart) + `,"password":` + pw + `}`, []int{400, 403}},
		{"identifier thirdparty plus user", `{"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"v@example.org"},"user":` + q(victim.Localpart) + `,"password":` + pw + `}`, []int{400, 403}},
		{"identifier of unknown type plus user", `{"type":"m.login.password","identifier":{"type":"m.id.USER","user":` + q(attacker.Localpart) + `},"user":` + q(victim.Localpart) + `,"password":` + pw + `}`, []int{400, 403}},
		{"medium/address", `{"type":"m.login.password","medium":"email","address":"v@example.org","password":` + pw + `}`, []int{400, 403}},
		{"dummy stage naming the victim", `{"type":"m.login.dummy","identifier":` + id(victim.Localpart) + `}`, []int{403}},
		{"no type, identifier naming the victim", `{"identifier":` + id(victim.Localpart) + `,"password":` + pw + `}`, []int{403}},
		{"trailing space", `{"type":"m.login.password","identifier":` + id(victim.Localpart+" ") + `,"password":` + pw + `}`, []int{403}},
		{"Kelvin-sign look-alike (Dendrite lower-cases it to the victim)", `{"type":"m.login.password","identifier":` + id(strings.Replace(victim.Localpart, "k", "\u212a", 1)) + `,"password":` + pw + `}`, []int{403}},
		{"case-variant identifier key", `{"type":"m.login.password","Identifier":` + id(victim.Localpart) + `,"password":` + pw + `}`, []int{400}},
		{"Unicode-folded user key", `{"type":"m.login.password","identifier":{"type":"m.id.user","uſer":` + q(victim.Localpart) + `},"password":` + pw + `}`, []int{400}},
		{"duplicate user keys", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":` + q(attacker.Localpart) + `,"user":` + q(victim.Localpart) + `},"password":` + pw + `}`, []int{400}},
		{"duplicate identifier keys", `{"type":"m.login.password","identifier":` + id(attacker.Localpart) + `,"identifier":` + id(victim.Localpart) + `,"password":` + pw + `}`, []int{400}},
	}
}

// TestSecurityB2DeactivateOtherUser: an attacker's own token (without 2FA,
// or with 2FA and their own second factor done) and the victim's password
// never deactivate the victim.
func TestSecurityB2DeactivateOtherUser(t *testing.T) {
	e, spy := newSecEnv(t)
	victim := e.enrol("kvictim") // a "k" for the Kelvin-sign look-alike
	plain := tesths.RegisterUser(t, e.hs, "mallory")
	tfa := e.enrol("trudy")
	const path = "/_matrix/client/v3/account/deactivate"
	for _, att := range []struct {
		name string
		u    *enrolled
	}{{"attacker without 2FA", &enrolled{User: plain}}, {"attacker with 2FA", tfa}} {
		for _, sh := range secAuthShapes(victim.User, att.u.User) {
			t.Run(att.name+"/"+sh.name, func(t *testing.T) {
				auth := sh.auth
				if att.u.secret != nil {
					// The attacker's own 2FA stage first, on their own session.
					ch := e.gw("POST", path, att.u.AccessToken, map[string]any{})
					s := ch.str("session")
					if ch.Status != 401 || s == "" {
						t.Fatalf("challenge: %d %s", ch.Status, ch.Raw)
					}
					r := e.gw("POST", path, att.u.AccessToken, map[string]any{"auth": e2eAuth(e2eStageTOTP, s, e.code(att.u))})
					if r.Status != 401 || !slices.Contains(r.strings("completed"), e2eStageTOTP) {
						t.Fatalf("the attacker's 2FA stage: %d %s", r.Status, r.Raw)
					}
					sq, _ := json.Marshal(s)
					auth = strings.Replace(auth, "{", `{"session":`+string(sq)+`,`, 1)
				}
				spy.reset()
				r := e.secReq("POST", path, bearer(att.u.AccessToken), `{"auth":`+auth+`}`)
				secStatusIn(t, r, sh.status...)
				for _, s := range spy.to("/account/deactivate") {
					if bytes.Contains(bytes.ToLower(s.Body), []byte("victim")) {
						t.Errorf("a deactivation naming the victim reached the homeserver: %s", s.Body)
					}
				}
				secCheckForwarded(t, spy, att.u.UserID, att.u.AccessToken, "/account/deactivate")
				if !e.secTokenAlive(victim.AccessToken, victim.UserID) {
					t.Fatalf("the victim was deactivated (answer %d %s)", r.Status, r.Raw)
				}
			})
		}
	}
	t.Run("other spellings of the request", func(t *testing.T) {
		pwAuth := map[string]any{"auth": map[string]any{"type": e2eStagePass, "identifier": map[string]any{"type": "m.id.user", "user": victim.Localpart}, "password": victim.Password}}
		for _, v := range []struct {
			name, method, path string
			header             http.Header
		}{
			{"r0", "POST", "/_matrix/client/r0/account/deactivate", bearer(plain.AccessToken)},
			{"unstable", "POST", "/_matrix/client/unstable/account/deactivate", bearer(plain.AccessToken)},
			{"trailing slash", "POST", path + "/", bearer(plain.AccessToken)},
			{"double slash", "POST", "/_matrix/client/v3/account//deactivate", bearer(plain.AccessToken)},
			{"double slash before client", "POST", "/_matrix//client/v3/account/deactivate", bearer(plain.AccessToken)},
			{"leading double slash", "POST", "//_matrix/client/v3/account/deactivate", bearer(plain.AccessToken)},
			{"percent-encoded letter", "POST", "/_matrix/client/v3/account/deactivat%65", bearer(plain.AccessToken)},
			{"percent-encoded slash", "POST", "/_matrix/client/v3/account%2Fdeactivate", bearer(plain.AccessToken)},
			{"dot segment", "POST", "/_matrix/client/v3/devices/../account/deactivate", bearer(plain.AccessToken)},
			{"encoded dot segment", "POST", "/_matrix/client/v3/devices/%2E%2E/account/deactivate", bearer(plain.AccessToken)},
			{"upper-case version", "POST", "/_matrix/client/V3/account/deactivate", bearer(plain.AccessToken)},
			{"api/v1", "POST", "/_matrix/client/api/v1/account/deactivate", bearer(plain.AccessToken)},
			{"lower-case method", "post", path, bearer(plain.AccessToken)},
			{"query token plus header", "POST", path + "?access_token=" + url.QueryEscape(victim.AccessToken), bearer(plain.AccessToken)},
			{"two Authorization headers", "POST", path, bearer(plain.AccessToken, victim.AccessToken)},
			{"user_id assertion", "POST", path + "?user_id=" + url.QueryEscape(victim.UserID), bearer(plain.AccessToken)},
		} {
			t.Run(v.name, func(t *testing.T) {
				spy.reset()
				r := e.secReq(v.method, v.path, v.header, pwAuth)
				if r.Status/100 == 2 {
					t.Errorf("%s %s: %d %s", v.method, v.path, r.Status, r.Raw)
				}
				for _, s := range spy.all() {
					if s.auth() != nil && bytes.Contains(s.Body, []byte(victim.Localpart)) {
						t.Errorf("an auth dict naming the victim reached the homeserver as %s %s (answer %d)", s.Method, s.RawPath, r.Status)
					}
				}
				if !e.secTokenAlive(victim.AccessToken, victim.UserID) {
					t.Fatalf("the victim was deactivated (answer %d %s)", r.Status, r.Raw)
				}
			})
		}
	})
	if st := e.secLoginStatus(victim.Localpart, victim.Password); st != 200 {
		t.Fatalf("the victim cannot log in any more: %d", st)
	}
}

// ---------------------------------------------------------------- B3

// TestSecurityB3PasswordStageNamesAnotherUser: with the victim's token and
// the victim's second factor done, a password stage naming the attacker
// (with the attacker's password) is refused on /account/password and on
// /keys/device_signing/upload, in every spelling and stage order.
func TestSecurityB3PasswordStageNamesAnotherUser(t *testing.T) {
	e, spy := newSecEnv(t)
	victim := e.enrol("victim")
	eve := tesths.RegisterUser(t, e.hs, "eve")
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	ePW := q(eve.Password)
	shapes := []struct{ name, auth string }{
		{"identifier localpart", `"type":"m.login.password","identifier":{"type":"m.id.user","user":"eve"},"password":` + ePW},
		{"identifier full ID", `"type":"m.login.password","identifier":{"type":"m.id.user","user":` + q(eve.UserID) + `},"password":` + ePW},
		{"identifier upper case", `"type":"m.login.password","identifier":{"type":"m.id.user","user":"EVE"},"password":` + ePW},
		{"legacy user", `"type":"m.login.password","user":"eve","password":` + ePW},
		{"identifier and user both eve", `"type":"m.login.password","identifier":{"type":"m.id.user","user":"eve"},"user":"eve","password":` + ePW},
		{"identifier victim, user eve", `"type":"m.login.password","identifier":{"type":"m.id.user","user":"victim"},"user":"eve","password":` + ePW},
		{"identifier without type, user eve", `"type":"m.login.password","identifier":{"user":"victim"},"user":"eve","password":` + ePW},
	}
	first := masterKey(victim.UserID)
	expect(t, e.gw("POST", "/_matrix/client/v3/keys/device_signing/upload", victim.AccessToken, map[string]any{"master_key": first}), 200, "")
	newPW := "attacker-chosen-password-1"
	for _, ep := range []struct {
		name, path string
		body       map[string]any
	}{
		{"account/password", "/_matrix/client/v3/account/password", map[string]any{"new_password": newPW, "logout_devices": false}},
		{"keys/device_signing/upload", "/_matrix/client/v3/keys/device_signing/upload", map[string]any{"master_key": masterKey(victim.UserID)}},
		{"keys/device_signing/upload (unstable)", "/_matrix/client/unstable/keys/device_signing/upload", map[string]any{"master_key": masterKey(victim.UserID)}},
	} {
		bodyJSON, _ := json.Marshal(ep.body)
		withAuth := func(auth string) string { return string(bodyJSON[:len(bodyJSON)-1]) + `,"auth":{` + auth + `}}` }
		// session returns a session of the victim's with the 2FA stage done
		// (recovery: with a recovery code instead of TOTP).
		session := func(t *testing.T, recovery bool) string {
			ch := e.gw("POST", ep.path, victim.AccessToken, ep.body)
			s := e.e2eCheckChallenge(ch, e2eProtectedFlows, nil)
			a := e2eAuth(e2eStageTOTP, s, e.code(victim))
			if recovery {
				a = e2eAuth(e2eStageRecov, s, victim.recovery[0])
				victim.recovery = victim.recovery[1:]
			}
			stage := a["type"].(string)
			r := e.gw("POST", ep.path, victim.AccessToken, e2eWith(ep.body, a))
			e.e2eCheckChallenge(r, e2eProtectedFlows, []string{stage})
			return s
		}
		check := func(t *testing.T, r resp, want ...int) {
			t.Helper()
			secStatusIn(t, r, want...)
			for _, s := range spy.to(strings.TrimPrefix(ep.path, "/_matrix/client/unstable")) {
				if a := s.auth(); a != nil && bytes.Contains(s.Body, []byte("eve")) {
					t.Errorf("a password stage naming eve reached the homeserver: %s", s.Body)
				}
			}
			secCheckForwarded(t, spy, victim.UserID, victim.AccessToken, "/account/password", "/keys/device_signing/upload")
			if st := e.secLoginStatus("victim", newPW); st == 200 {
				t.Fatal("the victim's password was changed with the attacker's password")
			}
			if got := e.secMasterKey(victim.AccessToken, victim.UserID); got != keysOf(first) {
				t.Fatalf("the victim's master key was replaced with the attacker's password: %s", got)
			}
		}
		for _, sh := range shapes {
			t.Run(ep.name+"/after TOTP/"+sh.name, func(t *testing.T) {
				s := session(t, false)
				spy.reset()
				check(t, e.secReq("POST", ep.path, bearer(victim.AccessToken), withAuth(`"session":`+q(s)+`,`+sh.auth)), 400, 403)
			})
		}
		t.Run(ep.name+"/after a recovery code/identifier localpart", func(t *testing.T) {
			s := session(t, true)
			spy.reset()
			check(t, e.secReq("POST", ep.path, bearer(victim.AccessToken), withAuth(`"session":`+q(s)+`,`+shapes[0].auth)), 403)
		})
		t.Run(ep.name+"/password stage before the 2FA stage", func(t *testing.T) {
			spy.reset()
			check(t, e.secReq("POST", ep.path, bearer(victim.AccessToken), withAuth(shapes[0].auth)), 403)
		})
		t.Run(ep.name+"/without session", func(t *testing.T) {
			spy.reset()
			check(t, e.secReq("POST", ep.path, bearer(victim.AccessToken), withAuth(shapes[0].auth)), 403)
		})
	}
	t.Run("account/password without a token naming the victim", func(t *testing.T) {
		spy.reset()
		r := e.secReq("POST", "/_matrix/client/v3/account/password", nil, map[string]any{"new_password": newPW,
			"auth": map[string]any{"type": e2eStagePass, "identifier": map[string]any{"type": "m.id.user", "user": "victim"}, "password": victim.Password}})
		secStatusIn(t, r, 403)
		if n := len(spy.to("/account/password")); n > 0 {
			t.Errorf("forwarded %d times", n)
		}
	})
	// Control: the victim's own password on a session with the 2FA stage
	// done goes through (so the refusals above were not for another reason).
	t.Run("control: the victim's own password", func(t *testing.T) {
		p := "/_matrix/client/v3/account/password"
		body := map[string]any{"new_password": "victims-own-new-password", "logout_devices": false}
		ch := e.gw("POST", p, victim.AccessToken, body)
		s := e.e2eCheckChallenge(ch, e2eProtectedFlows, nil)
		e.e2eCheckChallenge(e.gw("POST", p, victim.AccessToken, e2eWith(body, e2eAuth(e2eStageTOTP, s, e.code(victim)))), e2eProtectedFlows, []string{e2eStageTOTP})
		spy.reset()
		expect(t, e.gw("POST", p, victim.AccessToken, e2eWith(body, passwordAuth(victim.User, s))), 200, "")
		secCheckForwarded(t, spy, victim.UserID, victim.AccessToken, "/account/password")
		if st := e.secLoginStatus("victim", "victims-own-new-password"); st != 200 {
			t.Fatalf("the password change did not take: %d", st)
		}
	})
}

// ---------------------------------------------------------------- B4

// TestSecurityB4DeprecatedAdd3PID: POST /account/3pid with a 2FA user's
// token asks for the 2FA stage and is never forwarded before it, in every
// spelling; after it, the request goes upstream without any auth dict.
func TestSecurityB4DeprecatedAdd3PID(t *testing.T) {
	e, spy := newSecEnv(t)
	u := e.enrol("victim")
	body := map[string]any{"three_pid_creds": map[string]any{"sid": "sid1", "client_secret": "secret1"}, "bind": false}
	own := [][]string{{e2eStageTOTP}, {e2eStageRecov}}
	for _, p := range []string{
		"/_matrix/client/r0/account/3pid",
		"/_matrix/client/v3/account/3pid",
		"/_matrix/client/unstable/account/3pid",
		"/_matrix/client/v3/account/3pid/",
		"/_matrix/client/v3/account//3pid",
		"/_matrix/client/v3/account/3p%69d",
		"/_matrix/client/v3/account/%33pid",
	} {
		t.Run(p, func(t *testing.T) {
			spy.reset()
			r := e.secReq("POST", p, bearer(u.AccessToken), body)
			s := e.e2eCheckChallenge(r, own, nil)
			// A homeserver password stage instead of the 2FA stage.
			r = e.secReq("POST", p, bearer(u.AccessToken), e2eWith(body, passwordAuth(u.User, s)))
			if r.Status/100 == 2 {
				t.Fatalf("password alone: %d %s", r.Status, r.Raw)
			}
			r = e.secReq("POST", p, bearer(u.AccessToken), e2eWith(body, map[string]any{"session": s}))
			e.e2eCheckChallenge(r, own, nil)
			if n := spy.to("/account/3pid"); len(n) > 0 {
				t.Fatalf("forwarded before the 2FA stage: %s %s", n[0].Path, n[0].Body)
			}
			r = e.secReq("POST", p, bearer(u.AccessToken), e2eWith(body, e2eAuth(e2eStageTOTP, s, e.code(u))))
			fw := spy.to("/account/3pid")
			if len(fw) != 1 || fw[0].auth() != nil || fw[0].Method != "POST" {
				t.Fatalf("after the 2FA stage: %d forwarded (%v); want one, without auth (answer %d %s)", len(fw), fw, r.Status, r.Raw)
			}
			secCheckForwarded(t, spy, u.UserID, u.AccessToken, "/account/3pid")
		})
	}
}

// ---------------------------------------------------------------- cross-signing

// TestSecurityCrossSigningUnstable: the unstable device_signing/upload (the
// spelling matrix-js-sdk's older crypto uses) works through the gateway for
// a user without 2FA (first upload and a reset with the password) and for a
// user with 2FA (first upload; reset after the 2FA stage).
func TestSecurityCrossSigningUnstable(t *testing.T) {
	e, spy := newSecEnv(t)
	const path = "/_matrix/client/unstable/keys/device_signing/upload"
	t.Run("without 2FA", func(t *testing.T) {
		u := tesths.RegisterUser(t, e.hs, "plainx")
		k1 := masterKey(u.UserID)
		expect(t, e.gw("POST", path, u.AccessToken, map[string]any{"master_key": k1}), 200, "")
		if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(k1) {
			t.Fatalf("master key %s; want %s", got, keysOf(k1))
		}
		k2 := masterKey(u.UserID)
		ch := e.gw("POST", path, u.AccessToken, map[string]any{"master_key": k2})
		if ch.Status != 401 || ch.str("session") == "" {
			t.Fatalf("reset challenge: %d %s", ch.Status, ch.Raw)
		}
		spy.reset()
		expect(t, e.gw("POST", path, u.AccessToken, map[string]any{"master_key": k2, "auth": passwordAuth(u, ch.str("session"))}), 200, "")
		secCheckForwarded(t, spy, u.UserID, u.AccessToken, "/keys/device_signing/upload")
		if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(k2) {
			t.Fatalf("after the reset the master key is %s; want %s", got, keysOf(k2))
		}
	})
	t.Run("with 2FA", func(t *testing.T) {
		u := e.enrol("tfax")
		k1 := masterKey(u.UserID)
		expect(t, e.gw("POST", path, u.AccessToken, map[string]any{"master_key": k1}), 200, "")
		if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(k1) {
			t.Fatalf("master key %s; want %s", got, keysOf(k1))
		}
		body := map[string]any{"master_key": masterKey(u.UserID)}
		s := e.e2eCheckChallenge(e.gw("POST", path, u.AccessToken, body), e2eProtectedFlows, nil)
		r := e.gw("POST", path, u.AccessToken, e2eWith(body, passwordAuth(u.User, s)))
		expect(t, r, 401, "M_FORBIDDEN")
		e.e2eCheckChallenge(e.gw("POST", path, u.AccessToken, e2eWith(body, e2eAuth(e2eStageTOTP, s, e.code(u)))), e2eProtectedFlows, []string{e2eStageTOTP})
		spy.reset()
		expect(t, e.gw("POST", path, u.AccessToken, e2eWith(body, passwordAuth(u.User, s))), 200, "")
		secCheckForwarded(t, spy, u.UserID, u.AccessToken, "/keys/device_signing/upload")
		if got := e.secMasterKey(u.AccessToken, u.UserID); got != keysOf(body["master_key"].(map[string]any)) {
			t.Fatalf("after the reset the master key is %s", got)
		}
	})
}

// ---------------------------------------------------------------- no difference

// TestSecurityNo2FANoDifference: for a user without 2FA each guarded
// endpoint Dendrite serves, done with their own password, answers the same
// through the gateway as directly (statuses and error codes, step by step)
// and takes effect.
func TestSecurityNo2FANoDifference(t *testing.T) {
	e := newEnv(t)
	n := 0
	type step struct {
		method, path string
		body         map[string]any
		withAuth     bool
	}
	type scenario struct {
		name  string
		steps func(u *dendrite.User) []step
		took  func(u *dendrite.User) bool
	}
	var gone string
	var newPW string
	var key map[string]any
	scenarios := func(prefix string) []scenario {
		return []scenario{
			{"delete_devices", func(u *dendrite.User) []step {
				gone = e.secNewDevice(u).DeviceID
				b := map[string]any{"devices": []string{gone}}
				return []step{{"POST", prefix + "/delete_devices", b, false}, {"POST", prefix + "/delete_devices", b, true}}
			}, func(u *dendrite.User) bool { return !e.e2eHasDevice(u.AccessToken, gone) }},
			{"DELETE devices/{id}", func(u *dendrite.User) []step {
				gone = e.secNewDevice(u).DeviceID
				p := prefix + "/devices/" + url.PathEscape(gone)
				return []step{{"DELETE", p, map[string]any{}, false}, {"DELETE", p, map[string]any{}, true}}
			}, func(u *dendrite.User) bool { return !e.e2eHasDevice(u.AccessToken, gone) }},
			{"account/password", func(u *dendrite.User) []step {
				newPW = tesths.RandomPassword(t)
				b := map[string]any{"new_password": newPW, "logout_devices": false}
				return []step{{"POST", prefix + "/account/password", b, false}, {"POST", prefix + "/account/password", b, true}}
			}, func(u *dendrite.User) bool { return e.secLoginStatus(u.Localpart, newPW) == 200 }},
			{"keys/device_signing/upload", func(u *dendrite.User) []step {
				key = masterKey(u.UserID)
				p := prefix + "/keys/device_signing/upload"
				return []step{{"POST", p, map[string]any{"master_key": masterKey(u.UserID)}, false},
					{"POST", p, map[string]any{"master_key": key}, false}, {"POST", p, map[string]any{"master_key": key}, true}}
			}, func(u *dendrite.User) bool { return e.secMasterKey(u.AccessToken, u.UserID) == keysOf(key) }},
			{"account/deactivate", func(u *dendrite.User) []step {
				p := prefix + "/account/deactivate"
				return []step{{"POST", p, map[string]any{}, false}, {"POST", p, map[string]any{}, true}}
			}, func(u *dendrite.User) bool { return !e.secTokenAlive(u.AccessToken, u.UserID) }},
		}
	}
	for _, prefix := range []string{"/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/unstable"} {
		for _, sc := range scenarios(prefix) {
			if prefix == "/_matrix/client/unstable" && sc.name != "keys/device_signing/upload" {
				continue // Dendrite serves only this one there
			}
			t.Run(prefix+"/"+sc.name, func(t *testing.T) {
				var got [2][]string
				for i, send := range []func(string, string, string, any) resp{e.direct, e.gw} {
					n++
					u := tesths.RegisterUser(t, e.hs, "same"+string(rune('a'+n/26))+string(rune('a'+n%26)))
					session := ""
					for _, st := range sc.steps(u) {
						b := st.body
						if st.withAuth {
							b = e2eWith(b, passwordAuth(u, session))
						}
						r := send(st.method, st.path, u.AccessToken, b)
						if s := r.str("session"); s != "" {
							session = s
						}
						got[i] = append(got[i], strconv.Itoa(r.Status)+" "+r.str("errcode"))
					}
					if !sc.took(u) {
						t.Errorf("%s: the operation did not take effect (answers %v)", []string{"direct", "gateway"}[i], got[i])
					}
				}
				if !slices.Equal(got[0], got[1]) {
					t.Errorf("answers through the gateway %v; directly %v", got[1], got[0])
				}
			})
		}
	}
}
