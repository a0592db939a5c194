package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// The UIA fallback pages (client-server spec, "Fallback"): clients that do not
// know the 2FA stages open
// /_matrix/client/v3/auth/<stage>/fallback/web?session=S in a popup or a
// webview. The page asks for the code, completes the stage on session S and
// runs the spec's completion script (literally in fallback_done.html, under
// the page's CSP nonce); the client then resends its request with
// {"auth":{"session":S}}. Every kind of session works: the account endpoints,
// the homeserver UIA endpoints and held /login sessions. Sign-in page logins
// and login tokens never do (see fallbackSession).

func (g *Gateway) fallbackRoutes(r *mux.Router) {
	for _, p := range Prefixes {
		for _, stage := range []string{flows.StageTOTP, flows.StageRecovery} {
			r.HandleFunc(p+"/auth/"+stage+"/fallback/web", g.limited(g.handleFallback(stage))).Methods(http.MethodGet, http.MethodPost)
		}
	}
}

// fallbackData is the fallback pages' template data.
type fallbackData struct {
	Stage string
	// Recovery: the field asks for a recovery code (the recovery page, or the
	// TOTP page with ?recovery=1, which still completes the TOTP stage).
	Recovery bool
	// Operation describes what is being authorised; Request is its method
	// and path ("" for a sign-in).
	Operation string
	Request   string
	// Started is when the session began (UTC), so a user sent someone
	// else's sign-in link has something to notice.
	Started string
	// From and Agent say where a held sign-in started (client address and
	// user agent as the gateway saw them).
	From   string
	Agent  string
	UserID string
	Action string
	// SwitchURL is the same page asking for the other kind of code.
	SwitchURL string
	Digits    int
	// Locked hides the form (too many failed attempts); Wait says how long.
	Locked bool
	Wait   string
}

func (g *Gateway) handleFallback(stage string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		form, ok := httpx.PostedForm(w, r)
		if !ok {
			return
		}
		sessionID := r.URL.Query().Get("session")
		if sessionID == "" {
			httpx.WriteMatrixError(w, httperr.MMissingParam.WithMessage("Missing session"))
			return
		}
		s, err := g.fallbackSession(r, sessionID, stage)
		if err != nil {
			g.fallbackUnusable(w, r, err)
			return
		}
		l := httpx.Logger(r).WithFields(map[string]any{"user_id": s.UserID, "stage": stage})
		q := url.Values{"session": {s.ID}}
		recoveryField := stage == flows.StageRecovery || (r.URL.Query().Get("recovery") == "1")
		if recoveryField && stage == flows.StageTOTP {
			q.Set("recovery", "1")
		}
		d := fallbackData{Stage: stage, Recovery: recoveryField, UserID: s.UserID,
			Action: r.URL.EscapedPath() + "?" + q.Encode(), Digits: g.acc.Params().Digits}
		d.Operation, d.Request = describeOperation(s)
		d.Started = s.CreatedAt.UTC().Format("15:04 UTC, 2 January 2006")
		if isHeldLogin(s) {
			if env, err := g.openHeldEnvelope(s.UserID, s.Data); err == nil {
				d.From, d.Agent = env.Addr, env.UA
			}
		}
		if stage == flows.StageTOTP {
			sw := url.Values{"session": {s.ID}}
			if !recoveryField {
				sw.Set("recovery", "1")
			}
			d.SwitchURL = r.URL.EscapedPath() + "?" + sw.Encode()
		}
		page := PageData{Title: "Confirm with two-factor authentication", Data: &d,
			CSRF: csrfToken("fallback:"+stage, s.ID, g.now())}

		if secondFactorDone(s) {
			g.renderFallbackDone(w, http.StatusOK, d)
			return
		}
		if r.Method == http.MethodGet {
			renderPage(w, http.StatusOK, "fallback.html", page)
			return
		}

		if !checkCSRF("fallback:"+stage, s.ID, form.Get("csrf"), g.now()) {
			page.Error = "This form has expired. Please try again."
			renderPage(w, http.StatusForbidden, "fallback.html", page)
			return
		}
		code := strings.TrimSpace(form.Get("code"))
		if code == "" {
			httpx.WriteMatrixError(w, httperr.MMissingParam.WithMessage("Missing code"))
			return
		}
		if !slices.Contains(s.NextStages(), stage) {
			page.Error = "Complete the previous step in your app first, then try again."
			renderPage(w, http.StatusForbidden, "fallback.html", page)
			return
		}
		if stage == flows.StageTOTP {
			err = flows.VerifyEither(ctx, g.acc, s.UserID, code)
		} else {
			err = g.acc.VerifyRecovery(ctx, s.UserID, code)
		}
		if le, locked := account.IsLocked(err); locked {
			if isHeldLogin(s) {
				// As on /login: a locked-out held login dies now.
				if taken, terr := g.engine.Finish(ctx, s); terr == nil {
					if derr := g.discardHeld(ctx, taken.UIASession); derr != nil {
						l.WithError(derr).Error("logging out a locked-out held login")
					}
				}
			}
			l.Warn("fallback page: locked out")
			d.Locked, d.Wait = true, httperr.FormatWait(le.RetryAfter)
			page.Error = "Too many failed attempts. Try again in " + d.Wait + "."
			w.Header().Set("Retry-After", strconv.FormatInt(int64((le.RetryAfter+time.Second-1)/time.Second), 10))
			renderPage(w, http.StatusTooManyRequests, "fallback.html", page)
			return
		}
		if errors.Is(err, account.ErrInvalidCode) || errors.Is(err, account.ErrMissingCode) {
			l.Info("fallback page: invalid code")
			page.Error = "Invalid code"
			renderPage(w, http.StatusForbidden, "fallback.html", page)
			return
		}
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if err := g.engine.MarkCompleted(ctx, s, stage); err != nil {
			// Another request completed a stage meanwhile: fine if it was the
			// second factor.
			if again, lerr := g.engine.LoadKind(ctx, s.ID, s.Kind); lerr == nil && secondFactorDone(again) {
				g.renderFallbackDone(w, http.StatusOK, d)
				return
			}
			httpx.WriteError(w, r, err)
			return
		}
		l.Info("fallback page: stage completed")
		g.renderFallbackDone(w, http.StatusOK, d)
	}
}

func (g *Gateway) renderFallbackDone(w http.ResponseWriter, status int, d fallbackData) {
	renderPage(w, status, "fallback_done.html", PageData{Title: "Done", Data: &d})
}

// fallbackUnusable answers a fallback link that cannot be used: a browser
// gets a page saying what to do, anything else the Matrix error.
func (g *Gateway) fallbackUnusable(w http.ResponseWriter, r *http.Request, err error) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		httpx.WriteError(w, r, err)
		return
	}
	status, text := httperr.Page(err)
	renderPage(w, status, "message.html", PageData{Title: "Confirm with two-factor authentication", Data: &messageData{[]string{text}}})
}

// fallbackSession loads session id for the fallback page of stage: it must be
// live, have stage in one of its flows, and not be a sign-in page login or a
// login token (those never complete through a fallback page), nor a held
// /login unless FallbackCompletesLogin.
func (g *Gateway) fallbackSession(r *http.Request, id, stage string) (*uia.Session, error) {
	s, err := g.engine.LoadKind(r.Context(), id, storage.KindUIA, storage.KindHeldLogin)
	if err != nil {
		return nil, err
	}
	if isHeldLogin(s) && !g.cfg.FallbackCompletesLogin {
		return nil, httperr.ErrHeldLoginHere
	}
	for _, f := range s.Flows {
		if slices.Contains(f, stage) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: the session has no %s stage", uia.ErrUnknownSession, stage)
}

// isHeldLogin reports whether s holds a /login response (POST /login with a
// password, waiting for the second factor).
func isHeldLogin(s *uia.Session) bool { return s.Kind == storage.KindHeldLogin }

// secondFactorDone reports whether a 2FA stage is among s's completed stages.
func secondFactorDone(s *uia.Session) bool {
	return slices.ContainsFunc(s.Completed, flows.IsSecondFactor)
}

// describeOperation names what session s authorises, for the page (the
// spec's advice for fallback and SSO pages: show the user the operation).
func describeOperation(s *uia.Session) (what, request string) {
	if isHeldLogin(s) {
		return "Sign-in", ""
	}
	request = s.Method + " " + s.Path
	p := s.Path
	switch {
	case strings.HasSuffix(p, "/delete_devices"):
		what = "Sign out (delete) devices"
	case strings.Contains(p, "/devices/") && s.Method == http.MethodDelete:
		what = "Sign out (delete) a device"
	case strings.HasSuffix(p, "/account/password"):
		what = "Change your password"
	case strings.HasSuffix(p, "/account/deactivate"):
		what = "Deactivate your account"
	case strings.HasSuffix(p, "/account/3pid/add"):
		what = "Add an email address or phone number"
	case strings.HasSuffix(p, "/keys/device_signing/upload"):
		what = "Set up or reset cross-signing keys"
	case strings.HasSuffix(p, "/login/get_token"):
		what = "Sign in on another device"
	case strings.HasSuffix(p, "/account/two-factor/totp") && s.Method == http.MethodDelete:
		what = "Turn off two-factor authentication"
	case strings.HasSuffix(p, "/account/two-factor/totp"):
		what = "Set up two-factor authentication again"
	case strings.HasSuffix(p, "/account/two-factor/recovery"):
		what = "Generate new recovery codes"
	default:
		what = "An account change"
	}
	return what, request
}
