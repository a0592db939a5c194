package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
)

// End-to-end tests of the OAuth 2.0 API against a real Dendrite: the
// authorization code flow with PKCE, for users with and without 2FA, and
// its failures.

const oauthIssuer = "https://matrix.example.test"

func oauthEnv(t *testing.T) *env {
	return newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
	})
}

// oauthJSON posts body (JSON) or form to path and decodes the JSON answer.
func (e *env) oauthPost(path string, form url.Values, body any) resp {
	e.t.Helper()
	var rd io.Reader
	ct := "application/x-www-form-urlencoded"
	if body != nil {
		b, _ := json.Marshal(body)
		rd, ct = bytes.NewReader(b), "application/json"
	} else {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest("POST", e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	return send(e.t, req)
}

// registerClient registers a client and returns its client_id.
func (e *env) registerClient(meta map[string]any) string {
	e.t.Helper()
	r := e.oauthPost(oauth.RegisterPath, nil, meta)
	if r.Status != 201 || r.str("client_id") == "" {
		e.t.Fatalf("register: %d %s", r.Status, r.Raw)
	}
	return r.str("client_id")
}

func webClient() map[string]any {
	return map[string]any{"client_name": "Test Web App", "client_uri": "https://app.example/", "application_type": "web",
		"redirect_uris": []string{"https://app.example/cb"}, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none"}
}

// pkce is a code verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE(seed string) pkce {
	v := strings.Repeat(seed, 64/len(seed)+1)[:64]
	sum := sha256.Sum256([]byte(v))
	return pkce{v, base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authorizeURL is the authorization request for client.
func authorizeURL(client, redirect, device, state string, p pkce, mode string) string {
	q := url.Values{"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"}, "state": {state},
		"scope": {oauth.ScopeAPI + " " + oauth.ScopeDevicePrefix + device}, "code_challenge": {p.challenge},
		"code_challenge_method": {"S256"}}
	if mode != "" {
		q.Set("response_mode", mode)
	}
	return oauth.AuthorizePath + "?" + q.Encode()
}

// oauthSignIn opens the page and submits username and password.
func (c *pgClient) oauthSignIn(page, user, password string) pgPage {
	c.t.Helper()
	get := c.get(page)
	pgWant(c.t, get, 200, `name="username"`, "wants to sign in")
	return c.post(page, "csrf", get.hidden("csrf"), "step", "credentials", "username", user, "password", password)
}

func (c *pgClient) oauthCode(page string, p pgPage, code string) pgPage {
	c.t.Helper()
	return c.post(page, "csrf", p.hidden("csrf"), "step", "code", "session", p.hidden("session"), "code", code)
}

// redirectParams checks a 302 to prefix and returns its parameters (from
// the query, or the fragment).
func redirectParams(t *testing.T, p pgPage, prefix string) url.Values {
	t.Helper()
	loc := p.Header.Get("Location")
	if p.Status != 302 || !strings.HasPrefix(loc, prefix) {
		t.Fatalf("got %d to %q; want 302 to %s…\n%s", p.Status, loc, prefix, p.Body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	raw := u.RawQuery
	if u.Fragment != "" {
		raw = u.EscapedFragment() // as sent: Fragment is already unescaped
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *env) exchange(client, code, redirect, verifier string) resp {
	e.t.Helper()
	return e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}, nil)
}

func TestOAuthMetadata(t *testing.T) {
	e := oauthEnv(t)
	for _, p := range []string{"/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"} {
		r := e.gw("GET", p, "", nil)
		if r.Status != 200 || r.str("issuer") != oauthIssuer+"/" || r.str("token_endpoint") != oauthIssuer+oauth.TokenPath ||
			r.str("authorization_endpoint") != oauthIssuer+oauth.AuthorizePath || r.str("registration_endpoint") != oauthIssuer+oauth.RegisterPath ||
			r.str("revocation_endpoint") != oauthIssuer+oauth.RevokePath || r.str("account_management_uri") != oauthIssuer+"/_matrix2fa/" {
			t.Fatalf("%s: %d %s", p, r.Status, r.Raw)
		}
		for key, want := range map[string]string{"response_types_supported": "code", "response_modes_supported": "query fragment",
			"grant_types_supported": "authorization_code refresh_token", "code_challenge_methods_supported": "S256"} {
			if got := strings.Join(r.strings(key), " "); got != want {
				t.Errorf("%s %s = %q; want %q", p, key, got, want)
			}
		}
		if r.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS", p)
		}
	}
}

func TestOAuthOffChangesNothing(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/_matrix/client/v1/auth_metadata", oauth.AuthorizePath} {
		via, direct := e.gw("GET", p, "", nil), e.direct("GET", p, "", nil)
		if via.Status != direct.Status || via.Status == 200 {
			t.Fatalf("%s with OAuth off: gateway %d, homeserver %d", p, via.Status, direct.Status)
		}
	}
}

func TestOAuthCodeFlowWith2FA(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("oauthalice")
	client := e.registerClient(webClient())
	p := newPKCE("verifier-with-2fa-")
	page := authorizeURL(client, "https://app.example/cb", "OAUTHDEV01", "st4te", p, "")
	c := e.pgClient()
	codePage := c.oauthSignIn(page, u.Localpart, u.Password)
	pgWant(t, codePage, 200, `name="code"`, u.UserID)
	if codePage.Header.Get("Location") != "" {
		t.Fatal("redirected before the second factor")
	}
	params := redirectParams(t, c.oauthCode(page, codePage, e.code(u)), "https://app.example/cb?")
	if params.Get("state") != "st4te" || params.Get("code") == "" {
		t.Fatalf("redirect params %v", params)
	}
	tok := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier)
	if tok.Status != 200 || tok.str("token_type") != "Bearer" || tok.str("refresh_token") == "" ||
		!strings.Contains(tok.str("scope"), "urn:matrix:client:device:OAUTHDEV01") {
		t.Fatalf("token: %d %s", tok.Status, tok.Raw)
	}
	at := tok.str("access_token")
	who := e.gw("GET", pgWhoAmI, at, nil)
	if who.Status != 200 || who.str("user_id") != u.UserID || who.str("device_id") != "OAUTHDEV01" {
		t.Fatalf("whoami: %d %s", who.Status, who.Raw)
	}
	if s := e.gw("GET", "/_matrix/client/v3/sync?timeout=0", at, nil); s.Status != 200 {
		t.Fatalf("sync through the gateway: %d %s", s.Status, s.Raw)
	}
	if again := e.exchange(client, params.Get("code"), "https://app.example/cb", p.verifier); again.Status != 400 || again.str("error") != "invalid_grant" {
		t.Fatalf("reused code: %d %s", again.Status, again.Raw)
	}

	ref := e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok.str("refresh_token")}}, nil)
	if ref.Status != 200 || ref.str("access_token") != at || ref.str("refresh_token") == "" || ref.str("refresh_token") == tok.str("refresh_token") {
		t.Fatalf("refresh: %d %s", ref.Status, ref.Raw)
	}
	old := e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok.str("refresh_token")}}, nil)
	if old.Status != 400 || old.str("error") != "invalid_grant" {
		t.Fatalf("rotated-out refresh token: %d %s", old.Status, old.Raw)
	}

	rev := e.oauthPost(oauth.RevokePath, url.Values{"client_id": {client}, "token": {at}}, nil)
	if rev.Status != 200 {
		t.Fatalf("revoke: %d %s", rev.Status, rev.Raw)
	}
	if dead := e.direct("GET", pgWhoAmI, at, nil); dead.Status != 401 {
		t.Fatalf("the token works at the homeserver after revocation: %d %s", dead.Status, dead.Raw)
	}
	gone := e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {ref.str("refresh_token")}}, nil)
	if gone.Status != 400 || gone.str("error") != "invalid_grant" {
		t.Fatalf("refresh after revocation: %d %s", gone.Status, gone.Raw)
	}
}

func TestOAuthNativeClientWithout2FA(t *testing.T) {
	e := oauthEnv(t)
	u := tesths.RegisterUser(t, e.hs, "oauthbob")
	client := e.registerClient(map[string]any{"client_name": "Native", "client_uri": "https://example.com",
		"application_type": "native", "redirect_uris": []string{"com.example.app:/callback", "http://127.0.0.1/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none"})
	p := newPKCE("native-verifier-")
	page := authorizeURL(client, "com.example.app:/callback", "NATIVEDEV1", "n-state", p, "fragment")
	c := e.pgClient()
	params := redirectParams(t, c.oauthSignIn(page, u.Localpart, u.Password), "com.example.app:/callback#")
	if params.Get("state") != "n-state" || params.Get("code") == "" {
		t.Fatalf("params %v", params)
	}
	tok := e.exchange(client, params.Get("code"), "com.example.app:/callback", p.verifier)
	if tok.Status != 200 {
		t.Fatalf("token: %d %s", tok.Status, tok.Raw)
	}
	if who := e.gw("GET", pgWhoAmI, tok.str("access_token"), nil); who.str("device_id") != "NATIVEDEV1" {
		t.Fatalf("whoami: %s", who.Raw)
	}
	// A loopback redirect matches on any port.
	page = authorizeURL(client, "http://127.0.0.1:49152/cb", "NATIVEDEV2", "s", p, "")
	redirectParams(t, c.oauthSignIn(page, u.Localpart, u.Password), "http://127.0.0.1:49152/cb?")
	// An MSC4198 login hint fills the username field; the full user ID signs in.
	hinted := authorizeURL(client, "com.example.app:/callback", "NATIVEDEV3", "h", p, "fragment") + "&login_hint=" + url.QueryEscape("mxid:"+u.UserID)
	pgWant(t, c.get(hinted), 200, `value="`+u.UserID+`"`)
	redirectParams(t, c.oauthSignIn(hinted, u.UserID, u.Password), "com.example.app:/callback#")
}

func TestOAuthRegistrationRules(t *testing.T) {
	e := oauthEnv(t)
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"web redirect on another host", func(m map[string]any) { m["redirect_uris"] = []string{"https://evil.example/cb"} }, "invalid_redirect_uri"},
		{"web http redirect", func(m map[string]any) { m["redirect_uris"] = []string{"http://app.example/cb"} }, "invalid_redirect_uri"},
		{"web loopback without the dev option", func(m map[string]any) { m["redirect_uris"] = []string{"http://127.0.0.1/cb"} }, "invalid_redirect_uri"},
		{"private-use scheme of another host", func(m map[string]any) {
			m["application_type"], m["redirect_uris"] = "native", []string{"com.evil.app:/cb"}
		}, "invalid_redirect_uri"},
		{"private-use scheme with an authority", func(m map[string]any) {
			m["application_type"], m["redirect_uris"] = "native", []string{"example.app://cb"}
		}, "invalid_redirect_uri"},
		{"confidential client", func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_basic" }, "invalid_client_metadata"},
		{"http client_uri", func(m map[string]any) { m["client_uri"] = "http://app.example/" }, "invalid_client_metadata"},
		{"implicit grant", func(m map[string]any) { m["grant_types"] = []string{"implicit"} }, "invalid_client_metadata"},
		{"logo elsewhere", func(m map[string]any) { m["logo_uri"] = "https://cdn.other/logo.png" }, "invalid_client_metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := webClient()
			tc.edit(m)
			r := e.oauthPost(oauth.RegisterPath, nil, m)
			if r.Status != 400 || r.str("error") != tc.want {
				t.Fatalf("got %d %s; want 400 %s", r.Status, r.Raw, tc.want)
			}
		})
	}
	m := webClient()
	m["client_name#fr"], m["redirect_uris"] = "Appli", []string{"https://login.app.example/cb"}
	r := e.oauthPost(oauth.RegisterPath, nil, m)
	if r.Status != 201 || r.str("client_name#fr") != "Appli" {
		t.Fatalf("subdomain redirect, localized name: %d %s", r.Status, r.Raw)
	}
}

func TestOAuthFailures(t *testing.T) {
	e := oauthEnv(t)
	u := e.enrol("oauthcarol")
	client := e.registerClient(webClient())
	const redirect = "https://app.example/cb"
	c := e.pgClient()
	p := newPKCE("failure-verifier-")
	// issue runs the flow with code and returns the authorization code.
	issue := func() string {
		page := authorizeURL(client, redirect, "FAILDEV001", "s", p, "")
		return redirectParams(t, c.oauthCode(page, c.oauthSignIn(page, u.Localpart, u.Password), e.code(u)), redirect+"?").Get("code")
	}

	t.Run("unregistered redirect URI: an error page, no redirect", func(t *testing.T) {
		r := c.get(authorizeURL(client, "https://app.example/other", "D", "s", p, ""))
		if r.Status != 400 || r.Header.Get("Location") != "" {
			t.Fatalf("got %d, Location %q", r.Status, r.Header.Get("Location"))
		}
		if r := c.get(authorizeURL("no-such-client", redirect, "D", "s", p, "")); r.Status != 400 || r.Header.Get("Location") != "" {
			t.Fatalf("unknown client: %d", r.Status)
		}
	})
	t.Run("missing PKCE: invalid_request at the redirect", func(t *testing.T) {
		page := strings.Replace(authorizeURL(client, redirect, "D", "s", p, ""), "code_challenge_method=S256", "code_challenge_method=plain", 1)
		if v := redirectParams(t, c.get(page), redirect+"?"); v.Get("error") != "invalid_request" || v.Get("state") != "s" {
			t.Fatalf("params %v", v)
		}
	})
	t.Run("no API scope: invalid_scope", func(t *testing.T) {
		page := strings.Replace(authorizeURL(client, redirect, "D", "s", p, ""), url.QueryEscape(oauth.ScopeAPI+" "), "", 1)
		if v := redirectParams(t, c.get(page), redirect+"?"); v.Get("error") != "invalid_scope" {
			t.Fatalf("params %v", v)
		}
	})
	t.Run("wrong verifier, then the right one: the code is gone", func(t *testing.T) {
		code := issue()
		if r := e.exchange(client, code, redirect, newPKCE("another-verifier-").verifier); r.str("error") != "invalid_grant" || r.str("access_token") != "" {
			t.Fatalf("wrong verifier: %d %s", r.Status, r.Raw)
		}
		if r := e.exchange(client, code, redirect, p.verifier); r.str("error") != "invalid_grant" {
			t.Fatalf("after a wrong verifier: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("missing verifier", func(t *testing.T) {
		if r := e.exchange(client, issue(), redirect, ""); r.str("error") != "invalid_grant" || r.str("access_token") != "" {
			t.Fatalf("got %d %s", r.Status, r.Raw)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		code := issue()
		e.clock.Add(2 * time.Minute)
		if r := e.exchange(client, code, redirect, p.verifier); r.str("error") != "invalid_grant" || r.str("access_token") != "" {
			t.Fatalf("got %d %s", r.Status, r.Raw)
		}
	})
	t.Run("unknown grant type", func(t *testing.T) {
		r := e.oauthPost(oauth.TokenPath, url.Values{"grant_type": {"password"}, "client_id": {client}}, nil)
		if r.Status != 400 || r.str("error") != "unsupported_grant_type" {
			t.Fatalf("got %d %s", r.Status, r.Raw)
		}
	})
	t.Run("wrong TOTP, then a replayed one: no redirect", func(t *testing.T) {
		page := authorizeURL(client, redirect, "FAILDEV002", "s", p, "")
		codePage := c.oauthSignIn(page, u.Localpart, u.Password)
		wrong := c.oauthCode(page, codePage, "000000")
		if wrong.Status != 403 || wrong.Header.Get("Location") != "" || !wrong.has(`name="code"`) {
			t.Fatalf("wrong code: %d %q", wrong.Status, wrong.Header.Get("Location"))
		}
		used := e.code(u)
		redirectParams(t, c.oauthCode(page, wrong, used), redirect+"?")
		codePage = c.oauthSignIn(page, u.Localpart, u.Password)
		replay := c.oauthCode(page, codePage, used)
		if replay.Status != 403 || replay.Header.Get("Location") != "" {
			t.Fatalf("replayed code: %d %q", replay.Status, replay.Header.Get("Location"))
		}
	})
	t.Run("deny", func(t *testing.T) {
		page := authorizeURL(client, redirect, "D", "s", p, "")
		get := c.get(page)
		if v := redirectParams(t, c.post(page, "csrf", get.hidden("csrf"), "step", "deny"), redirect+"?"); v.Get("error") != "access_denied" {
			t.Fatalf("params %v", v)
		}
	})
}
