package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// rememberTests are the RememberStore cases of the suite.
var rememberTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"RememberedBrowsers", testBrowsers},
	{"BotTokens", testBotTokens},
	{"BotTokenTakeConcurrent", testBotTokenTake},
	{"BotTokenLimitConcurrent", testBotTokenLimit},
	{"BotTokensRewrap", testBotTokensRewrap},
}

const bob = "@bob:example.org"

func browser(user, hash string, at time.Time, ttl time.Duration) storage.RememberedBrowser {
	return storage.RememberedBrowser{Hash: []byte(hash), UserID: user, UserAgent: "UA " + hash, Addr: "192.0.2.1",
		CreatedAt: at, ExpiresAt: at.Add(ttl)}
}

func testBrowsers(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	for _, b := range []storage.RememberedBrowser{browser(alice, "a1", t0, time.Hour), browser(alice, "a2", t0.Add(time.Minute), time.Hour),
		browser(bob, "b1", t0, time.Hour)} {
		if err := s.PutBrowser(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutBrowser(ctx, browser(bob, "a1", t0, time.Hour)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a second browser with the same hash: %v, want ErrConflict", err)
	}
	got, err := s.Browser(ctx, alice, []byte("a1"), t0.Add(time.Minute))
	if err != nil || got.UserAgent != "UA a1" || got.Addr != "192.0.2.1" || !got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Browser = %+v, %v", got, err)
	}
	for name, check := range map[string]func() error{
		"another user's": func() error { _, err := s.Browser(ctx, bob, []byte("a1"), t0); return err },
		"expired":        func() error { _, err := s.Browser(ctx, alice, []byte("a1"), t0.Add(time.Hour)); return err },
		"unknown":        func() error { _, err := s.Browser(ctx, alice, []byte("zz"), t0); return err },
	} {
		if err := check(); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s browser: %v, want ErrNotFound", name, err)
		}
	}
	list, err := s.Browsers(ctx, alice, t0.Add(2*time.Minute))
	if err != nil || len(list) != 2 || string(list[0].Hash) != "a2" || string(list[1].Hash) != "a1" {
		t.Fatalf("Browsers = %+v, %v; want a2, a1", list, err)
	}
	if list, _ := s.Browsers(ctx, alice, t0.Add(time.Hour)); len(list) != 1 {
		t.Fatalf("Browsers after a1 expired = %d, want 1", len(list))
	}
	if ok, err := s.DeleteBrowser(ctx, bob, []byte("a2")); err != nil || ok {
		t.Fatalf("bob deleted alice's browser: %v, %v", ok, err)
	}
	if ok, err := s.DeleteBrowser(ctx, alice, []byte("a2")); err != nil || !ok {
		t.Fatalf("DeleteBrowser = %v, %v", ok, err)
	}
	if err := s.PutBrowser(ctx, browser(alice, "a3", t0.Add(2*time.Hour), time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBrowsers(ctx, alice); err != nil || n != 1 {
		t.Fatalf("DeleteBrowsers = %d, %v; want 1 (the expired a1 went when a3 was stored)", n, err)
	}
	if list, _ := s.Browsers(ctx, bob, t0); len(list) != 1 {
		t.Fatalf("bob's browsers after alice's were deleted: %d, want 1", len(list))
	}
}

func bot(user, id string, at time.Time) storage.BotToken {
	return storage.BotToken{ID: id, UserID: user, Name: "bot " + id, DeviceID: "DEV" + id, Hash: []byte("hash " + id),
		Secret: []byte("sealed " + id), KeyID: "k1", CreatedAt: at}
}

func testBotTokens(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if list, err := s.BotTokens(ctx, alice); err != nil || len(list) != 0 {
		t.Fatalf("no tokens: %v, %v", list, err)
	}
	for _, b := range []storage.BotToken{bot(alice, "2", t0.Add(time.Second)), bot(alice, "1", t0), bot(bob, "3", t0)} {
		if err := s.PutBotToken(ctx, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutBotToken(ctx, bot(bob, "1", t0), 0); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a second token with the same ID: %v, want ErrConflict", err)
	}
	list, err := s.BotTokens(ctx, alice)
	if err != nil || len(list) != 2 || list[0].ID != "1" || list[1].ID != "2" {
		t.Fatalf("BotTokens = %+v, %v; want 1, 2", list, err)
	}
	want := bot(alice, "1", t0)
	if g := list[0]; g.Name != want.Name || g.DeviceID != want.DeviceID || !bytes.Equal(g.Hash, want.Hash) ||
		!bytes.Equal(g.Secret, want.Secret) || g.KeyID != "k1" || !g.CreatedAt.Equal(t0) {
		t.Fatalf("stored %+v, read %+v", want, g)
	}
	if _, err := s.TakeBotToken(ctx, bob, "1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("bob took alice's token: %v", err)
	}
	if got, err := s.TakeBotToken(ctx, alice, "1"); err != nil || got.DeviceID != "DEV1" {
		t.Fatalf("TakeBotToken = %+v, %v", got, err)
	}
	if _, err := s.TakeBotToken(ctx, alice, "1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("taken twice: %v", err)
	}
}

func testBotTokenTake(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if err := s.PutBotToken(ctx, bot(alice, "1", t0), 0); err != nil {
		t.Fatal(err)
	}
	wins := concurrently(50, func() bool {
		_, err := s.TakeBotToken(ctx, alice, "1")
		return err == nil
	})
	if wins != 1 {
		t.Fatalf("%d of 50 concurrent revocations of one token won; want exactly 1", wins)
	}
}

// testBotTokenLimit: 30 concurrent puts under a limit of 3 store exactly 3,
// the rest ErrFull; another user and limit 0 are not held back.
func testBotTokenLimit(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	var n atomic.Int64
	wins := concurrently(30, func() bool {
		err := s.PutBotToken(ctx, bot(alice, fmt.Sprint("c", n.Add(1)), t0), 3)
		if err != nil && !errors.Is(err, storage.ErrFull) {
			t.Errorf("PutBotToken: %v, want nil or ErrFull", err)
		}
		return err == nil
	})
	if list, err := s.BotTokens(ctx, alice); wins != 3 || err != nil || len(list) != 3 {
		t.Fatalf("%d of 30 concurrent puts under a limit of 3 won, %d stored (%v); want 3", wins, len(list), err)
	}
	if err := s.PutBotToken(ctx, bot(bob, "b1", t0), 3); err != nil {
		t.Fatalf("another user's put: %v", err)
	}
	if err := s.PutBotToken(ctx, bot(alice, "over", t0), 0); err != nil {
		t.Fatalf("a put without a limit: %v", err)
	}
}

func testBotTokensRewrap(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	for _, b := range []storage.BotToken{bot(alice, "1", t0), bot(alice, "2", t0)} {
		if err := s.PutBotToken(ctx, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := s.KeyIDs(ctx); err != nil || !slices.Equal(ids, []string{"k1"}) {
		t.Fatalf("KeyIDs = %v, %v; want [k1]", ids, err)
	}
	var owners []string
	n, err := s.Rewrap(ctx, func(user string, sec []byte, keyID string) ([]byte, string, error) {
		owners = append(owners, user)
		return append([]byte("re "), sec...), "k2", nil
	}, "key_check", []byte("k2"))
	if err != nil || n != 2 || !slices.Equal(owners, []string{alice, alice}) {
		t.Fatalf("Rewrap = %d, %v, owners %v", n, err, owners)
	}
	list, _ := s.BotTokens(ctx, alice)
	for _, b := range list {
		if string(b.Secret) != "re sealed "+b.ID || b.KeyID != "k2" {
			t.Errorf("token %s after Rewrap: %q under %s", b.ID, b.Secret, b.KeyID)
		}
	}
}
