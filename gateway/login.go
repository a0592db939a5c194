package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/held"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// handleLoginFlows adds "Sign in with 2FA" (m.login.sso with our identity
// provider) and m.login.token to the homeserver's login flows.
func (g *Gateway) handleLoginFlows(w http.ResponseWriter, r *http.Request) {
	resp, err := g.hs.Do(r.Context(), http.MethodGet, r.URL.RequestURI(), g.hs.CheckedHeader(r, ""), nil)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	var body struct {
		Flows []map[string]any `json:"flows"`
	}
	if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &body) != nil {
		httpx.CopyResponse(w, resp)
		return
	}
	idp := map[string]any{"id": g.cfg.SSOProviderID, "name": g.cfg.SSOProviderName}
	hasSSO, hasToken := false, false
	if g.cfg.HidePasswordFlow {
		body.Flows = slices.DeleteFunc(body.Flows, func(f map[string]any) bool { return f["type"] == "m.login.password" })
	}
	for _, f := range body.Flows {
		switch f["type"] {
		case "m.login.sso":
			hasSSO = true
			list, _ := f["identity_providers"].([]any)
			f["identity_providers"] = append(list, idp)
		case "m.login.token":
			hasToken = true
		}
	}
	if !hasSSO {
		body.Flows = append(body.Flows, map[string]any{"type": "m.login.sso", "identity_providers": []any{idp}})
	}
	if !hasToken {
		body.Flows = append(body.Flows, map[string]any{"type": "m.login.token"})
	}
	httpx.WriteJSON(w, http.StatusOK, body)
}

// redeemLoginToken exchanges a login token of the sign-in page for the login
// it holds (once); it returns false for tokens the gateway did not issue
// (they go to the homeserver).
func (g *Gateway) redeemLoginToken(w http.ResponseWriter, r *http.Request, login *canonical.Login) bool {
	body, userID, err := g.held.RedeemToken(r.Context(), *login.Token, httpx.Logger(r))
	switch {
	case errors.Is(err, held.ErrNotOurs):
		return false
	case errors.Is(err, held.ErrExpiredToken):
		httpx.WriteError(w, r, httperr.ErrInvalidLoginToken)
		return true
	case err != nil:
		httpx.WriteError(w, r, err)
		return true
	}
	l := httpx.Logger(r).WithField("user_id", userID)
	if login.DisplayName != nil && *login.DisplayName != "" {
		var resp mautrix.RespLogin
		if err := json.Unmarshal(body, &resp); err == nil {
			if err := g.hs.SetDeviceDisplayName(r.Context(), resp.AccessToken, resp.DeviceID, *login.DisplayName); err != nil {
				l.WithError(err).Warn("login token: setting the device display name")
			}
		}
	}
	l.Info("login token redeemed")
	httpx.WriteRawJSON(w, http.StatusOK, body)
	return true
}

// handleLogin is POST /login: a continuation of a held login goes to the 2FA
// stage; a password, token or appservice login is read, rebuilt (user named
// once, only known fields) and sent to the homeserver first; for an enrolled
// user the homeserver's answer is held behind the 2FA stage. Users without
// 2FA, wrong passwords and appservice logins get the homeserver's answer.
func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	raw, obj, err := httpx.ReadObject(w, r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if a, ok, err := loginContinuation(raw, obj); ok || err != nil {
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		g.continueLogin(w, r, a)
		return
	}
	login, err := canonical.ParseLogin(canonical.Object(obj))
	if err != nil {
		g.refuseLogin(w, r, err)
		return
	}
	if login.Type == canonical.LoginToken && login.Token != nil && g.redeemLoginToken(w, r, login) {
		return
	}
	token := "" // an appservice login is authorised by the appservice's token
	if login.Type == canonical.LoginAppservice {
		if token, err = httpx.RequestToken(r); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	g.guardDevice(r, login, token)
	body, err := login.Body()
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	resp, err := g.hs.Login(r.Context(), body, g.hs.CheckedHeader(r, token))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if resp.Status == http.StatusForbidden && g.loginWithCode(w, r, login) {
		return
	}
	if resp.Status != http.StatusOK || login.Type == canonical.LoginAppservice {
		httpx.CopyResponse(w, resp)
		return
	}
	g.holdLogin(w, r, login.Type, resp)
}

// isAppservice reports whether token is an application service's (the
// homeserver's whoami knows it, and it has no device).
func (g *Gateway) isAppservice(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	who, err := g.hs.WhoAmI(r.Context(), token)
	return err == nil && who.DeviceID == ""
}

// loginContinuation recognises the 2FA step of a held login: {"auth":{…,
// "session":S}} or a top-level 2FA auth dict.
func loginContinuation(raw []byte, obj map[string]json.RawMessage) (*uia.Auth, bool, error) {
	if authRaw, ok := obj["auth"]; ok && string(authRaw) != "null" {
		a, err := uia.ParseAuth(authRaw)
		return a, true, err
	}
	typ, _, err := httpx.StringField(obj, "type")
	if err != nil || !flows.IsSecondFactor(typ) {
		return nil, false, err
	}
	a, err := uia.ParseAuth(raw)
	return a, true, err
}

// refuseLogin answers a login body the gateway will not forward; one that
// names its user ambiguously is a warning.
func (g *Gateway) refuseLogin(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, canonical.ErrAmbiguousUser) || errors.Is(err, canonical.ErrNoIdentifierType) {
		httpx.Logger(r).WithError(err).Warn("login names its user ambiguously; refused")
	}
	httpx.WriteError(w, r, err)
}

// guardDevice drops device_id from a login unless the gateway knows the user
// it names has no 2FA: logging in with an existing device ID makes the
// homeserver replace that device's token at once, before any second factor.
// The user must be one m.id.user, resolvable to a user ID in plain ASCII
// (nothing a homeserver might trim or normalise into another name), and no
// user whose ID equals it up to the case of the localpart (homeservers fold
// it) may have 2FA. Token logins never keep it (the user is known only afterwards).
func (g *Gateway) guardDevice(r *http.Request, login *canonical.Login, token string) {
	if login.DeviceID == nil || (login.Type == canonical.LoginAppservice && g.isAppservice(r, token)) {
		return
	}
	if login.Type == canonical.LoginPassword && login.ID != nil && login.ID.Type == canonical.IDUser {
		server := ""
		if p := g.serverName.Load(); p != nil {
			server = *p
		}
		if userID, ok := canonical.Qualify(login.ID.User, server); ok && canonical.PlainUserID(userID) {
			login.ID.User = userID // named once, in full
			if has, err := g.acc.EnabledFold(r.Context(), userID); err == nil && !has {
				return
			}
		}
	}
	login.DeviceID = nil
	httpx.Logger(r).Info("device_id dropped from a login whose user has (or may have) 2FA")
}

// holdLogin checks a successful login: a user with 2FA gets the 401
// challenge and the homeserver's answer is held; anyone else gets it now.
// Every 200 but an appservice's is checked, whatever its type.
func (g *Gateway) holdLogin(w http.ResponseWriter, r *http.Request, typ string, resp *homeserver.Response) {
	var login mautrix.RespLogin
	if err := json.Unmarshal(resp.Body, &login); err != nil || login.UserID == "" || login.AccessToken == "" {
		httpx.Logger(r).WithField("login_type", typ).Error("homeserver answered a login with 200 but no user_id or access_token; refused")
		httpx.WriteError(w, r, httperr.ErrUpstreamAnswer)
		return
	}
	g.learnServerName(string(login.UserID))
	l := httpx.Logger(r).WithField("user_id", login.UserID)
	enabled, err := g.acc.Enabled(r.Context(), string(login.UserID))
	if err == nil && !enabled {
		if g.loginBlocked(w, r, &login) {
			return
		}
		httpx.CopyResponse(w, resp)
		return
	}
	if err == nil && g.cfg.ForbidBarePassword {
		err = mautrix.MForbidden.WithMessage("%s", g.barePasswordHint())
	}
	var s *uia.Session
	if err == nil {
		g.RememberEmails(r.Context(), string(login.UserID), login.AccessToken)
		factors := g.Factors(r.Context(), string(login.UserID))
		s, err = g.held.Hold(r.Context(), storage.KindHeldLogin, string(login.UserID), flows.After(typ, factors...), typ, resp.Body, g.origin(r))
	}
	if err != nil {
		if lerr := g.hs.Logout(context.WithoutCancel(r.Context()), login.AccessToken); lerr != nil {
			l.WithError(lerr).Error("logging out a login that was not released")
		}
		httpx.WriteError(w, r, err) // never release a token unchecked
		return
	}
	l.Info("login held for the second factor")
	httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
}

// continueLogin runs the 2FA stage of a held login and releases the held
// homeserver response when a flow is complete.
func (g *Gateway) continueLogin(w http.ResponseWriter, r *http.Request, a *uia.Auth) {
	ctx := r.Context()
	// A UIA or sign-in page session sent here is another request's (403), a
	// login token's or web session's is as good as unknown.
	s, err := g.engine.LoadKind(ctx, a.Session, storage.KindHeldLogin, storage.KindSignIn, storage.KindUIA)
	if err == nil && s.Kind != storage.KindHeldLogin {
		err = uia.ErrSessionMismatch
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	l := httpx.Logger(r).WithField("user_id", s.UserID)
	var taken *uia.Session
	if a.Type != "" {
		if taken, err = g.attemptHeld(ctx, s, a); err != nil {
			if _, locked := account.IsLocked(err); locked {
				g.held.Drop(ctx, s, l) // locked out: the held login dies now
			}
			g.writeUIAError(w, r, s, err)
			return
		}
	}
	if !s.Done() {
		httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
		return
	}
	var body []byte
	if taken != nil {
		body, err = g.held.Released(taken)
	} else {
		body, err = g.held.Release(ctx, s)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	l.Info("login released after the second factor")
	httpx.WriteRawJSON(w, http.StatusOK, body)
}

// totpStepper checks a TOTP code and records a UIA session's step in one
// store transaction (account.Service).
type totpStepper interface {
	VerifyTOTPStep(ctx context.Context, userID, code string, step storage.SessionStep) (bool, storage.UIASession, error)
}

// attemptHeld runs the stage of a for the held login s. A TOTP code is
// checked, its stage recorded and, when that completes the login, the
// session consumed, all in one store transaction; the consumed session is
// returned (nil while stages are left, or for another stage type).
func (g *Gateway) attemptHeld(ctx context.Context, s *uia.Session, a *uia.Auth) (*uia.Session, error) {
	v, ok := g.acc.(totpStepper)
	if a.Type != flows.StageTOTP || !ok {
		return nil, g.engine.Attempt(ctx, s, a)
	}
	return g.engine.AttemptFinish(ctx, s, a.Type, func(ctx context.Context, step storage.SessionStep) (bool, storage.UIASession, error) {
		return v.VerifyTOTPStep(ctx, s.UserID, a.Code, step)
	})
}

// barePasswordHint tells a user with 2FA who gave only a password what to do.
func (g *Gateway) barePasswordHint() string {
	hint := "Two-factor authentication is on for this account: choose \"Continue with " + g.cfg.SSOProviderName + "\""
	if g.cfg.PasswordWithCode {
		hint += ", or type your password followed by the " + strconv.Itoa(g.acc.Params().Digits) + "-digit code from your authenticator app"
	}
	return hint + "."
}
