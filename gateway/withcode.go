package gateway

import (
	"context"
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Password + code: clients that only know passwords (Element X by password,
// stock web clients in a UIA dialog) can send the TOTP code typed right after
// the password, as FreeIPA and RSA SecurID deployments do. The password as
// typed is always tried first, so a password that ends in digits still works
// as a plain password (and no code is counted); only when it is wrong is the
// rest tried, and the code is checked only once that rest is the right
// password, so a code is never burnt for a wrong password.

// splitCode splits the trailing digits TOTP digits off password.
func splitCode(password string, digits int) (rest, code string, ok bool) {
	if digits <= 0 || len(password) <= digits {
		return "", "", false
	}
	rest, code = password[:len(password)-digits], password[len(password)-digits:]
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return "", "", false
		}
	}
	return rest, code, true
}

// loginWithCode handles a password login the homeserver refused with 403 when
// the password may end in a code: the rest is tried, and for a user with 2FA
// the code checked (replay guard, lockout); then the login is released at
// once. It reports whether it answered; when not, the homeserver's refusal of
// the password as typed stands.
func (g *Gateway) loginWithCode(w http.ResponseWriter, r *http.Request, login *canonical.Login) bool {
	if !g.cfg.PasswordWithCode || login.Type != canonical.LoginPassword || login.Password == nil || login.DeviceID != nil {
		return false // a kept device_id means the user is known to have no 2FA
	}
	rest, code, ok := splitCode(*login.Password, g.acc.Params().Digits)
	if !ok {
		return false
	}
	stripped := *login
	stripped.Password = &rest
	body, err := stripped.Body()
	if err != nil {
		return false
	}
	resp, err := g.hs.Login(r.Context(), body, g.hs.CheckedHeader(r, ""))
	switch {
	case err != nil: // the homeserver did not answer: say so, not "wrong password"
		httpx.WriteError(w, r, err)
		return true
	case resp.Status >= 500 || resp.Status == http.StatusTooManyRequests:
		httpx.CopyResponse(w, resp)
		return true
	case resp.Status != http.StatusOK:
		return false
	}
	var answer mautrix.RespLogin
	if json.Unmarshal(resp.Body, &answer) != nil || answer.AccessToken == "" {
		return false
	}
	return g.releaseWithCode(w, r, answer, resp, code)
}

// releaseWithCode checks code for the user the homeserver logged in with the
// password's rest: a user without 2FA never gets in that way (the digits were
// part of a wrong password), a wrong code logs the login out.
func (g *Gateway) releaseWithCode(w http.ResponseWriter, r *http.Request, answer mautrix.RespLogin, resp *homeserver.Response, code string) bool {
	user := string(answer.UserID)
	l := httpx.Logger(r).WithField("user_id", user)
	enabled, err := g.acc.Enabled(r.Context(), user)
	if err == nil && enabled {
		err = g.acc.VerifyTOTP(r.Context(), user, code)
	}
	if err == nil && enabled {
		g.learnServerName(user)
		l.Info("login with password and code")
		httpx.CopyResponse(w, resp)
		return true
	}
	if lerr := g.hs.Logout(context.WithoutCancel(r.Context()), answer.AccessToken); lerr != nil {
		l.WithError(lerr).Error("logging out a password-and-code login that was not released")
	}
	if err == nil { // no 2FA: the password as typed was simply wrong
		return false
	}
	l.WithError(err).Info("login with password and code: code refused")
	httpx.WriteError(w, r, err)
	return true
}

// stageWithCode completes the 2FA stage of session s from a homeserver
// password stage that carries the code after the password: the rest must be
// the owner's password (checked with the homeserver, no lasting effect), then
// the code is checked and the password stage goes on with the rest. It
// reports whether it answered; when not, the usual "second factor first"
// refusal applies.
func (g *Gateway) stageWithCode(w http.ResponseWriter, r *http.Request, q *guardedRequest, s *uia.Session) bool {
	if !g.cfg.PasswordWithCode || q.auth == nil || q.auth.Type != canonical.StagePassword || q.auth.Password == nil {
		return false
	}
	rest, code, ok := splitCode(*q.auth.Password, g.acc.Params().Digits)
	if !ok {
		return false
	}
	right, err := g.hs.CheckPassword(r.Context(), id.UserID(q.owner), rest)
	if err != nil || !right {
		return false
	}
	err = g.engine.Attempt(r.Context(), s, &uia.Auth{Type: flows.StageTOTP, Session: s.ID, Code: code})
	if err != nil {
		g.writeUIAError(w, r, s, err)
		return true
	}
	httpx.Logger(r).Info("second factor given after the password")
	g.grantTrust(r, q.owner, q.token)
	q.auth.Password = &rest
	g.forwardStage(w, r, q, s)
	return true
}
