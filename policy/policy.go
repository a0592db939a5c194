package policy

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Store is what the policy needs of the store (storage.PolicyStore).
type Store interface {
	SeeUnderPolicy(ctx context.Context, userID string, now time.Time) (time.Time, error)
	FirstSeen(ctx context.Context, userID string) (time.Time, error)
}

// Enrolment says whether a user has 2FA on (account.Service).
type Enrolment interface {
	Enabled(ctx context.Context, userID string) (bool, error)
}

// AdminChecker says whether a user is an admin of the homeserver, asked with
// the user's own access token (admin.HomeserverChecker).
type AdminChecker interface {
	IsAdmin(ctx context.Context, userID, accessToken string) (bool, error)
}

// State is what the policy says of one user.
type State struct {
	// Applies says the policy requires 2FA of the user.
	Applies bool
	// GraceUntil is when the user's grace period ends (zero when it does
	// not apply, or, from Peek, before the gateway first saw the user).
	GraceUntil time.Time
	// Enforced says the grace period is over and the user has no 2FA: the
	// user is blocked until they enrol.
	Enforced bool
	// AdminUnknown says homeserver_admins is on, nothing else selects the
	// user, and no access token was at hand to ask the homeserver.
	AdminUnknown bool
}

// DaysLeft is how many days of the grace period are left at now, rounded up
// (0 once it is over).
func (s State) DaysLeft(now time.Time) int {
	left := s.GraceUntil.Sub(now)
	if !s.Applies || left <= 0 {
		return 0
	}
	return int((left + 24*time.Hour - 1) / (24 * time.Hour))
}

// cacheTTL bounds how long an answer is reused for a user. Only answers that
// cannot turn into a block by themselves are kept (a user outside the
// policy, one within the grace period, one enrolled): a user who enrols is
// let in at once; a user whose 2FA an admin resets is blocked within it.
const cacheTTL = time.Minute

// cacheMax bounds the cache; it is emptied when full.
const cacheMax = 100_000

type cached struct {
	state    State
	enrolled bool
	at       time.Time
}

// Policy evaluates the enforcement policy.
type Policy struct {
	cfg    Config
	store  Store
	acc    Enrolment
	admins AdminChecker
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

// New returns the policy of cfg; admins may be nil when cfg does not select
// homeserver admins.
func New(cfg Config, store Store, acc Enrolment, admins AdminChecker, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{cfg: cfg, store: store, acc: acc, admins: admins, now: now, cache: map[string]cached{}}
}

// On reports whether the policy requires 2FA of anyone (false for nil).
func (p *Policy) On() bool { return p != nil && p.cfg.On() }

type tokenKey struct{}

// WithAccessToken returns ctx carrying the user's access token, with which
// Evaluate asks the homeserver whether the user is one of its admins.
func WithAccessToken(ctx context.Context, accessToken string) context.Context {
	return context.WithValue(ctx, tokenKey{}, accessToken)
}

// Selected reports whether the lists select userID (exemptions first) and,
// when they do not decide, whether the homeserver must be asked.
func (p *Policy) selected(userID string) (yes, askHomeserver bool) {
	match := func(list []string) bool {
		return slices.ContainsFunc(list, func(pat string) bool { return canonical.Glob(pat, userID) })
	}
	switch {
	case !p.cfg.On() || match(p.cfg.Exempt):
		return false, false
	case p.cfg.Enforce == ModeAll || slices.Contains(p.cfg.Users, userID) || match(p.cfg.Patterns):
		return true, false
	}
	return false, p.cfg.HomeserverAdmins
}

// Evaluate says whether the policy applies to userID and whether the user
// is blocked, recording the first sighting under the policy (the grace
// period starts then). With homeserver_admins on, the homeserver is asked
// with the token WithAccessToken put in ctx; without one, a user only it
// could select is reported AdminUnknown and not under the policy. Errors are
// the store's or the homeserver's.
func (p *Policy) Evaluate(ctx context.Context, userID string) (State, error) {
	return p.evaluate(ctx, userID, true)
}

// Peek is Evaluate without recording a sighting (admin status): GraceUntil
// is zero for a user not seen under the policy yet.
func (p *Policy) Peek(ctx context.Context, userID string) (State, error) {
	return p.evaluate(ctx, userID, false)
}

func (p *Policy) evaluate(ctx context.Context, userID string, see bool) (State, error) {
	if !p.On() {
		return State{}, nil
	}
	now := p.now()
	if st, ok := p.fromCache(userID, now, see); ok {
		return st, nil
	}
	applies, unknown, err := p.applies(ctx, userID)
	if err != nil || !applies {
		if err == nil && !unknown {
			p.remember(userID, cached{at: now}, see)
		}
		return State{AdminUnknown: unknown}, err
	}
	first, err := p.firstSeen(ctx, userID, now, see)
	if err != nil {
		return State{}, err
	}
	st := State{Applies: true}
	if !first.IsZero() {
		st.GraceUntil = first.Add(p.cfg.Grace)
	}
	if first.IsZero() || now.Before(st.GraceUntil) {
		p.remember(userID, cached{state: st, at: now}, see)
		return st, nil
	}
	enrolled, err := p.acc.Enabled(ctx, userID)
	if err != nil {
		return State{}, err
	}
	st.Enforced = !enrolled
	if enrolled {
		p.remember(userID, cached{state: st, enrolled: true, at: now}, see)
	}
	return st, nil
}

// applies decides whether the policy selects userID, asking the homeserver
// when only it can tell and a token is at hand.
func (p *Policy) applies(ctx context.Context, userID string) (yes, unknown bool, err error) {
	yes, ask := p.selected(userID)
	if !ask {
		return yes, false, nil
	}
	token, _ := ctx.Value(tokenKey{}).(string)
	if token == "" || p.admins == nil {
		return false, true, nil
	}
	yes, err = p.admins.IsAdmin(ctx, userID, token)
	return yes, false, err
}

// firstSeen records (see) or reads the first sighting; zero when unseen.
func (p *Policy) firstSeen(ctx context.Context, userID string, now time.Time, see bool) (time.Time, error) {
	if see {
		return p.store.SeeUnderPolicy(ctx, userID, now)
	}
	first, err := p.store.FirstSeen(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, nil
	}
	return first, err
}

// fromCache returns a kept answer still good at now (Evaluate only).
func (p *Policy) fromCache(userID string, now time.Time, see bool) (State, bool) {
	if !see {
		return State{}, false
	}
	p.mu.Lock()
	c, ok := p.cache[userID]
	p.mu.Unlock()
	if !ok || now.Sub(c.at) >= cacheTTL || now.Before(c.at) {
		return State{}, false
	}
	if c.state.Applies && !c.enrolled && !now.Before(c.state.GraceUntil) {
		return State{}, false // the grace period ended meanwhile
	}
	return c.state, true
}

func (p *Policy) remember(userID string, c cached, see bool) {
	if !see {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cache) >= cacheMax {
		clear(p.cache)
	}
	p.cache[userID] = c
}
