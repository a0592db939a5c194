package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/trust"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

type authedHandler func(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI)

// authed resolves the access token to a user with the homeserver's whoami
// (cached) before calling h; no or a bad token is answered by the homeserver's
// own error (M_MISSING_TOKEN / M_UNKNOWN_TOKEN).
func (g *Gateway) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := httpx.RequestToken(r)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if tok == "" {
			httpx.WriteError(w, r, httperr.ErrMissingToken)
			return
		}
		who, err := g.hs.WhoAmI(r.Context(), tok)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		g.learnServerName(string(who.UserID))
		if r.Method != http.MethodGet {
			// Codes go to the addresses the user has now, not to one they
			// removed since (they may have lost that mailbox).
			g.RememberEmails(r.Context(), string(who.UserID), tok)
		}
		r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", who.UserID))
		h(w, r, who)
	}
}

type statusResponse struct {
	TOTP struct {
		Enabled   bool   `json:"enabled"`
		EnabledAt *int64 `json:"enabled_at"`
		Pending   bool   `json:"pending"`
	} `json:"totp"`
	Recovery struct {
		Remaining   int    `json:"remaining"`
		GeneratedAt *int64 `json:"generated_at"`
	} `json:"recovery"`
}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) {
	st, err := g.acc.Status(r.Context(), string(who.UserID))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	var out statusResponse
	out.TOTP.Enabled, out.TOTP.Pending, out.Recovery.Remaining = st.Enabled, st.Pending, st.Remaining
	if st.Enabled {
		ms := st.EnabledAt.UnixMilli()
		out.TOTP.EnabledAt = &ms
	}
	if !st.GeneratedAt.IsZero() {
		ms := st.GeneratedAt.UnixMilli()
		out.Recovery.GeneratedAt = &ms
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// uiaRound reads the body, runs one UIA round for the user's request with
// flows and answers the challenge or the error itself; it returns true when
// the operation is authorised (exactly once).
func (g *Gateway) uiaRound(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI, op string, fl [][]string) bool {
	_, body, err := httpx.ReadObject(w, r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return false
	}
	var a *uia.Auth
	if raw, ok := body["auth"]; ok && string(raw) != "null" {
		if a, err = uia.ParseAuth(raw); err != nil {
			httpx.WriteError(w, r, err)
			return false
		}
	}
	session := ""
	if a != nil {
		session = a.Session
	}
	if fl = g.ownFlows(r, string(who.UserID), op, fl, session); len(fl) == 0 {
		return true // a trusted client, and nothing but the second factor to ask
	}
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: string(who.UserID)}
	step, err := g.engine.Authorize(r.Context(), req, fl, a)
	if err != nil {
		g.writeUIAError(w, r, step.Session, err)
		return false
	}
	if !step.Done {
		httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(step.Session, nil))
		return false
	}
	if flows.SecondFactorDone(step.Session) {
		if tok, err := httpx.RequestToken(r); err == nil {
			g.grantTrust(r, string(who.UserID), tok)
		}
	}
	return true
}

// writeUIAError answers a failed UIA round: a failed stage inside a session
// gets the 401 challenge with the error merged in (the spec's form); anything
// else gets its plain Matrix error.
func (g *Gateway) writeUIAError(w http.ResponseWriter, r *http.Request, s *uia.Session, err error) {
	if s != nil && flows.IsStageFailure(err) {
		httpx.Logger(r).WithError(err).Info("UIA stage failed")
		re := httperr.Matrix(err)
		httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, &re))
		return
	}
	httpx.WriteError(w, r, err)
}

type enrolResponse struct {
	Secret      string         `json:"secret"`
	URI         string         `json:"uri"`
	QRSVG       string         `json:"qr_svg"`
	QRPNG       string         `json:"qr_png"`
	Params      account.Params `json:"params"`
	ExpiresInMS int64          `json:"expires_in_ms"`
}

func (g *Gateway) handleEnrol(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) {
	enabled, err := g.acc.Enabled(r.Context(), string(who.UserID))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if !g.uiaRound(w, r, who, trust.Enrol2FA, flows.ForEndpoint(flows.EnrolTOTP, enabled, g.Factors(r.Context(), string(who.UserID))...)) {
		return
	}
	en, err := g.acc.Enrol(r.Context(), string(who.UserID))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, enrolResponse{
		Secret: en.Secret, URI: en.URI, QRSVG: en.QRSVG, QRPNG: base64.StdEncoding.EncodeToString(en.QRPNG),
		Params: en.Params, ExpiresInMS: en.ExpiresAt.Sub(g.now()).Milliseconds(),
	})
}

type codesResponse struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

func (g *Gateway) handleConfirm(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) {
	_, body, err := httpx.ReadObject(w, r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	code, ok, err := httpx.StringField(body, "code")
	if err == nil && !ok {
		code, _, err = httpx.StringField(body, "token")
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if tok, err := httpx.RequestToken(r); err == nil {
		g.RememberEmails(r.Context(), string(who.UserID), tok) // where codes and notices go
	}
	codes, err := g.acc.Confirm(r.Context(), string(who.UserID), code)
	if err != nil {
		if errors.Is(err, account.ErrInvalidCode) {
			httpx.Logger(r).WithError(err).Info("enrolment confirmation failed")
		}
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r).Info("two-factor authentication enabled")
	httpx.WriteJSON(w, http.StatusOK, codesResponse{RecoveryCodes: codes})
}

// requireEnabled answers 400 M_INVALID_PARAM before any UIA when 2FA is off.
func (g *Gateway) requireEnabled(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) bool {
	enabled, err := g.acc.Enabled(r.Context(), string(who.UserID))
	if err == nil && !enabled {
		err = account.ErrNotEnabled
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return false
	}
	return true
}

func (g *Gateway) handleDisable(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) {
	if g.disableRefused(w, r, who) || !g.requireEnabled(w, r, who) || !g.uiaRound(w, r, who, trust.Disable2FA, flows.ForEndpoint(flows.DisableTOTP, true, g.Factors(r.Context(), string(who.UserID))...)) {
		return
	}
	if err := g.acc.Disable(r.Context(), string(who.UserID)); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r).Info("two-factor authentication disabled")
	httpx.WriteJSON(w, http.StatusOK, json.RawMessage(`{}`))
}

func (g *Gateway) handleRegenerate(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) {
	if !g.requireEnabled(w, r, who) || !g.uiaRound(w, r, who, trust.RegenerateCodes, flows.ForEndpoint(flows.Regenerate, true, g.Factors(r.Context(), string(who.UserID))...)) {
		return
	}
	codes, err := g.acc.Regenerate(r.Context(), string(who.UserID))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r).WithFields(logrus.Fields{"count": len(codes)}).Info("recovery codes regenerated")
	httpx.WriteJSON(w, http.StatusOK, codesResponse{RecoveryCodes: codes})
}
