package pages

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// The enforcement policy on the sign-in page: after a right password, a user
// under the policy without 2FA is shown enrolment (QR code, then a code from
// it, then the recovery codes, once) before the login token is issued.
// Within the grace period the page says how many days are left and offers
// "Not now"; after it, enrolling is the only way on. The homeserver's login
// is held meanwhile in a KindSignIn session whose one flow is stageEnrol:
// the code step never releases it (isEnrolSession), only "continue" by the
// sign-in that confirmed the enrolment, or "skip" while the user has no 2FA
// and the policy, asked again with the held login's own token, does not
// block them. The enrolment's secret rides
// in the form sealed for the session (as the self-service page keeps it in
// its web session), so a mistyped code shows the same QR code again.

// stageEnrol marks a held sign-in waiting for enrolment.
const stageEnrol = "m.matrix2fa.enrol"

// enrolSteps are the form steps of the enrolment (CSRF bound to the session).
var enrolSteps = map[string]bool{"enrol": true, "skip": true, "continue": true}

func isEnrolSession(s *uia.Session) bool { return isEnrolFlows(s.Flows) }

// isEnrolFlows reports whether a pending sign-in's flows mark it as waiting
// for enrolment (the OAuth page's sessions are marked alike).
func isEnrolFlows(flows [][]string) bool {
	return len(flows) == 1 && slices.Equal(flows[0], []string{stageEnrol})
}

func signInEnrolOwner(sid string) string { return "signin-enrol:" + sid }

// enrolFirst asks the policy about a user without 2FA who just gave the
// right password; under it, the login is held and enrolment shown (true:
// answered). Outside it, false: the login token is issued as before.
func (p *Pages) enrolFirst(w http.ResponseWriter, r *http.Request, q *signin, login *mautrix.RespLogin, body []byte) bool {
	if p.policy == nil {
		return false
	}
	userID := string(login.UserID)
	st, err := p.policy.Evaluate(policy.WithAccessToken(r.Context(), login.AccessToken), userID)
	if err == nil && !st.Applies {
		return false
	}
	var s *uia.Session
	if err == nil {
		s, err = p.held.Hold(r.Context(), storage.KindSignIn, userID, [][]string{{stageEnrol}}, "", body, p.origin(r))
	}
	if err == nil {
		err = p.startSignInEnrol(r.Context(), q, s, st)
	}
	if err != nil {
		p.signInFailed(w, r, q, login.AccessToken, err)
		return true
	}
	httpx.Logger(r).WithField("user_id", userID).WithField("required", st.Enforced).Info("sign-in page: enrolment under the policy")
	renderPage(w, http.StatusOK, "signin_enrol.html", q.page)
	return true
}

// startSignInEnrol starts an enrolment for held sign-in s and puts it on the page.
func (p *Pages) startSignInEnrol(ctx context.Context, q *signin, s *uia.Session, st policy.State) error {
	ev, sealed, err := p.sealNewEnrolment(ctx, s.UserID, signInEnrolOwner(s.ID))
	if err != nil {
		return err
	}
	p.enrolStep(q, s, st)
	q.d.Enrol, q.d.Sealed = ev, sealed
	return nil
}

// sealNewEnrolment starts an enrolment for userID (the sign-in and OAuth
// pages' enrolment under the policy): its view, and its secret sealed for
// owner (the pending sign-in) to ride in the form.
func (p *Pages) sealNewEnrolment(ctx context.Context, userID, owner string) (*enrolView, string, error) {
	en, err := p.acc.Enrol(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	se := sealedEnrolment{Secret: en.Secret, URI: en.URI, Params: en.Params, ExpiresAt: en.ExpiresAt}
	plain, _ := json.Marshal(se)
	sealed, err := p.box.Seal(owner, plain)
	clear(plain)
	if err != nil {
		return nil, "", err
	}
	return enrolViewOf(se, en.QRPNG, false), base64.RawURLEncoding.EncodeToString(sealed), nil
}

// confirmEnrolment confirms userID's enrolment with form's code: the
// recovery codes. On a wrong or missing code, again is the enrolment (form's
// "enrolment", sealed for owner) to show again; nil when the pending sign-in
// must end (expired, locked out, broken).
func (p *Pages) confirmEnrolment(ctx context.Context, form url.Values, userID, owner string) (codes []string, again *enrolView, err error) {
	sealed, _ := base64.RawURLEncoding.DecodeString(form.Get("enrolment"))
	ev, ok := p.openEnrolment(ctx, userID, owner, sealed)
	codes, err = p.acc.Confirm(ctx, userID, strings.ReplaceAll(form.Get("code"), " ", ""))
	if err == nil {
		return codes, nil, nil
	}
	_, locked := account.IsLocked(err)
	if !ok || locked || (!errors.Is(err, account.ErrInvalidCode) && !errors.Is(err, account.ErrMissingCode)) {
		return nil, nil, err
	}
	return nil, ev, err
}

// noticeOf is what the pages say of policy state st at now.
func noticeOf(st policy.State, now time.Time) policyNotice {
	return policyNotice{Required: st.Enforced, DaysLeft: st.DaysLeft(now)}
}

// enrolStep puts held sign-in s and the policy's state on the page.
func (p *Pages) enrolStep(q *signin, s *uia.Session, st policy.State) {
	q.d.Session, q.d.UserID = s.ID, s.UserID
	q.d.policyNotice = noticeOf(st, p.now())
	q.page.CSRF = p.csrf.token("signin-enrol\x00"+q.raw+"\x00"+s.ID, q.cookie, p.now())
}

// signInEnrolStep runs a step of the enrolment: "enrol" confirms the code,
// "continue" releases the login once 2FA is on, "skip" releases it while the
// policy does not block the user.
func (p *Pages) signInEnrolStep(w http.ResponseWriter, r *http.Request, q *signin, step string) {
	sid := q.form.Get("session")
	s, err := p.engine.LoadKind(r.Context(), sid, storage.KindSignIn)
	if err == nil && !isEnrolSession(s) {
		err = uia.ErrUnknownSession
	}
	if err != nil || !p.csrf.check("signin-enrol\x00"+q.raw+"\x00"+sid, q.cookie, q.form.Get("csrf"), p.now()) {
		if err != nil && !errors.Is(err, uia.ErrUnknownSession) {
			httpx.Logger(r).WithError(err).Error("sign-in page: loading the pending login")
		}
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", q.page)
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", s.UserID))
	switch step {
	case "enrol":
		p.signInConfirm(w, r, q, s)
	case "continue":
		p.signInRelease(w, r, q, s, true)
	default:
		p.signInRelease(w, r, q, s, false)
	}
}

// signInConfirm confirms the enrolment with the form's code and shows the
// recovery codes, once; a wrong code shows the same QR code again.
func (p *Pages) signInConfirm(w http.ResponseWriter, r *http.Request, q *signin, s *uia.Session) {
	ctx := r.Context()
	codes, ev, err := p.confirmEnrolment(ctx, q.form, s.UserID, signInEnrolOwner(s.ID))
	if err == nil {
		// Only this sign-in, which confirmed the enrolment, may "continue".
		err = p.engine.MarkCompleted(ctx, s, stageEnrol)
	}
	if err == nil {
		httpx.Logger(r).Info("sign-in page: two-factor authentication enabled under the policy")
		q.d.Session, q.d.UserID, q.d.Codes, q.d.CodesHref = s.ID, s.UserID, codes, codesHref(s.UserID, codes)
		q.page.CSRF = p.csrf.token("signin-enrol\x00"+q.raw+"\x00"+s.ID, q.cookie, p.now())
		renderPage(w, http.StatusOK, "signin_codes.html", q.page)
		return
	}
	if ev == nil {
		p.held.Drop(ctx, s, httpx.Logger(r)) // expired, locked out or broken: the login ends
		q.d.Session = ""
		p.signInRefused(w, r, q, "signin.html", err)
		return
	}
	st, _ := p.policyState(ctx, s.UserID, "")
	p.enrolStep(q, s, st)
	q.d.Enrol, q.d.Sealed = ev, q.form.Get("enrolment")
	p.signInRefused(w, r, q, "signin_enrol.html", err)
}

// signInRelease issues the login token for held sign-in s: with enrolled,
// once this sign-in confirmed the enrolment; else ("Not now") while the user
// has no 2FA and the policy, asked with the held login's own token, does not
// block the user. "Continue" on a sign-in that did not confirm, or "Not now"
// once 2FA is on (turned on elsewhere, perhaps by the user while someone else
// holds the password), ends that sign-in: a new one asks for the code.
func (p *Pages) signInRelease(w http.ResponseWriter, r *http.Request, q *signin, s *uia.Session, enrolled bool) {
	ctx := r.Context()
	on, err := p.acc.Enabled(ctx, s.UserID)
	if err == nil && (enrolled != on || enrolled && !s.HasCompleted(stageEnrol)) {
		httpx.Logger(r).WithField("continue", enrolled).Warn("sign-in page: enrolment step refused (not confirmed by this sign-in, or 2FA on elsewhere)")
		p.held.Drop(ctx, s, httpx.Logger(r))
		q.page.Error = "Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", q.page)
		return
	}
	var body []byte
	if err == nil {
		body, err = p.held.Release(ctx, s)
	}
	var login mautrix.RespLogin
	if err == nil && !on {
		var st policy.State
		json.Unmarshal(body, &login)
		if st, err = p.policy.Evaluate(policy.WithAccessToken(ctx, login.AccessToken), s.UserID); err == nil && st.Enforced {
			httpx.Logger(r).Warn("sign-in page: \"not now\" refused, the grace period is over")
			p.hs.Logout(context.WithoutCancel(ctx), login.AccessToken)
			q.page.Error = "Two-factor authentication is required for this account now. Please sign in again and set it up."
			renderPage(w, http.StatusForbidden, "signin.html", q.page)
			return
		}
	}
	if err != nil {
		p.signInFailed(w, r, q, login.AccessToken, err)
		return
	}
	httpx.Logger(r).WithField("enrolled", on).Info("sign-in page: signed in under the policy")
	p.issueLoginToken(w, r, s.UserID, body, q)
}
