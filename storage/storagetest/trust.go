package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// trustTests are the TrustStore cases of the suite.
var trustTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"TrustedClients", testTrustedClients},
	{"TrustedClientsEndWithDeleteAll", testTrustDeleteAll},
}

// trusted reports whether token from client is trusted for user at now.
func trusted(t *testing.T, s storage.Store, user, token, client string, now time.Time) bool {
	t.Helper()
	_, err := s.TrustedClientUntil(context.Background(), user, []byte(token), []byte(client), now)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func testTrustedClients(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	trust := func(user, token, client string, until time.Time, now time.Time) {
		t.Helper()
		if err := s.PutTrustedClient(ctx, storage.TrustedClient{TokenHash: []byte(token), ClientHash: []byte(client), UserID: user, Until: until}, now); err != nil {
			t.Fatal(err)
		}
	}
	trust(alice, "t1", "c1", t0.Add(5*time.Minute), t0)
	if until, err := s.TrustedClientUntil(ctx, alice, []byte("t1"), []byte("c1"), t0); err != nil || !until.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("TrustedClientUntil = %v, %v", until, err)
	}
	for name, ok := range map[string]bool{
		"another client":             trusted(t, s, alice, "t1", "c2", t0),
		"another token":              trusted(t, s, alice, "t2", "c1", t0),
		"another user":               trusted(t, s, "@bob:example.org", "t1", "c1", t0),
		"at the end of the window":   trusted(t, s, alice, "t1", "c1", t0.Add(5*time.Minute)),
		"after the end of the trust": trusted(t, s, alice, "t1", "c1", t0.Add(time.Hour)),
	} {
		if ok {
			t.Errorf("%s is trusted", name)
		}
	}
	trust(alice, "t1", "c1", t0.Add(10*time.Minute), t0.Add(time.Minute)) // renewed
	if !trusted(t, s, alice, "t1", "c1", t0.Add(8*time.Minute)) {
		t.Error("a renewed trust ended at the old time")
	}
	trust(alice, "t1", "c2", t0.Add(10*time.Minute), t0.Add(time.Minute))
	trust(alice, "t3", "c1", t0.Add(10*time.Minute), t0.Add(time.Minute))
	if n, err := s.ForgetTrustedToken(ctx, []byte("t1")); err != nil || n != 2 {
		t.Fatalf("ForgetTrustedToken = %d, %v; want 2", n, err)
	}
	if trusted(t, s, alice, "t1", "c1", t0.Add(2*time.Minute)) || !trusted(t, s, alice, "t3", "c1", t0.Add(2*time.Minute)) {
		t.Error("ForgetTrustedToken forgot the wrong trusts")
	}
}

func testTrustDeleteAll(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	for _, user := range []string{alice, "@bob:example.org"} {
		if err := s.PutTrustedClient(ctx, storage.TrustedClient{TokenHash: []byte(user), ClientHash: []byte("c"), UserID: user, Until: t0.Add(time.Hour)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if existed, err := s.DeleteAll(ctx, alice); err != nil || existed {
		t.Fatalf("DeleteAll of a user with only trusted clients = %v, %v; want false, nil", existed, err)
	}
	if trusted(t, s, alice, alice, "c", t0) {
		t.Error("a trusted client survived DeleteAll")
	}
	if !trusted(t, s, "@bob:example.org", "@bob:example.org", "c", t0) {
		t.Error("another user's trusted client was deleted")
	}
}
