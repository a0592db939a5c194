package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// copyResponse writes an upstream response unchanged.
func copyResponse(w http.ResponseWriter, resp *homeserver.Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// handleLoginFlows adds "Sign in with 2FA" (m.login.sso with our identity
// provider) and m.login.token to the homeserver's login flows.
func (g *Gateway) handleLoginFlows(w http.ResponseWriter, r *http.Request) {
	resp, err := g.hs.Do(r.Context(), http.MethodGet, r.URL.RequestURI(), g.hs.ForwardedHeader(r), nil)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var body struct {
		Flows []map[string]any `json:"flows"`
	}
	if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &body) != nil {
		copyResponse(w, resp)
		return
	}
	idp := map[string]any{"id": g.cfg.SSOProviderID, "name": g.cfg.SSOProviderName}
	hasSSO, hasToken := false, false
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
	writeJSON(w, http.StatusOK, body)
}

// handleLogin is POST /login: password and token logins go to the homeserver
// first; for an enrolled user the homeserver's answer is held behind the 2FA
// stage. Users without 2FA, wrong passwords and appservice logins get the
// homeserver's answer unchanged.
func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	obj, err := parseObject(raw)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// A continuation: {"auth":{…,"session":S}} or a top-level 2FA auth dict.
	if authRaw, ok := obj["auth"]; ok && string(authRaw) != "null" {
		a, err := uia.ParseAuth(authRaw)
		if err != nil {
			writeError(w, r, err)
			return
		}
		g.continueLogin(w, r, a)
		return
	}
	typ, _, err := stringField(obj, "type")
	if err != nil {
		writeError(w, r, err)
		return
	}
	if flows.IsSecondFactor(typ) {
		a, err := uia.ParseAuth(raw)
		if err != nil {
			writeError(w, r, err)
			return
		}
		g.continueLogin(w, r, a)
		return
	}
	if typ == flows.StageToken {
		if tok, _, _ := stringField(obj, "token"); tok != "" && g.redeemLoginToken(w, r, tok, obj) {
			return
		}
	}
	if typ == flows.StagePassword {
		if _, _, err := stringField(obj, "device_id"); err != nil {
			writeError(w, r, err) // refused alike for every user: no 2FA oracle
			return
		}
		if _, has := obj["device_id"]; has && g.mayHave2FA(r, obj) {
			// Logging in with an existing device ID makes the homeserver
			// replace that device's token at once, before any second factor:
			// the password alone must not be able to do that to a user with
			// 2FA. The homeserver gives the login a fresh device instead.
			delete(obj, "device_id")
			logger(r).Info("device_id dropped from the password login of a user who has (or may have) 2FA")
		}
		// Every password login is re-encoded the same way, whoever it names,
		// so the homeserver's answer to a wrong password cannot differ by
		// 2FA status.
		if raw, err = json.Marshal(obj); err != nil {
			writeError(w, r, err)
			return
		}
	}
	resp, err := g.hs.Login(r.Context(), raw, g.hs.ForwardedHeader(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if resp.Status != http.StatusOK || typ == string(mautrix.AuthTypeAppservice) {
		copyResponse(w, resp)
		return
	}
	// Fail closed: every successful login but an appservice's is checked,
	// whatever its type (password, token, JWT, a module's own type).
	var login mautrix.RespLogin
	if err := json.Unmarshal(resp.Body, &login); err != nil || login.UserID == "" || login.AccessToken == "" {
		logger(r).WithField("login_type", typ).Error("homeserver answered a login with 200 but no user_id or access_token; refused")
		writeMatrixError(w, mautrix.MUnknown.WithMessage("Unexpected answer from the homeserver").WithStatus(http.StatusBadGateway))
		return
	}
	g.learnServerName(string(login.UserID))
	enabled, err := g.acc.Enabled(r.Context(), string(login.UserID))
	if err != nil {
		g.hs.Logout(r.Context(), login.AccessToken) // never release a token unchecked
		writeError(w, r, err)
		return
	}
	if !enabled {
		copyResponse(w, resp)
		return
	}
	l := logger(r).WithField("user_id", login.UserID)
	if g.cfg.ForbidBarePassword {
		if err := g.hs.Logout(r.Context(), login.AccessToken); err != nil {
			l.WithError(err).Error("logging out a refused bare-password login")
		}
		writeMatrixError(w, mautrix.MForbidden.WithMessage("Two-factor authentication is enabled for this account: use \"%s\"", g.cfg.SSOProviderName))
		return
	}
	sealed, err := g.sealHeld(string(login.UserID), resp.Body)
	if err != nil {
		g.hs.Logout(r.Context(), login.AccessToken)
		writeError(w, r, err)
		return
	}
	first := typ
	if first == "" {
		first = flows.StagePassword // the homeserver took it as one
	}
	req := uia.Request{Method: http.MethodPost, Path: heldLoginPath, UserID: string(login.UserID)}
	s, err := g.engine.Start(r.Context(), req, flows.After(first), "", sealed, g.cfg.LoginTTL)
	if err == nil {
		err = g.engine.MarkCompleted(r.Context(), s, first)
	}
	if err != nil {
		g.hs.Logout(r.Context(), login.AccessToken)
		writeError(w, r, err)
		return
	}
	l.Info("login held for the second factor")
	writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
}

// continueLogin runs the 2FA stage of a held login and releases the held
// homeserver response when a flow is complete.
func (g *Gateway) continueLogin(w http.ResponseWriter, r *http.Request, a *uia.Auth) {
	ctx := r.Context()
	s, err := g.engine.LoadAny(ctx, a.Session)
	if err == nil && (s.Method != http.MethodPost || s.Path != heldLoginPath) {
		err = uia.ErrSessionMismatch
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	l := logger(r).WithField("user_id", s.UserID)
	if a.Type != "" {
		if err := g.engine.Attempt(ctx, s, a); err != nil {
			if _, locked := account.IsLocked(err); locked {
				// Locked out: the held login dies now.
				if taken, terr := g.engine.Finish(ctx, s); terr == nil {
					if again, derr := g.retireHeld(ctx, taken.UIASession); again {
						l.WithError(derr).Warn("logging out a locked-out held login failed; the sweeper retries")
					} else if derr != nil {
						l.WithError(derr).Error("logging out a locked-out held login")
					}
				}
			}
			g.writeUIAError(w, r, s, err)
			return
		}
	}
	if !s.Done() {
		writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
		return
	}
	taken, err := g.engine.Finish(ctx, s)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := g.openHeld(taken.UserID, taken.Data)
	if err != nil {
		writeError(w, r, errors.Join(errors.New("opening a held login"), err))
		return
	}
	l.Info("login released after the second factor")
	writeRawJSON(w, http.StatusOK, body)
}

// mayHave2FA reports whether the user a login body names has 2FA on, or
// cannot be told apart from one who has (a third-party identifier, or a bare
// localpart before the server name is known).
func (g *Gateway) mayHave2FA(r *http.Request, obj map[string]json.RawMessage) bool {
	var body struct {
		Identifier struct {
			Type string `json:"type"`
			User string `json:"user"`
		} `json:"identifier"`
		User string `json:"user"`
	}
	b, _ := json.Marshal(obj)
	if json.Unmarshal(b, &body) != nil {
		return true
	}
	user := body.Identifier.User
	if user == "" {
		user = body.User
	}
	if user == "" || (body.Identifier.Type != "" && body.Identifier.Type != "m.id.user") {
		return true
	}
	if local, server, ok := strings.Cut(strings.TrimPrefix(user, "@"), ":"); strings.HasPrefix(user, "@") && ok {
		// Homeservers lower-case the localpart of a login's user ID.
		user = "@" + strings.ToLower(local) + ":" + server
	} else {
		server := g.serverName.Load()
		if server == nil {
			return true
		}
		user = "@" + strings.ToLower(user) + ":" + *server
	}
	enabled, err := g.acc.Enabled(r.Context(), user)
	return err != nil || enabled
}
