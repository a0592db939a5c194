package pages

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The OAuth 2.0 authorization page (GET/POST /_matrix2fa/oauth2/authorize):
// the client's name and URI (the consent: "Sign in and allow" or "Deny"),
// username and password, then for a user with 2FA the TOTP or recovery code
// (same replay guard, lockout and audit as every entry point; skipped in a
// browser remembered for the user, remember.go), or for a user under the
// enforcement policy without 2FA its enrolment (oauth_enrol.go).
//
// The password is checked with a throw-away homeserver login (logged out at
// once); the login the client gets, with the device ID its scope names, is
// made only after the second factor. So a password alone never creates,
// reuses or signs out the requested device. Between the password and the
// code the password waits sealed (account.SecretBox) in a session of kind
// storage.KindOAuthSignIn for the sign-in TTL; the code step takes it.
//
// Anti-forgery as on the sign-in page: a page cookie, and forms carrying an
// HMAC of it bound to the authorization request (and to the session on the
// code step). Every POST re-checks the whole authorization request.

const oauthCookie = "m2fa_oauth"

// OAuth is what the authorization page needs of the OAuth server (oauth.Server).
type OAuth interface {
	ParseAuthorize(ctx context.Context, q url.Values) (*oauth.Request, error)
	IssueCode(ctx context.Context, req *oauth.Request, login *mautrix.RespLogin) (string, error)
	SignInTTL() time.Duration
	SealApproval(sid, password string) ([]byte, error)
	Registration(ctx context.Context) oauth.Registration
	GrantLogin(ctx context.Context, userID, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error)
}

// oauthData is the authorization page's template data.
type oauthData struct {
	ClientName, ClientURI, Action string
	Username, UserID, Session     string
	Digits                        int
	// Create is the create view (prompt=create); Notice a sentence above
	// the form; CreateHref and SignInHref link the two views.
	Create                 *createView
	Notice                 string
	CreateHref, SignInHref string
	enrolData
	rememberOffer
}

// authz is one request to the authorization page, as read so far.
type authz struct {
	req    *oauth.Request
	form   url.Values
	cookie string
	fresh  bool
	page   PageData
	d      *oauthData
	reg    oauth.Registration
}

// Authorize is the authorization page.
func (p *Pages) Authorize(w http.ResponseWriter, r *http.Request) {
	form, ok := httpx.PostedForm(w, r)
	if !ok {
		return
	}
	req, err := p.oauth.ParseAuthorize(r.Context(), r.URL.Query())
	switch {
	case req == nil && (errors.Is(err, oauth.ErrNoClient) || errors.Is(err, oauth.ErrBadRedirect)):
		httpx.Logger(r).WithError(err).Info("oauth page: refused request")
		renderMessage(w, http.StatusBadRequest, "Sign-in link not valid",
			"This sign-in link is not valid: the application is unknown or did not register where to return to.")
		return
	case req == nil:
		status, text := httperr.Page(err)
		httpx.Logger(r).WithError(err).Error("oauth page: reading the request")
		renderMessage(w, status, "Something went wrong", text)
		return
	case err != nil:
		found(w, req.ErrorRedirect(err))
		return
	}
	w = &formActionCSP{ResponseWriter: w, origin: formOrigin(req)}
	q := p.readAuthorize(w, r, req, form)
	switch {
	case r.Method == http.MethodGet:
		p.authorizeView(w, q, http.StatusOK)
	case q.fresh || !p.csrf.check("oauth\x00"+r.URL.RawQuery, q.cookie, form.Get("csrf"), p.now()) && form.Get("step") != "code" && !enrolSteps[form.Get("step")]:
		q.page.Error = "This page has expired (or cookies are blocked). Please try again."
		p.authorizeView(w, q, http.StatusForbidden)
	case form.Get("step") == "deny":
		found(w, req.Denied())
	case form.Get("step") == "create":
		p.authorizeCreate(w, r, q)
	case form.Get("step") == "code":
		p.authorizeCode(w, r, q)
	case enrolSteps[form.Get("step")]:
		p.authorizeEnrolStep(w, r, q, form.Get("step"))
	default:
		p.authorizeCredentials(w, r, q)
	}
}

// formOrigin is what the page's form-action must allow besides itself: the
// client's redirect target (the POST answers with a redirect there).
func formOrigin(req *oauth.Request) string {
	o := req.ClientHost()
	if host, ok := strings.CutPrefix(o, "https://"); ok && redirectHost.MatchString(host) {
		return o
	}
	if host, ok := strings.CutPrefix(o, "http://"); ok && redirectHost.MatchString(host) {
		return o
	}
	if scheme, ok := strings.CutSuffix(o, ":"); ok && scheme != "" && strings.Trim(strings.ToLower(scheme), "abcdefghijklmnopqrstuvwxyz0123456789+.-") == "" {
		return o
	}
	return ""
}

// found redirects the browser to loc, leaking nothing on the way.
func found(w http.ResponseWriter, loc string) {
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
}

// readAuthorize reads the page cookie and sets up the page data.
func (p *Pages) readAuthorize(w http.ResponseWriter, r *http.Request, req *oauth.Request, form url.Values) *authz {
	q := &authz{req: req, form: form}
	if c, err := r.Cookie(oauthCookie); err == nil && len(c.Value) >= 22 && len(c.Value) <= 64 {
		q.cookie = c.Value
	} else {
		q.cookie, q.fresh = httpx.RandomToken(16), true
		http.SetCookie(w, &http.Cookie{Name: oauthCookie, Value: q.cookie, Path: oauth.Prefix, HttpOnly: true,
			SameSite: http.SameSiteLaxMode, Secure: p.secure(r)})
	}
	q.d = &oauthData{ClientName: req.Client.DisplayName(), ClientURI: req.Client.ClientURI, Action: r.URL.RequestURI(),
		Digits: p.acc.Params().Digits, rememberOffer: p.rememberOffer(), Username: req.LoginHint}
	q.page = PageData{Title: "Sign in to " + q.d.ClientName, Data: q.d, CSRF: p.csrf.token("oauth\x00"+r.URL.RawQuery, q.cookie, p.now())}
	q.reg = p.oauth.Registration(r.Context())
	p.promptHrefs(r, q)
	return q
}

// authorizeCredentials checks username and password with a throw-away
// homeserver login. Without 2FA the client's login is made at once (or,
// under the enforcement policy, enrolment is shown first); with it, the
// code step is next, unless this browser is remembered for the user.
func (p *Pages) authorizeCredentials(w http.ResponseWriter, r *http.Request, q *authz) {
	user, password := strings.TrimSpace(q.form.Get("username")), q.form.Get("password")
	q.d.Username = user
	p.authorizeSignIn(w, r, q, user, password)
}

// authorizeSignIn signs user in with password (from the sign-in view, or
// just registered on the create view): the enrolment the policy asks for,
// the code step for a user with 2FA, else the client's login at once.
func (p *Pages) authorizeSignIn(w http.ResponseWriter, r *http.Request, q *authz, user, password string) {
	userID, enabled, st, err := p.authorizeCheck(r, user, password)
	if err != nil {
		p.signInRefusedPage(w, r, q.page, "oauth.html", err)
		return
	}
	switch {
	case !enabled && st.Applies:
		p.authorizeEnrolFirst(w, r, q, userID, password, st)
		return
	case !enabled:
		p.authorizeFinish(w, r, q, userID, password)
		return
	case p.remembered(r, userID):
		httpx.Logger(r).WithField("user_id", userID).Info("oauth page: browser remembered (no code)")
		p.authorizeFinish(w, r, q, userID, password)
		return
	}
	sid, err := p.holdPassword(r.Context(), userID, password, [][]string{})
	if err != nil {
		p.signInRefusedPage(w, r, q.page, "oauth.html", err)
		return
	}
	q.d.UserID, q.d.Session = userID, sid
	q.page.CSRF = p.csrf.token("oauth-code\x00"+r.URL.RawQuery+"\x00"+sid, q.cookie, p.now())
	httpx.Logger(r).WithField("user_id", userID).Info("oauth page: password right, asking for the code")
	renderPage(w, http.StatusOK, "oauth.html", q.page)
}

// authorizeCheck checks user's password with a throw-away homeserver login
// and, for a user without 2FA, asks the enforcement policy (with that
// login's token) before logging it out.
func (p *Pages) authorizeCheck(r *http.Request, user, password string) (userID string, enabled bool, st policy.State, err error) {
	check, err := p.passwordLogin(r, user, password)
	if err != nil {
		return "", false, st, err
	}
	userID = string(check.UserID)
	enabled, err = p.acc.Enabled(r.Context(), userID)
	if err == nil && !enabled {
		st, err = p.policyState(r.Context(), userID, check.AccessToken)
	}
	if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), check.AccessToken); err == nil {
		err = lerr
	}
	return userID, enabled, st, err
}

func oauthOwner(userID string) string { return "oauth-signin:" + userID }

// holdPassword keeps password sealed in a new sign-in session of userID
// with flows (none for the code step; stageEnrol for enrolment).
func (p *Pages) holdPassword(ctx context.Context, userID, password string, flows [][]string) (string, error) {
	sealed, err := p.box.Seal(oauthOwner(userID), []byte(password))
	if err != nil {
		return "", err
	}
	sid := httpx.RandomToken(24)
	now := p.now()
	err = p.store.CreateSession(ctx, storage.UIASession{ID: sid, Kind: storage.KindOAuthSignIn, UserID: userID, Method: "OAUTH",
		Path: "/authorize", Flows: flows, Completed: []string{}, Data: append(append([]byte(p.box.KeyID()), 0), sealed...),
		CreatedAt: now, ExpiresAt: now.Add(p.oauth.SignInTTL())})
	return sid, err
}

// authorizeCode is the code step of the session in the form (never one
// waiting for enrolment: its password is released by enrolling only).
func (p *Pages) authorizeCode(w http.ResponseWriter, r *http.Request, q *authz) {
	sid := q.form.Get("session")
	s, ok := p.oauthSession(r, q, "oauth-code", false)
	if !ok {
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "oauth.html", q.page)
		return
	}
	q.d.UserID, q.d.Session = s.UserID, sid
	q.page.CSRF = p.csrf.token("oauth-code\x00"+r.URL.RawQuery+"\x00"+sid, q.cookie, p.now())
	err := flows.VerifyEither(r.Context(), p.acc, s.UserID, q.form.Get("code"))
	verified := err == nil
	if errors.Is(err, account.ErrNotEnabled) {
		err = nil // 2FA was turned off meanwhile: the password was right
	}
	if errors.Is(err, account.ErrInvalidCode) || errors.Is(err, account.ErrMissingCode) {
		p.signInRefusedPage(w, r, q.page, "oauth.html", err)
		return
	}
	var password string
	if err == nil {
		password, err = p.takePassword(r.Context(), sid)
	}
	if err != nil { // locked out, taken meanwhile, or broken: the sign-in ends
		p.authorizeEnded(w, r, q, err)
		return
	}
	httpx.Logger(r).WithField("user_id", s.UserID).Info("oauth page: second factor right")
	if verified && q.form.Get("remember") != "" {
		p.rememberBrowser(w, r, s.UserID)
	}
	p.authorizeFinish(w, r, q, s.UserID, password)
}

// oauthSession loads the form's pending sign-in: one waiting for enrolment
// when enrol, else one waiting for the code; its token must be purpose's.
func (p *Pages) oauthSession(r *http.Request, q *authz, purpose string, enrol bool) (storage.UIASession, bool) {
	sid := q.form.Get("session")
	s, err := p.store.Session(r.Context(), sid)
	ok := err == nil && s.Kind == storage.KindOAuthSignIn && p.now().Before(s.ExpiresAt) && isEnrolFlows(s.Flows) == enrol &&
		p.csrf.check(purpose+"\x00"+r.URL.RawQuery+"\x00"+sid, q.cookie, q.form.Get("csrf"), p.now())
	return s, ok
}

// takePassword takes pending sign-in sid and opens its password.
func (p *Pages) takePassword(ctx context.Context, sid string) (string, error) {
	taken, err := p.store.TakeSession(ctx, sid)
	if err != nil {
		return "", err
	}
	keyID, sealed, _ := strings.Cut(string(taken.Data), "\x00")
	password, err := p.box.Open(oauthOwner(taken.UserID), keyID, []byte(sealed))
	return string(password), err
}

// authorizeEnded shows err on the first step: the pending sign-in is over.
func (p *Pages) authorizeEnded(w http.ResponseWriter, r *http.Request, q *authz, err error) {
	q.d.UserID, q.d.Session = "", ""
	q.page.CSRF = p.csrf.token("oauth\x00"+r.URL.RawQuery, q.cookie, p.now())
	p.signInRefusedPage(w, r, q.page, "oauth.html", err)
}

// authorizeFinish logs userID in at the homeserver with the requested device
// ID, keeps that login behind an authorization code and sends the browser
// back to the client with it.
func (p *Pages) authorizeFinish(w http.ResponseWriter, r *http.Request, q *authz, userID, password string) {
	l := httpx.Logger(r).WithFields(map[string]any{"user_id": userID, "client_id": q.req.Client.ID, "device_id": q.req.DeviceID})
	login, err := p.oauth.GrantLogin(r.Context(), userID, password, id.DeviceID(q.req.DeviceID), q.req.Client.DisplayName())
	if err == nil && string(login.UserID) != userID {
		err = errors.New("pages: the homeserver logged in another user")
	}
	var loc string
	if err == nil {
		loc, err = p.oauth.IssueCode(r.Context(), q.req, login)
	}
	if err != nil {
		var at string
		if login != nil {
			at = login.AccessToken
		}
		q.d.UserID, q.d.Session = "", ""
		p.signInFailedPage(w, r, q.page, "oauth.html", at, err)
		return
	}
	l.Info("oauth page: signed in; authorization code issued")
	found(w, loc)
}

// signInRefusedPage is signInRefused for a page other than the sign-in page.
func (p *Pages) signInRefusedPage(w http.ResponseWriter, r *http.Request, page PageData, name string, err error) {
	p.signInRefused(w, r, &signin{page: page}, name, err)
}

// signInFailedPage logs accessToken out (a login the failure left unused)
// and shows err on page name through the one error table.
func (p *Pages) signInFailedPage(w http.ResponseWriter, r *http.Request, page PageData, name, accessToken string, err error) {
	if accessToken != "" {
		if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), accessToken); lerr != nil {
			httpx.Logger(r).WithError(lerr).Error("sign-in page: logging out an unused login")
		}
	}
	p.renderError(w, r, name, page, err)
}
