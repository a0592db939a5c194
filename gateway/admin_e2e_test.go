package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/admin"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/provider"
)

const (
	adminToken     = "static-admin-token-for-tests"
	providerSecret = "provider-shared-secret-for-tests"
)

func sha256Hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// adminOn enables the admin API for homeserver admins, the static token and
// a scoped admin @lead of @team-*, and the provider API.
func adminOn(serverName string) envOption {
	return func(g *gatewayConfig, _ *accountConfig) {
		g.Admin = admin.Config{Enabled: true, HomeserverAdmins: true, TokenSHA256: sha256Hex(adminToken),
			Scoped: []admin.ScopedAdmin{{User: "@lead:" + serverName, Users: []string{"@team-*:" + serverName}}}}
		g.Provider = provider.Config{SecretSHA256: sha256Hex(providerSecret)}
	}
}

// newAdminEnv is a gateway with adminOn in front of a fresh Dendrite.
func newAdminEnv(t *testing.T) *env {
	t.Helper()
	hs := tesths.Dendrite(t)
	return newEnvWith(t, hs, adminOn(hs.ServerName))
}

// registerAdmin registers a homeserver admin on e's Dendrite.
func (e *env) registerAdmin(localpart string) *dendrite.User {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := e.hs.RegisterAdmin(ctx, localpart, tesths.RandomPassword(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func adminPath(userID, action string) string {
	p := admin.APIPrefix + "users/" + url.PathEscape(userID)
	if action != "" {
		p += "/" + action
	}
	return p
}

// auditDetails returns the kinds and details of a user's events as "kind detail".
func auditDetails(r resp) []string {
	var out []string
	list, _ := r.Body["audit"].([]any)
	if events, ok := r.Body["events"].([]any); ok {
		list = events
	}
	for _, v := range list {
		m, _ := v.(map[string]any)
		out = append(out, m["kind"].(string)+" "+m["detail"].(string))
	}
	return out
}

func TestAdminAPIE2E(t *testing.T) {
	e := newAdminEnv(t)
	boss := e.registerAdmin("boss")
	alice := e.enrol("alice")
	plain := tesths.RegisterUser(t, e.hs, "plain")

	t.Run("a non-admin gets 403, no token 401", func(t *testing.T) {
		expect(t, e.gw("GET", admin.APIPrefix+"users", plain.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("POST", adminPath(alice.UserID, "reset"), plain.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("GET", admin.APIPrefix+"users", "", nil), 401, "M_MISSING_TOKEN")
		expect(t, e.gw("GET", admin.APIPrefix+"users", "not-a-token", nil), 401, "M_UNKNOWN_TOKEN")
		if ok, _ := e.acc.Enabled(context.Background(), alice.UserID); !ok {
			t.Fatal("a non-admin's reset went through")
		}
	})

	t.Run("a homeserver admin lists, looks and counts", func(t *testing.T) {
		r := e.gw("GET", admin.APIPrefix+"users?status=enabled", boss.AccessToken, nil)
		expect(t, r, 200, "")
		if !strings.Contains(string(r.Raw), `"user_id":"`+alice.UserID+`","enabled":true`) || strings.Contains(string(r.Raw), plain.UserID) {
			t.Fatalf("users = %s; want alice enabled and not plain", r.Raw)
		}
		r = e.gw("GET", adminPath(alice.UserID, ""), boss.AccessToken, nil)
		expect(t, r, 200, "")
		if r.Body["enabled"] != true || r.Body["locked"] != false || r.Body["recovery_codes_remaining"] != float64(10) {
			t.Fatalf("user = %s", r.Raw)
		}
		r = e.gw("GET", admin.APIPrefix+"counts", boss.AccessToken, nil)
		expect(t, r, 200, "")
		if r.Body["enabled"] != float64(1) {
			t.Fatalf("counts = %s", r.Raw)
		}
	})

	t.Run("lockout shows, unlock names the admin", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			expect(t, e.provider("POST", alice.UserID, "verify", providerSecret, map[string]any{"code": e.wrongCode(alice)}), 403, "M_FORBIDDEN")
		}
		expect(t, e.provider("POST", alice.UserID, "verify", providerSecret, map[string]any{"code": e.code(alice)}), 429, "M_LIMIT_EXCEEDED")
		r := e.gw("GET", admin.APIPrefix+"users?status=locked", boss.AccessToken, nil)
		if !strings.Contains(string(r.Raw), alice.UserID) {
			t.Fatalf("locked users = %s; want alice", r.Raw)
		}
		expect(t, e.gw("POST", adminPath(alice.UserID, "unlock"), boss.AccessToken, nil), 200, "")
		expect(t, e.provider("POST", alice.UserID, "verify", providerSecret, map[string]any{"code": e.code(alice)}), 200, "")
		r = e.gw("GET", admin.APIPrefix+"audit?kind=unlock&user="+url.QueryEscape(alice.UserID), boss.AccessToken, nil)
		expect(t, r, 200, "")
		if got := auditDetails(r); len(got) != 1 || got[0] != "unlock by "+boss.UserID {
			t.Fatalf("unlock events = %v; want one by %s", got, boss.UserID)
		}
	})

	t.Run("reset: password alone, then enrol again", func(t *testing.T) {
		r := e.gw("POST", adminPath(alice.UserID, "reset"), boss.AccessToken, nil)
		expect(t, r, 200, "")
		if r.Body["had_2fa"] != true {
			t.Fatalf("reset = %s", r.Raw)
		}
		login := e.gw("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": alice.Localpart}, "password": alice.Password})
		expect(t, login, 200, "")
		again := e.enrolUser(&dendrite.User{UserID: alice.UserID, Localpart: alice.Localpart, Password: alice.Password,
			AccessToken: login.str("access_token"), DeviceID: login.str("device_id")})
		alice.secret = again.secret
		r = e.gw("GET", adminPath(alice.UserID, ""), boss.AccessToken, nil)
		if got := auditDetails(r); !containsString(got, "admin_reset by "+boss.UserID) || r.Body["enabled"] != true {
			t.Fatalf("after reset and re-enrolment: %s", r.Raw)
		}
	})

	t.Run("a scoped admin stays in scope", func(t *testing.T) {
		lead := tesths.RegisterUser(t, e.hs, "lead")
		member := e.enrol("team-a")
		expect(t, e.gw("GET", adminPath(alice.UserID, ""), lead.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("POST", adminPath(alice.UserID, "reset"), lead.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("POST", adminPath(alice.UserID, "unlock"), lead.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("GET", admin.APIPrefix+"audit?user="+url.QueryEscape(alice.UserID), lead.AccessToken, nil), 403, "M_FORBIDDEN")
		expect(t, e.gw("GET", admin.APIPrefix+"counts", lead.AccessToken, nil), 403, "M_FORBIDDEN")
		r := e.gw("GET", admin.APIPrefix+"users", lead.AccessToken, nil)
		expect(t, r, 200, "")
		if !strings.Contains(string(r.Raw), member.UserID) || strings.Contains(string(r.Raw), alice.UserID) {
			t.Fatalf("scoped list = %s; want team-a only", r.Raw)
		}
		r = e.gw("GET", admin.APIPrefix+"audit", lead.AccessToken, nil)
		if strings.Contains(string(r.Raw), alice.UserID) || !strings.Contains(string(r.Raw), member.UserID) {
			t.Fatalf("scoped audit = %s; want team-a's events only", r.Raw)
		}
		expect(t, e.gw("POST", adminPath(member.UserID, "reset"), lead.AccessToken, nil), 200, "")
		r = e.gw("GET", adminPath(member.UserID, ""), lead.AccessToken, nil)
		if got := auditDetails(r); len(got) == 0 || got[0] != "admin_reset by "+lead.UserID {
			t.Fatalf("team-a events = %v; want the reset by %s first", got, lead.UserID)
		}
		if ok, _ := e.acc.Enabled(context.Background(), alice.UserID); !ok {
			t.Fatal("alice lost 2FA to a scoped admin")
		}
	})

	t.Run("the static admin token", func(t *testing.T) {
		expect(t, e.gw("GET", admin.APIPrefix+"counts", adminToken, nil), 200, "")
		expect(t, e.gw("POST", adminPath(alice.UserID, "unlock"), adminToken, nil), 200, "")
		r := e.gw("GET", admin.APIPrefix+"audit?kind=unlock&limit=1", adminToken, nil)
		if got := auditDetails(r); len(got) != 1 || got[0] != "unlock by admin token" {
			t.Fatalf("events = %v", got)
		}
	})
}

// provider calls the provider API with secret.
func (e *env) provider(method, userID, action, secret string, body any) resp {
	e.t.Helper()
	p := provider.Prefix + "users/" + url.PathEscape(userID)
	if action != "" {
		p += "/" + action
	}
	return e.gw(method, p, secret, body)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestProviderAPIE2E(t *testing.T) {
	e := newAdminEnv(t)
	u := e.enrol("prov")
	plain := tesths.RegisterUser(t, e.hs, "provplain")

	r := e.provider("GET", u.UserID, "", providerSecret, nil)
	expect(t, r, 200, "")
	if r.Body["enabled"] != true {
		t.Fatalf("enabled = %s", r.Raw)
	}
	if r = e.provider("GET", plain.UserID, "", providerSecret, nil); r.Body["enabled"] != false {
		t.Fatalf("enabled (plain) = %s", r.Raw)
	}
	expect(t, e.provider("GET", u.UserID, "", "wrong-secret", nil), 401, "M_UNKNOWN_TOKEN")
	expect(t, e.provider("GET", u.UserID, "", "", nil), 401, "M_UNKNOWN_TOKEN")
	expect(t, e.provider("GET", u.UserID, "", u.AccessToken, nil), 401, "M_UNKNOWN_TOKEN")

	code := e.code(u)
	expect(t, e.provider("POST", u.UserID, "verify", "wrong-secret", map[string]any{"code": code}), 401, "M_UNKNOWN_TOKEN")
	r = e.provider("POST", u.UserID, "verify", providerSecret, map[string]any{"code": code})
	expect(t, r, 200, "")
	if r.Body["valid"] != true {
		t.Fatalf("verify = %s", r.Raw)
	}
	expect(t, e.provider("POST", u.UserID, "verify", providerSecret, map[string]any{"code": code}), 403, "M_FORBIDDEN")
	rc := u.recovery[0]
	expect(t, e.provider("POST", u.UserID, "verify", providerSecret, map[string]any{"code": rc}), 200, "")
	expect(t, e.provider("POST", u.UserID, "verify", providerSecret, map[string]any{"code": rc}), 403, "M_FORBIDDEN")
	expect(t, e.provider("POST", plain.UserID, "verify", providerSecret, map[string]any{"code": "123456"}), 400, "M_INVALID_PARAM")
	expect(t, e.provider("POST", "not-a-user", "verify", providerSecret, map[string]any{"code": "123456"}), 400, "M_INVALID_PARAM")
}

// TestAdminOffByDefault: without configuration both APIs answer 404.
func TestAdminOffByDefault(t *testing.T) {
	e := newFast(t)
	for _, p := range []string{admin.APIPrefix + "users", admin.PagePath, provider.Prefix + "users/@a:x"} {
		r := e.do("GET", p, adminToken, nil)
		if r.Status != 404 || r.str("errcode") != "M_UNRECOGNIZED" {
			t.Errorf("GET %s = %d %s; want 404 M_UNRECOGNIZED", p, r.Status, r.Raw)
		}
	}
}
