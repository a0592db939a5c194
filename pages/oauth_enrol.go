package pages

import (
	"context"
	"net/http"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The enforcement policy on the OAuth authorization page, as on the sign-in
// page (signin_enrol.go): after a right password, a user under the policy
// without 2FA is shown enrolment (QR code, a code from it, the recovery
// codes once) before any homeserver login is made for the client; within
// the grace period the page says how many days are left and offers "Not
// now". The password waits sealed in a KindOAuthSignIn session whose one
// flow is stageEnrol: the code step refuses such a session (oauthSession),
// and the enrolment steps refuse the code step's. "continue" needs the token
// only the recovery codes page carries (purpose oauth-enrolled, given after
// a confirmed code in this session) and 2FA on; "skip" needs 2FA still off
// and the policy, asked again with a throw-away login's token, not blocking
// the user. Either takes the session before the client's login is made.

func oauthEnrolOwner(sid string) string { return "oauth-enrol:" + sid }

// authorizeEnrolFirst holds the password of userID, who is under the policy
// without 2FA, and shows enrolment.
func (p *Pages) authorizeEnrolFirst(w http.ResponseWriter, r *http.Request, q *authz, userID, password string, st policy.State) {
	sid, err := p.holdPassword(r.Context(), userID, password, [][]string{{stageEnrol}})
	var ev *enrolView
	var sealed string
	if err == nil {
		ev, sealed, err = p.sealNewEnrolment(r.Context(), userID, oauthEnrolOwner(sid))
	}
	if err != nil {
		p.signInRefusedPage(w, r, q.page, "oauth.html", err)
		return
	}
	p.oauthEnrolStep(r, q, userID, sid, st)
	q.d.Enrol, q.d.Sealed = ev, sealed
	httpx.Logger(r).WithField("user_id", userID).WithField("required", st.Enforced).Info("oauth page: enrolment under the policy")
	renderPage(w, http.StatusOK, "oauth_enrol.html", q.page)
}

// oauthEnrolStep puts pending sign-in sid and the policy's state on the page.
func (p *Pages) oauthEnrolStep(r *http.Request, q *authz, userID, sid string, st policy.State) {
	q.d.UserID, q.d.Session = userID, sid
	q.d.policyNotice = noticeOf(st, p.now())
	q.page.CSRF = p.csrf.token("oauth-enrol\x00"+r.URL.RawQuery+"\x00"+sid, q.cookie, p.now())
}

// authorizeEnrolStep runs a step of the enrolment: "enrol" confirms the
// code, "continue" goes on once 2FA is on, "skip" while the policy does not
// block the user.
func (p *Pages) authorizeEnrolStep(w http.ResponseWriter, r *http.Request, q *authz, step string) {
	purpose := "oauth-enrol"
	if step == "continue" {
		purpose = "oauth-enrolled"
	}
	s, ok := p.oauthSession(r, q, purpose, true)
	if !ok {
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "oauth.html", q.page)
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", s.UserID))
	if step == "enrol" {
		p.authorizeConfirm(w, r, q, s)
		return
	}
	p.authorizeRelease(w, r, q, s, step == "continue")
}

// authorizeConfirm confirms the enrolment with the form's code and shows the
// recovery codes, once; a wrong code shows the same QR code again.
func (p *Pages) authorizeConfirm(w http.ResponseWriter, r *http.Request, q *authz, s storage.UIASession) {
	ctx := r.Context()
	codes, ev, err := p.confirmEnrolment(ctx, q.form, s.UserID, oauthEnrolOwner(s.ID))
	if err == nil {
		httpx.Logger(r).Info("oauth page: two-factor authentication enabled under the policy")
		q.d.UserID, q.d.Session, q.d.Codes, q.d.CodesHref = s.UserID, s.ID, codes, codesHref(s.UserID, codes)
		q.page.CSRF = p.csrf.token("oauth-enrolled\x00"+r.URL.RawQuery+"\x00"+s.ID, q.cookie, p.now())
		renderPage(w, http.StatusOK, "oauth_codes.html", q.page)
		return
	}
	if ev == nil { // expired, locked out or broken: the sign-in ends
		p.store.TakeSession(ctx, s.ID)
		p.authorizeEnded(w, r, q, err)
		return
	}
	st, _ := p.policyState(ctx, s.UserID, "")
	p.oauthEnrolStep(r, q, s.UserID, s.ID, st)
	q.d.Enrol, q.d.Sealed = ev, q.form.Get("enrolment")
	p.signInRefusedPage(w, r, q.page, "oauth_enrol.html", err)
}

// authorizeRelease takes pending sign-in s and goes on to the client's
// login: with enrolled once the user has 2FA, else ("Not now") while the
// user has none and the policy does not block them.
func (p *Pages) authorizeRelease(w http.ResponseWriter, r *http.Request, q *authz, s storage.UIASession, enrolled bool) {
	ctx := r.Context()
	on, err := p.acc.Enabled(ctx, s.UserID)
	if err == nil && on != enrolled { // "continue" without 2FA on, or "Not now" with it on
		httpx.Logger(r).WithField("enrolled", on).Warn("oauth page: enrolment step refused")
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "oauth.html", q.page)
		return
	}
	var password string
	if err == nil {
		password, err = p.takePassword(ctx, s.ID)
	}
	enforced := false
	if err == nil && !enrolled {
		enforced, err = p.enforcedWithPassword(r, s.UserID, password)
	}
	switch {
	case err != nil:
		p.authorizeEnded(w, r, q, err)
	case enforced:
		httpx.Logger(r).Warn("oauth page: \"not now\" refused, the grace period is over")
		q.d.UserID, q.d.Session = "", ""
		q.page.CSRF = p.csrf.token("oauth\x00"+r.URL.RawQuery, q.cookie, p.now())
		q.page.Error = "Two-factor authentication is required for this account now. Please sign in again and set it up."
		renderPage(w, http.StatusForbidden, "oauth.html", q.page)
	default:
		httpx.Logger(r).WithField("enrolled", on).Info("oauth page: signing in under the policy")
		p.authorizeFinish(w, r, q, s.UserID, password)
	}
}

// enforcedWithPassword asks the policy whether it blocks userID, with the
// token of a throw-away homeserver login (for homeserver admins).
func (p *Pages) enforcedWithPassword(r *http.Request, userID, password string) (bool, error) {
	check, err := p.passwordLogin(r, userID, password)
	if err != nil {
		return false, err
	}
	st, err := p.policyState(r.Context(), userID, check.AccessToken)
	if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), check.AccessToken); err == nil {
		err = lerr
	}
	return st.Enforced, err
}
