package policy_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

type enrolled map[string]bool

func (e enrolled) Enabled(_ context.Context, userID string) (bool, error) { return e[userID], nil }

type admins map[string]bool

func (a admins) IsAdmin(_ context.Context, userID, token string) (bool, error) {
	return token == "tok-"+userID && a[userID], nil
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestEvaluate(t *testing.T) {
	selected := policy.Config{Enforce: policy.ModeSelected, Users: []string{"@listed:x"}, Patterns: []string{"@ops-*:x"},
		HomeserverAdmins: true, Exempt: []string{"@ops-bot:x"}, Grace: 48 * time.Hour}
	all := policy.Config{Enforce: policy.ModeAll, Exempt: []string{"@bot-*:x"}, Grace: 48 * time.Hour}
	cases := []struct {
		name    string
		cfg     policy.Config
		user    string
		token   bool
		later   time.Duration // the second evaluation, after the first
		want    policy.State  // of the second evaluation
		enabled bool
	}{
		{"none", policy.Config{}, "@a:x", false, 0, policy.State{}, false},
		{"all, first sighting", all, "@a:x", false, 0, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour)}, false},
		{"all, within the grace", all, "@a:x", false, 47 * time.Hour, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour)}, false},
		{"all, past the grace", all, "@a:x", false, 48 * time.Hour, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour), Enforced: true}, false},
		{"all, past the grace, enrolled", all, "@a:x", false, 49 * time.Hour, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour)}, true},
		{"all, exempt", all, "@bot-1:x", false, 49 * time.Hour, policy.State{}, false},
		{"selected, listed", selected, "@listed:x", false, 49 * time.Hour, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour), Enforced: true}, false},
		{"selected, pattern", selected, "@ops-1:x", false, 0, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour)}, false},
		{"selected, exempt beats pattern", selected, "@ops-bot:x", false, 49 * time.Hour, policy.State{}, false},
		{"selected, not selected", selected, "@other:x", true, 49 * time.Hour, policy.State{}, false},
		{"selected, admin with token", selected, "@admin:x", true, 49 * time.Hour, policy.State{Applies: true, GraceUntil: t0.Add(48 * time.Hour), Enforced: true}, false},
		{"selected, admin without token", selected, "@admin:x", false, 0, policy.State{AdminUnknown: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			now := t0
			p := policy.New(tc.cfg, store, enrolled{tc.user: tc.enabled}, admins{"@admin:x": true}, func() time.Time { return now })
			ctx := context.Background()
			if tc.token {
				ctx = policy.WithAccessToken(ctx, "tok-"+tc.user)
			}
			if _, err := p.Evaluate(ctx, tc.user); err != nil {
				t.Fatal(err)
			}
			now = t0.Add(tc.later)
			got, err := p.Evaluate(ctx, tc.user)
			if err != nil || got != tc.want {
				t.Fatalf("Evaluate = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPeekRecordsNothing(t *testing.T) {
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := t0
	p := policy.New(policy.Config{Enforce: policy.ModeAll, Grace: time.Hour}, store, enrolled{}, nil, func() time.Time { return now })
	ctx := context.Background()
	if st, err := p.Peek(ctx, "@a:x"); err != nil || !st.Applies || !st.GraceUntil.IsZero() || st.Enforced {
		t.Fatalf("Peek before a sighting = %+v, %v", st, err)
	}
	now = t0.Add(2 * time.Hour)
	if st, _ := p.Evaluate(ctx, "@a:x"); st.Enforced || !st.GraceUntil.Equal(now.Add(time.Hour)) {
		t.Fatalf("Peek started the grace period: %+v", st)
	}
	if st, _ := p.Peek(ctx, "@a:x"); st.DaysLeft(now) != 1 {
		t.Fatalf("DaysLeft = %d, want 1", st.DaysLeft(now))
	}
}

func TestEnrolledUserNotCachedWhenBlocked(t *testing.T) {
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := t0
	acc := enrolled{}
	p := policy.New(policy.Config{Enforce: policy.ModeAll}, store, acc, nil, func() time.Time { return now })
	ctx := context.Background()
	if st, _ := p.Evaluate(ctx, "@a:x"); !st.Enforced {
		t.Fatalf("no grace: %+v, want blocked", st)
	}
	acc["@a:x"] = true // enrols
	if st, _ := p.Evaluate(ctx, "@a:x"); st.Enforced {
		t.Fatalf("an enrolled user is still blocked: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  policy.Config
		n    int
	}{
		{"default", policy.Config{}, 0},
		{"all", policy.Config{Enforce: "all", Exempt: []string{"@bot-*:x"}, Grace: time.Hour}, 0},
		{"unknown mode", policy.Config{Enforce: "some"}, 1},
		{"selected nobody", policy.Config{Enforce: "selected"}, 1},
		{"bad entries", policy.Config{Enforce: "selected", Users: []string{"alice", "@a*:x"}, Patterns: []string{"x"}, Exempt: []string{"@:"}, Grace: -1}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if errs := tc.cfg.Validate(); len(errs) != tc.n {
				t.Fatalf("Validate = %v; want %d problems", errs, tc.n)
			}
		})
	}
}
