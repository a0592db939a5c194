package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The token endpoint. The access token is the homeserver's own; the refresh
// token is the gateway's, 256 random bits kept only as a hash, rotated on
// every use. Refreshing hands the same homeserver access token back while
// the homeserver still accepts it (homeservers like Dendrite have no refresh
// tokens, and a new homeserver login would need the password): it never
// makes a new homeserver session, so it cannot stand in for the password
// and second factor the grant began with. Once the homeserver refuses the
// token (the device was signed out), the grant ends. Where the homeserver
// gave its own refresh token (hsrefresh.go), refreshing renews the access
// token there instead, for the same device.

// tokenResponse is the token endpoint's answer (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	// ExpiresIn is the access token's lifetime in seconds, when the
	// homeserver's token expires (it gave expires_in_ms).
	ExpiresIn int64 `json:"expires_in,omitempty"`
}

// readForm reads a POSTed form body.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	body, err := httpx.ReadBody(w, r)
	if err != nil {
		return nil, oauthErr("invalid_request", "unreadable request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	return form, nil
}

// Token is POST /_matrix2fa/oauth2/token.
func (s *Server) Token(w http.ResponseWriter, r *http.Request) {
	l := httpx.Logger(r)
	form, err := readForm(w, r)
	var resp *tokenResponse
	if err == nil {
		switch form.Get("grant_type") {
		case grantCode:
			resp, err = s.redeemCode(r.Context(), form, l)
		case grantRefresh:
			resp, err = s.refresh(r.Context(), form, l)
		default:
			err = oauthErr("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
		}
	}
	if err != nil {
		s.writeError(w, l, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// pkceOK reports whether verifier matches an S256 challenge (RFC 7636 §4.6).
func pkceOK(verifier, challenge string) bool {
	if !challengeChars.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// redeemCode is the authorization_code grant: the code is taken (single
// use) before anything is checked, so a refused or replayed code never works
// again, and its login is logged out.
func (s *Server) redeemCode(ctx context.Context, form url.Values, l logrus.FieldLogger) (*tokenResponse, error) {
	code, err := s.store.TakeOAuthCode(ctx, hash(form.Get("code")))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, oauthErr("invalid_grant", "unknown or already used authorization code")
	}
	if err != nil {
		return nil, err
	}
	l = l.WithFields(logrus.Fields{"user_id": code.UserID, "client_id": code.ClientID})
	var refusal string
	switch {
	case !s.now().Before(code.ExpiresAt):
		refusal = "the authorization code has expired"
	case form.Get("client_id") != code.ClientID:
		refusal = "the authorization code was issued to another client"
	case form.Get("redirect_uri") != code.RedirectURI:
		refusal = "redirect_uri differs from the authorization request's"
	case !pkceOK(form.Get("code_verifier"), code.Challenge):
		refusal = "code_verifier does not match the code_challenge"
	}
	if refusal != "" {
		s.logout(ctx, code.UserID, code.Login, l)
		return nil, oauthErr("invalid_grant", refusal)
	}
	login, err := s.openLogin(code.UserID, code.Login)
	if err != nil {
		return nil, err
	}
	refresh := httpx.RandomToken(32)
	now := s.now()
	err = s.store.PutOAuthGrant(ctx, storage.OAuthGrant{ID: httpx.RandomToken(16), ClientID: code.ClientID, UserID: code.UserID,
		DeviceID: code.DeviceID, Scope: code.Scope, RefreshHash: hash(refresh), AccessHash: hash(login.AccessToken),
		Login: code.Login, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		s.logout(ctx, code.UserID, code.Login, l)
		return nil, err
	}
	l.WithField("device_id", code.DeviceID).Info("oauth: authorization code redeemed")
	return &tokenResponse{AccessToken: login.AccessToken, TokenType: "Bearer", RefreshToken: refresh, Scope: code.Scope,
		ExpiresIn: s.expiresIn(login)}, nil
}

// refresh is the refresh_token grant: the refresh token rotates (one
// conditional update: of two uses of the same token only one wins), and
// the homeserver access token comes back while the homeserver accepts it.
func (s *Server) refresh(ctx context.Context, form url.Values, l logrus.FieldLogger) (*tokenResponse, error) {
	old := hash(form.Get("refresh_token"))
	g, err := s.store.OAuthGrantByRefresh(ctx, old)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && g.ClientID != form.Get("client_id")) {
		return nil, oauthErr("invalid_grant", "unknown refresh token")
	}
	if err != nil {
		return nil, err
	}
	l = l.WithFields(logrus.Fields{"user_id": g.UserID, "client_id": g.ClientID, "device_id": g.DeviceID})
	login, err := s.openLogin(g.UserID, g.Login)
	if err != nil {
		return nil, err
	}
	if r, ok := s.hs.(Refresher); ok && login.RefreshToken != "" {
		return s.refreshHome(ctx, r, g, old, login, l)
	}
	who, err := s.hs.WhoAmI(ctx, login.AccessToken)
	var re mautrix.RespError
	if errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized {
		s.store.TakeOAuthGrant(context.WithoutCancel(ctx), g.ID)
		l.Info("oauth: refresh of a grant whose device was signed out; grant ended")
		return nil, oauthErr("invalid_grant", "the session has ended")
	}
	if err != nil {
		return nil, err
	}
	if string(who.UserID) != g.UserID {
		return nil, errors.New("oauth: the homeserver token belongs to another user")
	}
	next := httpx.RandomToken(32)
	ok, err := s.store.RotateOAuthRefresh(ctx, g.ID, old, hash(next), s.now())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, oauthErr("invalid_grant", "unknown refresh token")
	}
	l.Info("oauth: token refreshed")
	return &tokenResponse{AccessToken: login.AccessToken, TokenType: "Bearer", RefreshToken: next, Scope: g.Scope}, nil
}

// Revoke is POST /_matrix2fa/oauth2/revoke (RFC 7009): the grant of a
// refresh or access token the client holds ends, and its device is logged
// out at the homeserver. Unknown tokens, and tokens of another client, are
// answered 200 too, and nothing happens.
func (s *Server) Revoke(w http.ResponseWriter, r *http.Request) {
	l := httpx.Logger(r)
	form, err := readForm(w, r)
	if err != nil {
		s.writeError(w, l, err)
		return
	}
	h := hash(form.Get("token"))
	g, err := s.store.OAuthGrantByRefresh(r.Context(), h)
	if errors.Is(err, storage.ErrNotFound) {
		g, err = s.store.OAuthGrantByAccess(r.Context(), h)
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.writeError(w, l, err)
		return
	}
	if err == nil && g.ClientID == form.Get("client_id") {
		if taken, err := s.store.TakeOAuthGrant(r.Context(), g.ID); err == nil {
			s.logout(r.Context(), taken.UserID, taken.Login, l)
			l.WithFields(logrus.Fields{"user_id": g.UserID, "client_id": g.ClientID, "device_id": g.DeviceID}).Info("oauth: grant revoked")
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
