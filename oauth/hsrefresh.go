package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The homeserver's own refresh tokens (spec v1.3; Synapse has them when
// refreshable_access_token_lifetime is configured, Dendrite v0.15.2 has
// none). With HomeserverRefreshTokens on, the grant's login asks for one
// ("refresh_token": true, which Dendrite ignores). When the answer carries
// refresh_token (and expires_in_ms), the sealed login keeps it, the client
// is told expires_in, and the refresh_token grant renews the access token
// with the homeserver's POST /refresh: the gateway's refresh token rotates
// first (one conditional update decides which of two concurrent uses goes
// on), then the homeserver's pair, then the grant's login and access token
// hash, so IsGrantToken and revocation follow the new access token. A
// homeserver that gave no refresh token keeps the behaviour of token.go.
// Tested here against a fake homeserver only (hsrefresh_test.go): no
// Synapse runs in this project's tests.

// Refresher is what the server needs of a homeserver with refresh tokens
// (homeserver.Client); a Homeserver without these methods is treated as
// having none.
type Refresher interface {
	PasswordLoginRefresh(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string, refresh bool) (*mautrix.RespLogin, error)
	Refresh(ctx context.Context, refreshToken string) (*homeserver.Refreshed, error)
}

// GrantLogin logs userID in at the homeserver for a grant (the
// authorization page, after the password and the second factor), asking
// for the homeserver's refresh token when configured and possible. Errors
// are homeserver.Client.PasswordLogin's.
func (s *Server) GrantLogin(ctx context.Context, userID, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error) {
	if r, ok := s.hs.(Refresher); ok && s.cfg.HomeserverRefreshTokens {
		return r.PasswordLoginRefresh(ctx, userID, password, deviceID, displayName, true)
	}
	return s.hs.PasswordLogin(ctx, userID, password, deviceID, displayName)
}

// homeLoginOf is what the server keeps of login, answered at now.
func homeLoginOf(login *mautrix.RespLogin, now time.Time) homeLogin {
	h := homeLogin{UserID: string(login.UserID), DeviceID: string(login.DeviceID), AccessToken: login.AccessToken,
		RefreshToken: login.RefreshToken}
	if login.ExpiresInMS > 0 {
		h.ExpiresAt = now.Add(time.Duration(login.ExpiresInMS) * time.Millisecond)
	}
	return h
}

// expiresIn is the seconds left of login's access token (0: it does not
// expire, or has just expired: the client refreshes either way).
func (s *Server) expiresIn(login *homeLogin) int64 {
	if login.ExpiresAt.IsZero() {
		return 0
	}
	return max(int64(login.ExpiresAt.Sub(s.now())/time.Second), 1)
}

// refreshHome is the refresh_token grant of a grant whose homeserver login
// has a refresh token: rotate ours, renew the homeserver's, keep the new
// login. A homeserver that refuses its refresh token ends the grant; one
// out of reach gives the client its refresh token back.
func (s *Server) refreshHome(ctx context.Context, r Refresher, g storage.OAuthGrant, old []byte, login *homeLogin, l logrus.FieldLogger) (*tokenResponse, error) {
	nextToken := httpx.RandomToken(32)
	next := hash(nextToken)
	ok, err := s.store.RotateOAuthRefresh(ctx, g.ID, old, next, s.now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, oauthErr("invalid_grant", "unknown refresh token")
	}
	fresh, err := r.Refresh(ctx, login.RefreshToken)
	var re mautrix.RespError
	if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests {
		if taken, terr := s.store.TakeOAuthGrant(context.WithoutCancel(ctx), g.ID); terr == nil {
			s.logout(context.WithoutCancel(ctx), taken.UserID, taken.Login, l) // the access token may outlive its refresh token
		}
		l.WithField("errcode", re.ErrCode).Info("oauth: the homeserver refused its refresh token; grant ended")
		return nil, oauthErr("invalid_grant", "the session has ended")
	}
	if err != nil {
		if _, rerr := s.store.RotateOAuthRefresh(context.WithoutCancel(ctx), g.ID, next, old, s.now()); rerr != nil {
			l.WithError(rerr).Error("oauth: giving the refresh token back after a failed homeserver refresh")
		}
		return nil, err
	}
	renewed := homeLogin{UserID: login.UserID, DeviceID: login.DeviceID, AccessToken: fresh.AccessToken, RefreshToken: fresh.RefreshToken}
	if fresh.ExpiresInMS > 0 {
		renewed.ExpiresAt = s.now().Add(time.Duration(fresh.ExpiresInMS) * time.Millisecond)
	}
	if err := s.keepLogin(ctx, g, next, &renewed); err != nil {
		return nil, err
	}
	l.Info("oauth: token refreshed at the homeserver")
	return &tokenResponse{AccessToken: fresh.AccessToken, TokenType: "Bearer", RefreshToken: nextToken, Scope: g.Scope,
		ExpiresIn: s.expiresIn(&renewed)}, nil
}

// keepLogin seals login as grant g's, its access token's hash with it, if
// g's refresh token is still refresh (this refresh's own rotation).
func (s *Server) keepLogin(ctx context.Context, g storage.OAuthGrant, refresh []byte, login *homeLogin) error {
	body, err := json.Marshal(login)
	if err != nil {
		return err
	}
	sealed, err := s.seal(g.UserID, body)
	if err != nil {
		return err
	}
	ok, err := s.store.SetOAuthGrantLogin(context.WithoutCancel(ctx), g.ID, refresh, hash(login.AccessToken), sealed, s.now())
	if err == nil && !ok {
		err = oauthErr("invalid_grant", "the session has ended")
	}
	return err
}
