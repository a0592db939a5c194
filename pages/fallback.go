package pages

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

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

// fallbackData is the fallback pages' template data.
type fallbackData struct {
	Stage string
	// Recovery: the field asks for a recovery code (the recovery page, or the
	// TOTP page with ?recovery=1, which still completes the TOTP stage).
	Recovery bool
	// Email: the e-mail stage's page (a button to send a code, its field).
	Email bool
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

// Fallback returns the fallback page of stage: GET shows the form, POST
// checks the code and completes the stage on the session.
func (p *Pages) Fallback(stage string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		form, ok := httpx.PostedForm(w, r)
		if !ok {
			return
		}
		s, err := p.fallbackSession(r, r.URL.Query().Get("session"), stage)
		if err != nil {
			p.fallbackUnusable(w, r, err)
			return
		}
		page := p.fallbackPage(r, s, stage)
		switch {
		case flows.SecondFactorDone(s):
			renderFallbackDone(w, page)
		case r.Method == http.MethodGet:
			renderPage(w, http.StatusOK, "fallback.html", page)
		case !p.csrf.check("fallback:"+stage, s.ID, form.Get("csrf"), p.now()):
			page.Error = "This form has expired. Please try again."
			renderPage(w, http.StatusForbidden, "fallback.html", page)
		case stage == flows.StageEmail && form.Get("send") != "":
			p.fallbackSend(w, r, s, page)
		default:
			p.fallbackSubmit(w, r, s, stage, strings.TrimSpace(form.Get("code")), page)
		}
	}
}

// fallbackPage is the page for session s: what it authorises, for whom,
// since when and (a held sign-in) from where.
func (p *Pages) fallbackPage(r *http.Request, s *uia.Session, stage string) PageData {
	recoveryField := stage == flows.StageRecovery || r.URL.Query().Get("recovery") == "1"
	link := func(recovery bool) string {
		q := url.Values{"session": {s.ID}}
		if recovery && stage == flows.StageTOTP {
			q.Set("recovery", "1")
		}
		return r.URL.EscapedPath() + "?" + q.Encode()
	}
	d := &fallbackData{Stage: stage, Recovery: recoveryField, Email: stage == flows.StageEmail, UserID: s.UserID,
		Action: link(recoveryField), Digits: p.acc.Params().Digits, Started: s.CreatedAt.UTC().Format("15:04 UTC, 2 January 2006")}
	if d.Email {
		d.Digits = account.EmailCodeDigits
	}
	d.Operation, d.Request = describeOperation(s)
	if isHeldLogin(s) {
		if env, err := p.held.Open(s); err == nil {
			d.From, d.Agent = env.Addr, env.UA
		}
	}
	if stage == flows.StageTOTP {
		d.SwitchURL = link(!recoveryField)
	}
	return PageData{Title: "Confirm with two-factor authentication", Data: d, CSRF: p.csrf.token("fallback:"+stage, s.ID, p.now())}
}

// fallbackSubmit checks code for stage and completes it on s. A lockout ends
// a held login at once, as on /login.
func (p *Pages) fallbackSubmit(w http.ResponseWriter, r *http.Request, s *uia.Session, stage, code string, page PageData) {
	ctx := r.Context()
	l := httpx.Logger(r).WithFields(map[string]any{"user_id": s.UserID, "stage": stage})
	if code == "" {
		httpx.WriteMatrixError(w, httperr.MMissingParam.WithMessage("Missing code"))
		return
	}
	err := uia.ErrStageNotAllowed
	if slices.Contains(s.NextStages(), stage) {
		switch stage {
		case flows.StageTOTP:
			err = flows.VerifyEither(ctx, p.acc, s.UserID, code)
		case flows.StageEmail:
			err = p.acc.VerifyEmail(ctx, s.UserID, code)
		default:
			err = p.acc.VerifyRecovery(ctx, s.UserID, code)
		}
	}
	if err == nil {
		err = p.completeStage(ctx, s, stage)
	}
	if err == nil {
		l.Info("fallback page: stage completed")
		renderFallbackDone(w, page)
		return
	}
	if wait, locked := httperr.Wait(err); locked {
		if isHeldLogin(s) {
			p.held.Drop(ctx, s, l)
		}
		d := page.Data.(*fallbackData)
		d.Locked, d.Wait = true, httperr.FormatWait(wait)
		httpx.SetRetryAfter(w.Header(), wait)
	}
	p.renderError(w, r, "fallback.html", page, err)
}

// fallbackSend mails a new e-mail code for session s and shows the page
// again, saying where it went.
func (p *Pages) fallbackSend(w http.ResponseWriter, r *http.Request, s *uia.Session, page PageData) {
	err := uia.ErrStageNotAllowed
	if slices.Contains(s.NextStages(), flows.StageEmail) {
		var to string
		if to, err = p.codes.SendCode(r.Context(), s.UserID); err == nil {
			err = &flows.CodeSentError{To: to}
		}
	}
	p.renderError(w, r, "fallback.html", page, err)
}

// completeStage records stage on s; another request completing the second
// factor meanwhile is as good.
func (p *Pages) completeStage(ctx context.Context, s *uia.Session, stage string) error {
	err := p.engine.MarkCompleted(ctx, s, stage)
	if err != nil {
		if again, lerr := p.engine.LoadKind(ctx, s.ID, s.Kind); lerr == nil && flows.SecondFactorDone(again) {
			return nil
		}
	}
	return err
}

func renderFallbackDone(w http.ResponseWriter, page PageData) {
	renderPage(w, http.StatusOK, "fallback_done.html", PageData{Title: "Done", Data: page.Data})
}

// fallbackUnusable answers a fallback link that cannot be used: a browser
// gets a page saying what to do, anything else the Matrix error.
func (p *Pages) fallbackUnusable(w http.ResponseWriter, r *http.Request, err error) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		httpx.WriteError(w, r, err)
		return
	}
	status, text := httperr.Page(err)
	renderMessage(w, status, "Confirm with two-factor authentication", text)
}

// fallbackSession loads session id for the fallback page of stage: it must be
// live, have stage in one of its flows, and not be a sign-in page login or a
// login token (those never complete through a fallback page), nor a held
// /login unless FallbackCompletesLogin.
func (p *Pages) fallbackSession(r *http.Request, id, stage string) (*uia.Session, error) {
	if id == "" {
		return nil, httperr.MMissingParam.WithMessage("Missing session")
	}
	s, err := p.engine.LoadKind(r.Context(), id, storage.KindUIA, storage.KindHeldLogin)
	if err != nil {
		return nil, err
	}
	if isHeldLogin(s) && !p.cfg.FallbackCompletesLogin {
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
	case strings.HasSuffix(p, "/account/3pid/add") || strings.HasSuffix(p, "/account/3pid"):
		what = "Add an email address or phone number"
	case strings.HasSuffix(p, "/keys/device_signing/upload"):
		what = "Set up or reset cross-signing keys"
	case strings.HasSuffix(p, "/login/get_token") || strings.HasSuffix(p, "/login/token"):
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
