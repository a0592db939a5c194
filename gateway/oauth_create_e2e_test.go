package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// End-to-end tests of user registration on the OAuth authorization page
// (prompt=create) against a real Dendrite: with open registration (the
// test Dendrite's default) and with registration off.

const closedSentence = "This server does not allow creating an account here"

// createURL is authorizeURL with prompt=create.
func createURL(client, device, state string, p pkce) string {
	return authorizeURL(client, oauthCB, device, state, p, "") + "&prompt=create"
}

// oauthCreate opens the create view and submits it.
func (c *pgClient) oauthCreate(page, user, password, again string) pgPage {
	c.t.Helper()
	get := c.get(page)
	pgWant(c.t, get, 200, `name="password2"`, "Create account and allow")
	return c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", user, "password", password, "password2", again)
}

// promptValues is the metadata's prompt_values_supported.
func (e *env) promptValues() string {
	e.t.Helper()
	r := e.gw("GET", "/_matrix/client/v1/auth_metadata", "", nil)
	expect(e.t, r, 200, "")
	return strings.Join(r.strings("prompt_values_supported"), " ")
}

// TestOAuthCreateFlow: the metadata offers prompt=create; the create view
// registers the user at Dendrite, and the code grant gives a token of that
// user for the scope's device, which syncs through the gateway; the user's
// password works at Dendrite; the registration is an audit event.
func TestOAuthCreateFlow(t *testing.T) {
	e := oauthEnv(t)
	if got := e.promptValues(); got != "create" {
		t.Fatalf("prompt_values_supported = %q with open registration", got)
	}
	client := e.registerClient(webClient())
	p := newPKCE("create-verifier-")
	c := e.pgClient()
	signIn := c.get(authorizeURL(client, oauthCB, "CREATEDEV1", "st", p, ""))
	pgWant(t, signIn, 200, `id="create-link"`, `name="username"`)
	page := createURL(client, "CREATEDEV1", "st", p)
	pgWant(t, c.get(page), 200, "Test Web App", "https://app.example/", `id="signin-link"`, `name="password2"`)
	if c.get(page).has(`name="token"`) {
		t.Fatal("a registration token field without a token flow")
	}
	password := tesths.RandomPassword(t)
	params := redirectParams(t, c.oauthCreate(page, "NewCarol", password, password), oauthCB+"?")
	if params.Get("state") != "st" || params.Get("code") == "" {
		t.Fatalf("params %v", params)
	}
	tok := e.exchange(client, params.Get("code"), oauthCB, p.verifier)
	expect(t, tok, 200, "")
	at := tok.str("access_token")
	who := e.gw("GET", polWhoami, at, nil)
	if who.str("user_id") != "@newcarol:localhost" || who.str("device_id") != "CREATEDEV1" {
		t.Fatalf("whoami: %s", who.Raw)
	}
	expect(t, e.gw("GET", polSync, at, nil), 200, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.hs.Login(ctx, "newcarol", password); err != nil {
		t.Fatalf("the new user's password at Dendrite: %v", err)
	}
	events, err := e.db.QueryAudit(ctx, storage.AuditQuery{UserID: "@newcarol:localhost", Limit: 10})
	if err != nil || len(events) != 1 || events[0].Kind != storage.AuditRegistered || !strings.Contains(events[0].Detail, client) {
		t.Fatalf("audit: %+v %v", events, err)
	}
}

// TestOAuthCreateRefusals: each refusal is a sentence on the create view,
// never a redirect with a code; a forged form registers nobody.
func TestOAuthCreateRefusals(t *testing.T) {
	e := oauthEnv(t)
	taken := tesths.RegisterUser(t, e.hs, "takenname")
	client := e.registerClient(webClient())
	p := newPKCE("create-refusal-")
	page := createURL(client, "REFUSEDEV1", "s", p)
	c := e.pgClient()
	good := tesths.RandomPassword(t)
	cases := []struct {
		name, user, password, again, want string
		status                            int
	}{
		{"username taken", "takenname", good, good, "That username is taken", 400},
		{"username taken, other case", "TakenName", good, good, "That username is taken", 400},
		{"username taken, password right", "takenname", taken.Password, taken.Password, "That username is taken", 400},
		{"username invalid", "bad name!", good, good, "That username cannot be used", 400},
		{"full user ID", "@someone:localhost", good, good, "That username cannot be used", 400},
		{"numeric", "12345", good, good, "That username cannot be used", 400},
		{"weak password", "weakling", "short", "short", "That password is too weak", 400},
		{"passwords differ", "mismatch", good, good + "x", "The two passwords do not match", 400},
		{"no password", "nopassword", "", "", "Enter your password", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.oauthCreate(page, tc.user, tc.password, tc.again)
			noRedirect(t, r, tc.status, tc.name)
			pgWant(t, r, tc.status, tc.want, `name="password2"`)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.hs.Login(ctx, "takenname", taken.Password); err != nil {
		t.Fatalf("the existing user's password changed: %v", err)
	}
	for _, name := range []string{"weakling", "mismatch", "nopassword"} {
		if _, err := e.hs.Login(ctx, name, good); err == nil {
			t.Fatalf("%s was registered", name)
		}
	}

	t.Run("no CSRF token", func(t *testing.T) {
		c.get(page)
		r := c.post(page, "step", "create", "username", "forged", "password", good, "password2", good)
		noRedirect(t, r, 403, "no CSRF token")
		pgWant(t, r, 403, "This page has expired")
		r = c.post(page, "csrf", "x", "step", "create", "username", "forged", "password", good, "password2", good)
		noRedirect(t, r, 403, "wrong CSRF token")
		if _, err := e.hs.Login(ctx, "forged", good); err == nil {
			t.Fatal("a forged form registered the user")
		}
	})
	t.Run("the sign-in view's token on a request without prompt=create", func(t *testing.T) {
		plain := authorizeURL(client, oauthCB, "REFUSEDEV1", "s", p, "")
		get := c.get(plain)
		r := c.post(plain, "csrf", get.hidden("csrf"), "step", "create", "username", "sneaky", "password", good, "password2", good)
		noRedirect(t, r, 403, "create step without prompt=create")
		if _, err := e.hs.Login(ctx, "sneaky", good); err == nil {
			t.Fatal("registered without prompt=create")
		}
	})
}

// TestOAuthCreateRegistrationOff: with registration off at the homeserver
// the metadata has no prompt_values_supported, and prompt=create shows the
// sign-in view saying so (the existing user still signs in).
func TestOAuthCreateRegistrationOff(t *testing.T) {
	hs := tesths.DendriteWith(t, dendrite.Options{RegistrationDisabled: true})
	e := newEnvWith(t, hs, func(g *gatewayConfig, _ *accountConfig) {
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
	})
	expect(t, e.direct("POST", "/_matrix/client/v3/register", "", map[string]any{}), 403, "M_FORBIDDEN")
	if r := e.gw("GET", "/_matrix/client/v1/auth_metadata", "", nil); r.Status != 200 || r.Body["prompt_values_supported"] != nil {
		t.Fatalf("metadata with registration off: %d %s", r.Status, r.Raw)
	}
	client := e.registerClient(webClient())
	p := newPKCE("create-closed-")
	page := createURL(client, "CLOSEDDEV1", "s", p)
	c := e.pgClient()
	get := c.get(page)
	pgWant(t, get, 200, closedSentence, `name="username"`)
	if get.has(`name="password2"`) || get.has(`id="create-link"`) {
		t.Fatalf("the create view without registration:\n%s", get.Body)
	}
	good := tesths.RandomPassword(t)
	r := c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", "nobody", "password", good, "password2", good)
	noRedirect(t, r, 403, "create step with registration off")
	pgWant(t, r, 403, closedSentence)
}

// TestOAuthCreateUnderPolicy: under a policy that requires 2FA of everyone
// at once, the new user must enrol before a code is issued.
func TestOAuthCreateUnderPolicy(t *testing.T) {
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.Policy = policy.Config{Enforce: policy.ModeAll} // no grace period
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
	})
	client := e.registerClient(webClient())
	pk := newPKCE("create-policy-")
	page := createURL(client, "CREATEPOL1", "s", pk)
	plain := authorizeURL(client, oauthCB, "CREATEPOL1", "s", pk, "")
	c := e.pgClient()
	password := tesths.RandomPassword(t)
	p := c.oauthCreate(page, "newpolicy", password, password)
	pgWant(t, p, 200, `id="qr"`, "@newpolicy:localhost")
	noRedirect(t, p, 200, "registration under the policy")
	if p.has(`id="skip"`) {
		t.Fatal("\"Not now\" offered without a grace period")
	}
	noRedirect(t, c.post(page, "csrf", p.hidden("csrf"), "step", "skip", "session", p.hidden("session")), 403, "forged \"Not now\"")
	p = c.oauthCreate(page, "newpolicy", password, password)
	pgWant(t, p, 400, "That username is taken")
	// The new user signs in on the sign-in view: enrolment again, there.
	p = c.oauthSignIn(plain, "newpolicy", password)
	pgWant(t, p, 200, `id="qr"`)
	noRedirect(t, c.oauthCode(plain, p, "000000"), 403, "code step on the enrolment's session")
	noRedirect(t, c.post(plain, "csrf", p.hidden("csrf"), "step", "continue", "session", p.hidden("session")), 403, "continue before enrolling")
	codes := c.post(plain, "csrf", p.hidden("csrf"), "step", "enrol", "session", p.hidden("session"),
		"enrolment", p.hidden("enrolment"), "code", e.polCode(p))
	pgWant(t, codes, 200, `id="codes"`, `id="continue"`)
	params := redirectParams(t, c.post(plain, "csrf", codes.hidden("csrf"), "step", "continue", "session", codes.hidden("session")), oauthCB+"?")
	tok := e.exchange(client, params.Get("code"), oauthCB, pk.verifier)
	expect(t, tok, 200, "")
	if who := e.gw("GET", polWhoami, tok.str("access_token"), nil); who.str("user_id") != "@newpolicy:localhost" || who.str("device_id") != "CREATEPOL1" {
		t.Fatalf("whoami: %s", who.Raw)
	}
	if on, err := e.acc.Enabled(context.Background(), "@newpolicy:localhost"); err != nil || !on {
		t.Fatalf("2FA of the new user: %v %v", on, err)
	}
}

// TestOAuthCreateRedTeam: what prompt=create must not allow. The
// homeserver registers exactly the username checked, never another user;
// a taken username never signs anyone in, with or without its password; a
// session in the form is not read; odd input is a sentence, never a 500;
// the create step counts toward the per-address rate limit.
func TestOAuthCreateRedTeam(t *testing.T) {
	e := newEnv(t, func(g *gatewayConfig, _ *accountConfig) {
		g.PublicBaseURL = oauthIssuer
		g.OAuth = oauth.Config{Enabled: true}
		g.RateBurst, g.RateEvery = 12, time.Hour
	})
	victim := e.enrol("rtvictim")
	client := e.registerClient(webClient())
	p := newPKCE("create-redteam-")
	page := createURL(client, "RTDEV00001", "s", p)
	c := e.pgClient()
	good := tesths.RandomPassword(t)

	// The victim's name in any case, with the right password: taken, no code,
	// no device, and the victim's 2FA is untouched.
	for _, name := range []string{victim.Localpart, "RTVictim", " rtvictim "} {
		r := c.oauthCreate(page, name, victim.Password, victim.Password)
		noRedirect(t, r, 400, "the victim's name "+name)
		pgWant(t, r, 400, "That username is taken")
	}
	if e.hasDevice(victim.AccessToken, "RTDEV00001") {
		t.Fatal("a device for the victim")
	}
	// A session of someone else's in the form is not read: the page starts
	// its own UIA session (the homeserver would otherwise take the
	// username and password kept with that session).
	get := c.get(page)
	r := c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", "rtmallory", "password", good, "password2", good,
		"session", "SOMEONE-ELSES", "auth", `{"type":"m.login.dummy","session":"X"}`, "user", "rtvictim")
	v := redirectParams(t, r, oauthCB+"?")
	tok := e.exchange(client, v.Get("code"), oauthCB, p.verifier)
	if who := e.gw("GET", polWhoami, tok.str("access_token"), nil); who.str("user_id") != "@rtmallory:localhost" {
		t.Fatalf("whoami: %s", who.Raw)
	}
	// Odd input: sentences, never a 500.
	for name, fields := range map[string][]string{
		"long username":   {"username", strings.Repeat("a", 300), "password", good, "password2", good},
		"long password":   {"username", "rtlong", "password", strings.Repeat("p", 600), "password2", strings.Repeat("p", 600)},
		"unicode":         {"username", "ålice", "password", good, "password2", good},
		"NUL":             {"username", "a\x00b", "password", good, "password2", good},
		"no fields":       {},
		"token not asked": {"username", "rttoken", "password", good, "password2", "x", "token", "abc"},
	} {
		get := c.get(page)
		r := c.post(page, append([]string{"csrf", get.hidden("csrf"), "step", "create"}, fields...)...)
		if r.Status >= 500 || r.Header.Get("Location") != "" || !r.has(`class="error"`) || r.has("That did not work") {
			t.Fatalf("%s: %d %q\n%s", name, r.Status, r.Header.Get("Location"), r.Body)
		}
	}
	// The rate limit: the create step spends the address's burst (12, with
	// the POSTs above) and is then refused before the homeserver is asked.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		if i == 12 {
			t.Fatal("no rate limit on the create step")
		}
		name := fmt.Sprintf("rtlimited%d", i)
		get = c.get(page)
		r = c.post(page, "csrf", get.hidden("csrf"), "step", "create", "username", name, "password", good, "password2", good+"x")
		if r.Status == 429 {
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			break
		}
		pgWant(t, r, 400, "do not match")
	}
	if _, err := e.hs.Login(ctx, "rtmallory", good); err != nil {
		t.Fatalf("the registered user: %v", err)
	}
}
