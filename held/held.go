package held

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Homeserver is what the keeper needs of the homeserver.
type Homeserver interface {
	Logout(ctx context.Context, accessToken string) error
}

// Sealer encrypts a held login for its user (account.SecretBox).
type Sealer interface {
	Seal(owner string, plain []byte) ([]byte, error)
	Open(owner, keyID string, sealed []byte) ([]byte, error)
	KeyID() string
}

// Store is what the keeper needs of the session store.
type Store interface {
	CreateSession(ctx context.Context, s storage.UIASession) error
	TakeSession(ctx context.Context, id string) (storage.UIASession, error)
	UserSessions(ctx context.Context, userID string, kind storage.SessionKind, now time.Time) ([]storage.UIASession, error)
	ExpiredSessions(ctx context.Context, now time.Time, limit int) ([]storage.UIASession, error)
}

// Config bounds held logins.
type Config struct {
	// LoginTTL is how long a held login waits for its second factor;
	// TokenTTL how long a login token waits to be redeemed.
	LoginTTL, TokenTTL time.Duration
	// MaxPerUser is how many logins a user may have waiting for a second
	// factor at once (a new one retires the oldest); default 3.
	MaxPerUser int
	// SweepInterval is how often Run sweeps; default 10s.
	SweepInterval time.Duration
	// Observe, when set, hears "started", "released" and "expired".
	Observe func(event string)
}

// Keeper keeps held logins.
type Keeper struct {
	cfg    Config
	hs     Homeserver
	store  Store
	box    Sealer
	engine *uia.Engine
	log    logrus.FieldLogger
	now    func() time.Time
}

// New returns a keeper; engine runs the sessions, now is the clock.
func New(cfg Config, hs Homeserver, store Store, box Sealer, engine *uia.Engine, log logrus.FieldLogger, now func() time.Time) *Keeper {
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = 3
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Second
	}
	return &Keeper{cfg: cfg, hs: hs, store: store, box: box, engine: engine, log: log, now: now}
}

// Origin is where a login started, as the gateway saw it.
type Origin struct {
	Addr string `json:"addr"`
	UA   string `json:"ua"`
}

// Envelope is what a held session seals: the homeserver's login response and
// where the sign-in started.
type Envelope struct {
	Login json.RawMessage `json:"login"`
	Origin
}

func owner(userID string) string { return "held-login:" + userID }

// seal encrypts a login response: key ID, a NUL, the ciphertext.
func (k *Keeper) seal(userID string, body []byte, o Origin) ([]byte, error) {
	env, err := json.Marshal(Envelope{Login: body, Origin: o})
	if err != nil {
		return nil, err
	}
	sealed, err := k.box.Seal(owner(userID), env)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(k.box.KeyID()), 0), sealed...), nil
}

// Open decrypts a held session's data.
func (k *Keeper) Open(s *uia.Session) (Envelope, error) {
	keyID, sealed, ok := bytes.Cut(s.Data, []byte{0})
	if !ok {
		return Envelope{}, errors.New("held: malformed held login")
	}
	plain, err := k.box.Open(owner(s.UserID), string(keyID), sealed)
	if err != nil {
		return Envelope{}, err
	}
	var env Envelope
	if err := json.Unmarshal(plain, &env); err != nil || len(env.Login) == 0 {
		return Envelope{}, errors.New("held: malformed held login")
	}
	return env, nil
}

// Hold starts a session of kind (storage.KindHeldLogin for /login,
// storage.KindSignIn for the sign-in page) holding body, the homeserver's
// login response for userID, that needs one of flows; done, when not empty,
// is a stage already completed (the password). Then it retires the user's
// oldest waiting logins past MaxPerUser.
func (k *Keeper) Hold(ctx context.Context, kind storage.SessionKind, userID string, flows [][]string, done string, body []byte, o Origin) (*uia.Session, error) {
	sealed, err := k.seal(userID, body, o)
	if err != nil {
		return nil, err
	}
	req := uia.Request{Kind: kind, Method: http.MethodPost, Path: "/login", UserID: userID}
	s, err := k.engine.Start(ctx, req, flows, "", sealed, k.cfg.LoginTTL)
	if err == nil && done != "" {
		err = k.engine.MarkCompleted(ctx, s, done)
	}
	if err != nil {
		return nil, err
	}
	k.limit(ctx, userID)
	k.observe("started")
	return s, nil
}

func (k *Keeper) observe(event string) {
	if k.cfg.Observe != nil {
		k.cfg.Observe(event)
	}
}

// Release consumes s and returns the login response it held: exactly once.
func (k *Keeper) Release(ctx context.Context, s *uia.Session) ([]byte, error) {
	taken, err := k.engine.Finish(ctx, s)
	if err != nil {
		return nil, err
	}
	return k.Released(taken)
}

// Released returns the login response held by taken, a session already
// consumed (by uia.Engine.AttemptFinish, say): Release's second half.
func (k *Keeper) Released(taken *uia.Session) ([]byte, error) {
	env, err := k.Open(taken)
	if err != nil {
		return nil, errors.Join(errors.New("held: opening a held login"), err)
	}
	k.observe("released")
	return env.Login, nil
}

// Drop consumes s and logs its login out at the homeserver (a lockout, a
// failure): the one way a held login ends early. A logout that fails for a
// reason that may pass is retried by the sweeper.
func (k *Keeper) Drop(ctx context.Context, s *uia.Session, log logrus.FieldLogger) {
	taken, err := k.engine.Finish(ctx, s)
	if err != nil {
		return // released or dropped meanwhile
	}
	k.retire(context.WithoutCancel(ctx), taken.UIASession, log, "dropped")
}

// errUnusable marks a held login that no retry can log out.
var errUnusable = errors.New("held: held login cannot be opened")

// retryLimit is how long past its expiry a held login whose logout keeps
// failing (the homeserver is unreachable, say) is retried by the sweeper.
const retryLimit = 24 * time.Hour

// retire logs out the login of a taken session, and logs what happened. When
// the logout fails for a reason that may pass (the homeserver is unreachable
// or overloaded, the request was cancelled), the session goes back into the
// store, expired, so the sweeper tries again; it reports that.
func (k *Keeper) retire(ctx context.Context, s storage.UIASession, log logrus.FieldLogger, why string) (requeued bool) {
	l := log.WithField("user_id", s.UserID)
	err := k.logout(ctx, s)
	if err == nil {
		l.Info("held login " + why + "; logged out at the homeserver")
		return false
	}
	_, refused := httperr.HomeserverRefused(err)
	final := errors.Is(err, errUnusable) || refused
	now := k.now()
	if final || now.Sub(s.ExpiresAt) > retryLimit {
		l.WithError(err).Error("held login " + why + "; logging it out failed for good")
		return false
	}
	if s.ExpiresAt.After(now) {
		s.ExpiresAt = now // never usable again, only sweepable
	}
	if cerr := k.store.CreateSession(ctx, s); cerr != nil {
		l.WithError(errors.Join(err, cerr)).Error("held login " + why + "; logging it out failed and it could not be requeued")
		return false
	}
	l.WithError(err).Warn("held login " + why + "; logging it out failed, the sweeper retries")
	return true
}

func (k *Keeper) logout(ctx context.Context, s storage.UIASession) error {
	if len(s.Data) == 0 {
		return nil
	}
	env, err := k.Open(&uia.Session{UIASession: s})
	if err != nil {
		return errors.Join(errUnusable, err)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(env.Login, &resp); err != nil || resp.AccessToken == "" {
		return fmt.Errorf("%w: no access token", errUnusable)
	}
	return k.hs.Logout(ctx, resp.AccessToken)
}

// limit retires userID's oldest logins waiting for a second factor (/login
// and the sign-in page alike) past MaxPerUser: repeated password logins
// cannot pile devices up in the user's device list.
func (k *Keeper) limit(ctx context.Context, userID string) {
	ctx = context.WithoutCancel(ctx)
	var waiting []storage.UIASession
	for _, kind := range []storage.SessionKind{storage.KindHeldLogin, storage.KindSignIn} {
		list, err := k.store.UserSessions(ctx, userID, kind, k.now())
		if err != nil {
			k.log.WithError(err).Error("listing held logins")
			return
		}
		waiting = append(waiting, list...)
	}
	slices.SortStableFunc(waiting, func(a, b storage.UIASession) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for i := 0; i < len(waiting)-k.cfg.MaxPerUser; i++ {
		if taken, err := k.store.TakeSession(ctx, waiting[i].ID); err == nil {
			k.retire(ctx, taken, k.log, "retired (too many waiting)")
		}
	}
}

// IsHeld reports whether sessions of kind hold a homeserver login.
func IsHeld(kind storage.SessionKind) bool {
	return kind == storage.KindHeldLogin || kind == storage.KindSignIn || kind == storage.KindLoginToken
}

// Sweep deletes expired sessions and logs out the held logins among them.
func (k *Keeper) Sweep(ctx context.Context) {
	for {
		expired, err := k.store.ExpiredSessions(ctx, k.now(), 100)
		if err != nil {
			k.log.WithError(err).Error("listing expired sessions")
			return
		}
		requeued := false
		for _, s := range expired {
			taken, err := k.store.TakeSession(ctx, s.ID)
			if err == nil && IsHeld(taken.Kind) {
				k.observe("expired")
				requeued = k.retire(ctx, taken, k.log, "expired") || requeued
			} // else another replica or request took it
		}
		// A requeued login would come straight back: leave it to the next sweep.
		if len(expired) < 100 || requeued {
			return
		}
	}
}

// Run sweeps until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.cfg.SweepInterval)
	defer t.Stop()
	for {
		k.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Errors of RedeemToken.
var (
	// ErrNotOurs: a login token the keeper did not issue (it goes to the homeserver).
	ErrNotOurs = errors.New("held: not a login token of the gateway")
	// ErrExpiredToken: the keeper's token, expired (its login is logged out).
	ErrExpiredToken = errors.New("held: expired login token")
)

// tokenSessionID is the session ID a login token is stored under: its
// SHA-256, so the database never holds a usable token.
func tokenSessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "login-token:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// IssueToken holds body, userID's login response, behind a new single-use
// login token (256 random bits) valid for TokenTTL.
func (k *Keeper) IssueToken(ctx context.Context, userID string, body []byte, o Origin) (string, error) {
	token := httpx.RandomToken(32)
	sealed, err := k.seal(userID, body, o)
	if err != nil {
		return "", err
	}
	req := uia.Request{Kind: storage.KindLoginToken, Method: http.MethodPost, Path: "/login/token", UserID: userID}
	if _, err := k.engine.Start(ctx, req, [][]string{{string(mautrix.AuthTypeToken)}}, tokenSessionID(token), sealed, k.cfg.TokenTTL); err != nil {
		return "", err
	}
	return token, nil
}

// RedeemToken exchanges a login token for the login it holds, exactly once
// (taking the session is atomic). Errors: ErrNotOurs, ErrExpiredToken.
func (k *Keeper) RedeemToken(ctx context.Context, token string, log logrus.FieldLogger) (body []byte, userID string, err error) {
	taken, err := k.store.TakeSession(ctx, tokenSessionID(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "", ErrNotOurs
	}
	if err != nil {
		return nil, "", err
	}
	if taken.Kind != storage.KindLoginToken || !k.now().Before(taken.ExpiresAt) {
		k.retire(context.WithoutCancel(ctx), taken, log, "redeemed too late")
		return nil, "", ErrExpiredToken
	}
	env, err := k.Open(&uia.Session{UIASession: taken})
	if err != nil {
		return nil, "", errors.Join(errors.New("held: opening a held login"), err)
	}
	return env.Login, taken.UserID, nil
}
