package storagetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// emailTests are the EmailStore cases of the suite.
var emailTests = []struct {
	name string
	fn   func(t *testing.T, f Factory)
}{
	{"EmailCodes", testEmailCodes},
	{"EmailCodeConcurrent", testEmailCodeConcurrent},
	{"UserEmails", testUserEmails},
}

func testEmailCodes(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	code := func(hash string, sent time.Time) storage.EmailCode {
		return storage.EmailCode{UserID: alice, Hash: []byte(hash), SentAt: sent, ExpiresAt: sent.Add(10 * time.Minute)}
	}
	if ok, err := s.PutEmailCode(ctx, code("h1", t0), time.Minute); err != nil || !ok {
		t.Fatalf("first code: %v, %v", ok, err)
	}
	if ok, err := s.PutEmailCode(ctx, code("h2", t0.Add(30*time.Second)), time.Minute); err != nil || ok {
		t.Fatalf("a second code within the minute was stored: %v, %v", ok, err)
	}
	if ok, _ := s.ConsumeEmailCode(ctx, alice, []byte("h2"), t0.Add(31*time.Second)); ok {
		t.Fatal("the refused second code works")
	}
	if ok, err := s.PutEmailCode(ctx, code("h3", t0.Add(time.Minute)), time.Minute); err != nil || !ok {
		t.Fatalf("a new code after the minute: %v, %v", ok, err)
	}
	if ok, _ := s.ConsumeEmailCode(ctx, alice, []byte("h1"), t0.Add(61*time.Second)); ok {
		t.Fatal("the replaced code still works")
	}
	if ok, _ := s.ConsumeEmailCode(ctx, "@bob:example.org", []byte("h3"), t0.Add(61*time.Second)); ok {
		t.Fatal("another user's code works")
	}
	if ok, _ := s.ConsumeEmailCode(ctx, alice, []byte("h3"), t0.Add(11*time.Minute)); ok {
		t.Fatal("an expired code works")
	}
	if ok, err := s.ConsumeEmailCode(ctx, alice, []byte("h3"), t0.Add(2*time.Minute)); err != nil || !ok {
		t.Fatalf("the current code: %v, %v", ok, err)
	}
	if ok, _ := s.ConsumeEmailCode(ctx, alice, []byte("h3"), t0.Add(2*time.Minute)); ok {
		t.Fatal("a code worked twice")
	}
	if ok, err := s.PutEmailCode(ctx, code("h4", t0.Add(2*time.Minute)), time.Minute); err != nil || !ok {
		t.Fatalf("a new code after the last was used: %v, %v", ok, err)
	}
}

func testEmailCodeConcurrent(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if ok, err := s.PutEmailCode(ctx, storage.EmailCode{UserID: alice, Hash: []byte("h"), SentAt: t0, ExpiresAt: t0.Add(time.Hour)}, time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	wins := concurrently(50, func() bool {
		ok, err := s.ConsumeEmailCode(ctx, alice, []byte("h"), t0.Add(time.Second))
		return err == nil && ok
	})
	if wins != 1 {
		t.Fatalf("%d of 50 concurrent uses of one e-mail code won; want exactly 1", wins)
	}
}

func testUserEmails(t *testing.T, f Factory) {
	s, _ := f(t)
	ctx := context.Background()
	if got, err := s.UserEmails(ctx, alice); err != nil || len(got) != 0 {
		t.Fatalf("unknown user: %v, %v", got, err)
	}
	want := []string{"alice@example.org", "a@example.net"}
	if err := s.PutUserEmails(ctx, alice, want, t0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UserEmails(ctx, alice); err != nil || !slices.Equal(got, want) {
		t.Fatalf("UserEmails = %v, %v; want %v", got, err, want)
	}
	if err := s.PutUserEmails(ctx, alice, []string{"new@example.org"}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UserEmails(ctx, alice); !slices.Equal(got, []string{"new@example.org"}) {
		t.Fatalf("after replacing: %v", got)
	}
	if err := s.PutUserEmails(ctx, alice, nil, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UserEmails(ctx, alice); len(got) != 0 {
		t.Fatalf("after forgetting: %v", got)
	}
}
