package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// oauthTests are the OAuthStore cases of the suite.
var oauthTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"OAuthClients", testOAuthClients},
	{"OAuthCodes", testOAuthCodes},
	{"OAuthCodeTakeConcurrent", testOAuthCodeTake},
	{"OAuthGrants", testOAuthGrants},
	{"OAuthRotateConcurrent", testOAuthRotate},
}

func testOAuthClients(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if _, err := s.OAuthClient(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown client: %v", err)
	}
	c := storage.OAuthClient{ID: "c1", Metadata: []byte(`{"client_uri":"https://app.example"}`), CreatedAt: t0}
	if err := s.PutOAuthClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOAuthClient(ctx, c); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the same ID twice: %v", err)
	}
	got, err := s.OAuthClient(ctx, "c1")
	if err != nil || got.ID != "c1" || !bytes.Equal(got.Metadata, c.Metadata) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func oauthCode(hash string, expires time.Time) storage.OAuthCode {
	return storage.OAuthCode{Hash: []byte(hash), ClientID: "c1", RedirectURI: "https://app.example/cb", Challenge: "ch",
		Scope: "urn:matrix:client:api:*", UserID: alice, DeviceID: "DEV", Login: []byte("sealed"), CreatedAt: t0, ExpiresAt: expires}
}

func testOAuthCodes(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if err := s.PutOAuthCode(ctx, oauthCode("h1", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOAuthCode(ctx, oauthCode("h1", t0.Add(time.Minute))); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the same hash twice: %v", err)
	}
	if err := s.PutOAuthCode(ctx, oauthCode("h2", t0.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	expired, err := s.ExpiredOAuthCodes(ctx, t0, 10)
	if err != nil || len(expired) != 1 || string(expired[0].Hash) != "h2" {
		t.Fatalf("expired: %+v, %v", expired, err)
	}
	got, err := s.TakeOAuthCode(ctx, []byte("h1"))
	want := oauthCode("h1", t0.Add(time.Minute))
	if err != nil || got.ClientID != want.ClientID || got.RedirectURI != want.RedirectURI || got.Challenge != want.Challenge ||
		got.Scope != want.Scope || got.UserID != alice || got.DeviceID != "DEV" || string(got.Login) != "sealed" ||
		!got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := s.TakeOAuthCode(ctx, []byte("h1")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a code taken twice: %v", err)
	}
}

func testOAuthCodeTake(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if err := s.PutOAuthCode(ctx, oauthCode("h", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	wins := concurrently(16, func() bool {
		_, err := s.TakeOAuthCode(ctx, []byte("h"))
		return err == nil
	})
	if wins != 1 {
		t.Fatalf("%d callers took the one code", wins)
	}
}

func oauthGrant(id string) storage.OAuthGrant {
	return storage.OAuthGrant{ID: id, ClientID: "c1", UserID: alice, DeviceID: "DEV", Scope: "s",
		RefreshHash: []byte("r-" + id), AccessHash: []byte("a-" + id), Login: []byte("sealed"), CreatedAt: t0, UpdatedAt: t0}
}

func testOAuthGrants(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if err := s.PutOAuthGrant(ctx, oauthGrant("g1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOAuthGrant(ctx, oauthGrant("g1")); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the same ID twice: %v", err)
	}
	g, err := s.OAuthGrantByRefresh(ctx, []byte("r-g1"))
	if err != nil || g.ID != "g1" || g.DeviceID != "DEV" || string(g.Login) != "sealed" || !g.CreatedAt.Equal(t0) {
		t.Fatalf("by refresh: %+v, %v", g, err)
	}
	if g, err := s.OAuthGrantByAccess(ctx, []byte("a-g1")); err != nil || g.ID != "g1" {
		t.Fatalf("by access: %+v, %v", g, err)
	}
	if ok, err := s.RotateOAuthRefresh(ctx, "g1", []byte("wrong"), []byte("r2"), t0); err != nil || ok {
		t.Fatalf("rotated from a wrong hash: %v, %v", ok, err)
	}
	if ok, err := s.RotateOAuthRefresh(ctx, "g1", []byte("r-g1"), []byte("r2"), t0.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("rotate: %v, %v", ok, err)
	}
	if _, err := s.OAuthGrantByRefresh(ctx, []byte("r-g1")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the old refresh hash still finds the grant: %v", err)
	}
	if g, err := s.OAuthGrantByRefresh(ctx, []byte("r2")); err != nil || !g.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after rotation: %+v, %v", g, err)
	}
	for _, c := range []struct {
		name    string
		refresh string
		ok      bool
	}{
		{"another refresh hash", "r-g1", false},
		{"the current refresh hash", "r2", true},
	} {
		ok, err := s.SetOAuthGrantLogin(ctx, "g1", []byte(c.refresh), []byte("a2"), []byte("sealed2"), t0.Add(2*time.Hour))
		if err != nil || ok != c.ok {
			t.Fatalf("set login, %s: %v, %v", c.name, ok, err)
		}
	}
	if _, err := s.OAuthGrantByAccess(ctx, []byte("a-g1")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the old access hash still finds the grant: %v", err)
	}
	if g, err := s.OAuthGrantByAccess(ctx, []byte("a2")); err != nil || string(g.Login) != "sealed2" || !g.UpdatedAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after the new login: %+v, %v", g, err)
	}
	if _, err := s.TakeOAuthGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeOAuthGrant(ctx, "g1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a grant taken twice: %v", err)
	}
	if _, err := s.OAuthGrantByAccess(ctx, []byte("a2")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a taken grant is still found: %v", err)
	}
}

func testOAuthRotate(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if err := s.PutOAuthGrant(ctx, oauthGrant("g")); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	wins := concurrently(16, func() bool {
		next := fmt.Sprintf("next-%d", n.Add(1))
		ok, err := s.RotateOAuthRefresh(ctx, "g", []byte("r-g"), []byte(next), t0)
		return err == nil && ok
	})
	if wins != 1 {
		t.Fatalf("%d callers rotated the one refresh token", wins)
	}
}
