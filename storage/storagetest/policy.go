package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// policyTests are the PolicyStore cases of the suite.
var policyTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"PolicyFirstSeen", testFirstSeen},
	{"PolicyFirstSeenConcurrent", testFirstSeenConcurrent},
}

func testFirstSeen(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if _, err := s.FirstSeen(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FirstSeen of an unseen user: %v, want ErrNotFound", err)
	}
	if got, err := s.SeeUnderPolicy(ctx, alice, t0); err != nil || !got.Equal(t0) {
		t.Fatalf("first sighting: %v, %v", got, err)
	}
	if got, err := s.SeeUnderPolicy(ctx, alice, t0.Add(time.Hour)); err != nil || !got.Equal(t0) {
		t.Fatalf("a later sighting moved the first one: %v, %v", got, err)
	}
	if got, err := s.FirstSeen(ctx, alice); err != nil || !got.Equal(t0) {
		t.Fatalf("FirstSeen: %v, %v", got, err)
	}
	if _, err := s.FirstSeen(ctx, "@bob:example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another user was seen: %v", err)
	}
	if _, err := s.DeleteAll(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FirstSeen(ctx, alice); err != nil || !got.Equal(t0) {
		t.Fatalf("a 2FA reset restarted the grace period: %v, %v", got, err)
	}
}

func testFirstSeenConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	var seen [16]time.Time
	idx := make(chan int, len(seen))
	for k := range seen {
		idx <- k
	}
	concurrently(len(seen), func() bool {
		k := <-idx
		at, err := s.SeeUnderPolicy(ctx, alice, t0.Add(time.Duration(k)*time.Second))
		if err != nil {
			t.Error(err)
		}
		seen[k] = at
		return true
	})
	first, err := s.FirstSeen(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for k, at := range seen {
		if !at.Equal(first) {
			t.Fatalf("call %d saw %v, the store keeps %v", k, at, first)
		}
	}
}
