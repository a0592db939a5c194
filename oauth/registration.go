package oauth

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// User registration (prompt=create): the authorization page can register a
// user at the homeserver when its POST /register answers a UIA challenge
// with a flow the page can complete, one of only m.login.dummy and
// m.login.registration_token stages (no CAPTCHA, e-mail or terms). The
// server metadata advertises prompt_values_supported ["create"] only then.

// Registration stages the page completes.
const (
	StageDummy             = "m.login.dummy"
	StageRegistrationToken = "m.login.registration_token"
)

// registrationTTL is how long a probe of the homeserver's registration is
// believed; probeTimeout bounds one probe.
const (
	registrationTTL = time.Minute
	probeTimeout    = 5 * time.Second
)

// Registration is whether the page can register users at the homeserver,
// and whether that takes a registration token.
type Registration struct {
	Possible bool
	Token    bool
}

// CompletableFlow is the flow of flows the page completes: only dummy and
// registration token stages, preferring one without a token; ok is false
// when there is none.
func CompletableFlow(flows []mautrix.UIAFlow) (stages []string, ok bool) {
	for _, wantToken := range []bool{false, true} {
		for _, f := range flows {
			s, token := completable(f)
			if len(s) > 0 && token == wantToken {
				return s, true
			}
		}
	}
	return nil, false
}

// completable is flow's stages when the page can complete every one (nil
// else), and whether one is the registration token.
func completable(f mautrix.UIAFlow) (stages []string, token bool) {
	for _, st := range f.Stages {
		switch string(st) {
		case StageDummy:
		case StageRegistrationToken:
			token = true
		default:
			return nil, false
		}
		stages = append(stages, string(st))
	}
	return stages, token
}

// regCache is the last probe of the homeserver's registration.
type regCache struct {
	mu   sync.Mutex
	val  Registration
	at   time.Time // of the probe; zero: never probed
	busy bool      // a refresh is running
	// first is held by the first probe, which the callers wait for.
	first sync.Mutex
}

// Registration reports whether the page can register users at the
// homeserver, from a probe believed for a minute: POST /register without
// auth must answer a UIA challenge with a completable flow; anything else
// (403 M_FORBIDDEN: registration off; the homeserver out of reach) is "not
// possible". The first probe runs at once; later, a stale answer is given
// while one refresh runs in the background, so the metadata stays cheap.
func (s *Server) Registration(ctx context.Context) Registration {
	c := &s.reg
	c.mu.Lock()
	val, at := c.val, c.at
	if at.IsZero() {
		c.mu.Unlock()
		return s.firstProbe(ctx)
	}
	if !c.busy && s.now().Sub(at) >= registrationTTL {
		c.busy = true
		go s.probeRegistration(context.WithoutCancel(ctx))
	}
	c.mu.Unlock()
	return val
}

// firstProbe probes once for every caller that comes before any answer.
func (s *Server) firstProbe(ctx context.Context) Registration {
	c := &s.reg
	c.first.Lock()
	defer c.first.Unlock()
	c.mu.Lock()
	val, at := c.val, c.at
	c.mu.Unlock()
	if !at.IsZero() {
		return val
	}
	// Not the caller's context: a client hanging up must not leave "not
	// possible" in the cache for a minute (the probe has its own timeout).
	return s.probeRegistration(context.WithoutCancel(ctx))
}

// probeRegistration asks the homeserver and keeps the answer.
func (s *Server) probeRegistration(ctx context.Context) Registration {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var val Registration
	res, err := s.hs.Register(ctx, homeserver.RegisterRequest{InhibitLogin: true})
	if err == nil && res.UserID != "" {
		s.log.WithField("user_id", res.UserID).Error("oauth: registration probe: the homeserver registered a user without any stage; registration from the authorization page stays off")
	}
	if err == nil && res.UIA != nil {
		if stages, ok := CompletableFlow(res.UIA.Flows); ok {
			val = Registration{Possible: true, Token: slices.Contains(stages, StageRegistrationToken)}
		}
	}
	if err != nil {
		s.log.WithError(err).Info("oauth: registration probe: not possible")
	}
	c := &s.reg
	c.mu.Lock()
	c.val, c.at, c.busy = val, s.now(), false
	c.mu.Unlock()
	return val
}

// wantsCreate reports whether an authorization request's prompt (a
// space-separated list) asks for user registration.
func wantsCreate(prompt string) bool {
	return slices.Contains(strings.Fields(prompt), "create")
}
