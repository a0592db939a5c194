package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Held login responses (the homeserver's access token, waiting for the second
// factor or for a loginToken to be redeemed) are kept in UIA sessions whose
// path is one of these markers, sealed with the secret box for their user.
const (
	heldLoginPath = "/login"
	heldTokenPath = "/login/token"
)

func heldOwner(userID string) string { return "held-login:" + userID }

// heldEnvelope is what a held session seals: the homeserver's login
// response and where the sign-in started (shown on the fallback page).
type heldEnvelope struct {
	Login json.RawMessage `json:"login"`
	Addr  string          `json:"addr"`
	UA    string          `json:"ua"`
}

// sealHeld encrypts a held login response with r's client address and user
// agent: key ID, a NUL, the ciphertext.
func (g *Gateway) sealHeld(r *http.Request, userID string, body []byte) ([]byte, error) {
	env, err := json.Marshal(heldEnvelope{Login: body, Addr: g.proxies.ClientAddr(r), UA: r.Header.Get("User-Agent")})
	if err != nil {
		return nil, err
	}
	sealed, err := g.box.Seal(heldOwner(userID), env)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(g.box.KeyID()), 0), sealed...), nil
}

// openHeldEnvelope decrypts a held session's data.
func (g *Gateway) openHeldEnvelope(userID string, data []byte) (heldEnvelope, error) {
	keyID, sealed, ok := bytes.Cut(data, []byte{0})
	if !ok {
		return heldEnvelope{}, errors.New("gateway: malformed held login")
	}
	plain, err := g.box.Open(heldOwner(userID), string(keyID), sealed)
	if err != nil {
		return heldEnvelope{}, err
	}
	var env heldEnvelope
	if err := json.Unmarshal(plain, &env); err != nil || len(env.Login) == 0 {
		return heldEnvelope{}, errors.New("gateway: malformed held login")
	}
	return env, nil
}

// openHeld returns the held login response.
func (g *Gateway) openHeld(userID string, data []byte) ([]byte, error) {
	env, err := g.openHeldEnvelope(userID, data)
	return env.Login, err
}

// heldRetryLimit is how long past its expiry a held login whose logout keeps
// failing (the homeserver is unreachable, say) is retried by the sweeper.
const heldRetryLimit = 24 * time.Hour

// errHeldUnusable marks a held login that no retry can log out.
var errHeldUnusable = errors.New("gateway: held login cannot be opened")

// discardHeld logs the held access token out upstream, so a login that was
// abandoned, expired or locked out leaves no usable token behind.
func (g *Gateway) discardHeld(ctx context.Context, s storage.UIASession) error {
	if len(s.Data) == 0 {
		return nil
	}
	body, err := g.openHeld(s.UserID, s.Data)
	if err != nil {
		return errors.Join(errHeldUnusable, err)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.AccessToken == "" {
		return fmt.Errorf("%w: no access token", errHeldUnusable)
	}
	return g.hs.Logout(ctx, resp.AccessToken)
}

// retireHeld logs out a held login whose session has been taken. When the
// logout fails for a reason that may pass (the homeserver is unreachable or
// overloaded, the request was cancelled), the session goes back into the
// store, expired, so the sweeper tries again later instead of leaving the
// token alive for good; requeued says so.
func (g *Gateway) retireHeld(ctx context.Context, s storage.UIASession) (requeued bool, err error) {
	err = g.discardHeld(ctx, s)
	if err == nil || errors.Is(err, errHeldUnusable) {
		return false, err
	}
	var re mautrix.RespError
	if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests {
		return false, err // the homeserver refuses it for good
	}
	now := g.now()
	if now.Sub(s.ExpiresAt) > heldRetryLimit {
		return false, fmt.Errorf("giving up after %s: %w", heldRetryLimit, err)
	}
	if s.ExpiresAt.After(now) {
		s.ExpiresAt = now // never usable again, only sweepable
	}
	if cerr := g.store.CreateSession(context.WithoutCancel(ctx), s); cerr != nil {
		return false, errors.Join(err, cerr)
	}
	return true, err
}

// limitHeld retires userID's oldest held logins (password right, second
// factor pending; /login and the sign-in page alike) past MaxHeld, logging
// their devices out upstream: repeated password logins cannot pile devices up
// in the user's device list.
func (g *Gateway) limitHeld(r *http.Request, userID string) {
	ctx := context.WithoutCancel(r.Context())
	var held []storage.UIASession
	for _, kind := range []storage.SessionKind{storage.KindHeldLogin, storage.KindSignIn} {
		list, err := g.store.UserSessions(ctx, userID, kind, g.now())
		if err != nil {
			httpx.Logger(r).WithError(err).Error("listing held logins")
			return
		}
		held = append(held, list...)
	}
	slices.SortStableFunc(held, func(a, b storage.UIASession) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for i := 0; i < len(held)-g.cfg.MaxHeld; i++ {
		taken, err := g.store.TakeSession(ctx, held[i].ID)
		if err != nil {
			continue // released, expired or retired meanwhile
		}
		again, err := g.retireHeld(ctx, taken)
		l := httpx.Logger(r).WithField("user_id", userID)
		switch {
		case again:
			l.WithError(err).Warn("logging out a retired held login failed; the sweeper retries")
		case err != nil:
			l.WithError(err).Error("logging out a retired held login")
		default:
			l.Info("oldest held login retired (too many pending logins)")
		}
	}
}

// isHeldKind reports whether sessions of kind hold a homeserver login (to be
// logged out when they end unused).
func isHeldKind(kind storage.SessionKind) bool {
	return kind == storage.KindHeldLogin || kind == storage.KindSignIn || kind == storage.KindLoginToken
}

// Sweep deletes expired sessions and logs out the held logins among them.
func (g *Gateway) Sweep(ctx context.Context) {
	for {
		expired, err := g.store.ExpiredSessions(ctx, g.now(), 100)
		if err != nil {
			g.log.WithError(err).Error("listing expired sessions")
			return
		}
		requeued := false
		for _, s := range expired {
			taken, err := g.store.TakeSession(ctx, s.ID)
			if err != nil {
				continue // another replica or request took it
			}
			if isHeldKind(taken.Kind) {
				again, err := g.retireHeld(ctx, taken)
				requeued = requeued || again
				switch {
				case again:
					g.log.WithError(err).WithField("user_id", taken.UserID).Warn("logging out an expired held login failed; retrying at the next sweep")
				case err != nil:
					g.log.WithError(err).WithField("user_id", taken.UserID).Error("logging out an expired held login")
				default:
					g.log.WithField("user_id", taken.UserID).Info("expired held login logged out upstream")
				}
			}
		}
		// A requeued login would come straight back: leave it to the next sweep.
		if len(expired) < 100 || requeued {
			return
		}
	}
}
