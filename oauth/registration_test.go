package oauth

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

func flowsOf(stages ...[]string) []mautrix.UIAFlow {
	var out []mautrix.UIAFlow
	for _, s := range stages {
		f := mautrix.UIAFlow{Stages: []mautrix.AuthType{}}
		for _, st := range s {
			f.Stages = append(f.Stages, mautrix.AuthType(st))
		}
		out = append(out, f)
	}
	return out
}

func TestCompletableFlow(t *testing.T) {
	cases := []struct {
		name  string
		flows []mautrix.UIAFlow
		want  []string
	}{
		{"dummy", flowsOf([]string{StageDummy}), []string{StageDummy}},
		{"token and dummy", flowsOf([]string{StageRegistrationToken, StageDummy}), []string{StageRegistrationToken, StageDummy}},
		{"token only", flowsOf([]string{StageRegistrationToken}), []string{StageRegistrationToken}},
		{"prefers no token", flowsOf([]string{StageRegistrationToken}, []string{StageDummy}), []string{StageDummy}},
		{"skips recaptcha", flowsOf([]string{"m.login.recaptcha", StageDummy}, []string{StageRegistrationToken}), []string{StageRegistrationToken}},
		{"e-mail", flowsOf([]string{"m.login.email.identity"}), nil},
		{"terms", flowsOf([]string{"m.login.terms", StageDummy}), nil},
		{"empty flow", flowsOf([]string{}), nil},
		{"none", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CompletableFlow(tc.flows)
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v %v; want %v", got, ok, tc.want)
			}
		})
	}
}

func TestWantsCreate(t *testing.T) {
	for prompt, want := range map[string]bool{"create": true, "login create": true, "": false, "login": false, "created": false, "CREATE": false} {
		if got := wantsCreate(prompt); got != want {
			t.Errorf("wantsCreate(%q) = %v", prompt, got)
		}
	}
}

// probeHS answers registration probes with answer and counts them.
type probeHS struct {
	Homeserver
	mu     sync.Mutex
	n      int
	answer func() (*homeserver.RegisterResult, error)
}

func (h *probeHS) Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error) {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
	if req != (homeserver.RegisterRequest{InhibitLogin: true}) {
		panic("a probe sends only inhibit_login")
	}
	return h.answer()
}

func (h *probeHS) count() int { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

// TestRegistrationProbe: the answer is the homeserver's, kept for a minute;
// a stale one is given while one refresh runs; refusals and outages are
// "not possible".
func TestRegistrationProbe(t *testing.T) {
	open := func() (*homeserver.RegisterResult, error) {
		return &homeserver.RegisterResult{UIA: &mautrix.RespUserInteractive{Flows: flowsOf([]string{StageRegistrationToken, StageDummy})}}, nil
	}
	closed := func() (*homeserver.RegisterResult, error) {
		return nil, mautrix.MForbidden.WithStatus(http.StatusForbidden)
	}
	now := time.Unix(1e9, 0)
	hs := &probeHS{answer: open}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := New(Config{}, nil, hs, nil, log, func() time.Time { return now })
	if got := s.Registration(t.Context()); got != (Registration{Possible: true, Token: true}) || hs.count() != 1 {
		t.Fatalf("first: %+v after %d probes", got, hs.count())
	}
	hs.answer = closed
	now = now.Add(30 * time.Second)
	if got := s.Registration(t.Context()); !got.Possible || hs.count() != 1 {
		t.Fatalf("within the minute: %+v after %d probes", got, hs.count())
	}
	now = now.Add(time.Minute)
	if got := s.Registration(t.Context()); !got.Possible {
		t.Fatalf("stale while refreshing: %+v", got)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got := s.Registration(t.Context()); !got.Possible {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refresh never landed")
		}
	}
	if hs.count() != 2 {
		t.Fatalf("%d probes; want 2", hs.count())
	}
	// Callers before the first answer share one probe.
	slow := &probeHS{answer: func() (*homeserver.RegisterResult, error) { time.Sleep(50 * time.Millisecond); return open() }}
	shared := New(Config{}, nil, slow, nil, log, nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); shared.Registration(t.Context()) }()
	}
	wg.Wait()
	if slow.count() != 1 {
		t.Fatalf("%d first probes; want 1", slow.count())
	}
	down := New(Config{}, nil, &probeHS{answer: func() (*homeserver.RegisterResult, error) { return nil, homeserver.ErrUnreachable }}, nil, log, nil)
	if got := down.Registration(t.Context()); got.Possible {
		t.Fatalf("homeserver down: %+v", got)
	}
}
