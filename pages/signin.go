package pages

import (
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// "Sign in with 2FA": an SSO-shaped login for clients that only know password
// and SSO login (they list m.login.sso with our identity provider from GET
// /login). The client sends the browser to /login/sso/redirect[/<id>]
// ?redirectUrl=U; the page asks for username and password, then (for a user
// with 2FA) for a TOTP or recovery code, and sends the browser back to U with
// a single-use loginToken, which the client redeems with POST /login
// {"type":"m.login.token"} (redeemLoginToken, called by handleLogin).
//
// Anti-forgery: GET sets a random page cookie (signinCookie, HttpOnly,
// SameSite=Lax); every form carries a hidden token that is an HMAC (csrfToken)
// of the cookie, the redirectUrl and, on the code step, the pending session
// ID. A cross-site page can neither read nor set the cookie, so it cannot post
// a valid form (no login CSRF, no skipping the redirect confirmation).
//
// Between the password and the code the homeserver's login response is held,
// sealed, in a UIA session with Path heldLoginPath and Method
// pageLoginMethod: Sweep logs it out when it expires (it sweeps by path), and
// neither continueLogin nor the fallback pages accept it (they need Method
// POST). After the code the response moves to a login-token session: its ID
// is the SHA-256 of the token (a database leak yields no usable token), Path
// heldTokenPath, lifetime TokenTTL; Sweep logs out unredeemed ones.
//
// redirectUrl must be http(s). Unless it starts with a RedirectAllowlist
// prefix (at a boundary: the prefix ends with "/", or the URL continues with
// "/", "?" or "#" or ends there) the user first confirms "Continue to
// <host>?"; the confirmation is a token bound like the others.

const (
	signinCookie = "m2fa_signin"
	// pageLoginMethod marks sign-in page logins waiting for their code.
	pageLoginMethod = "SIGNIN"
	// pendingDeviceName names the homeserver device of a sign-in until the
	// client that redeems the login token names it.
	pendingDeviceName = "Signing in (two-factor authentication pending)"
	// genericSignInError is the one error for an unknown user, a wrong
	// password and a wrong code.
	genericSignInError = "Invalid username, password or code"
)

// signinData is the sign-in pages' template data.
type signinData struct {
	Provider string
	// Host and RedirectURL say where the browser goes back to.
	Host        string
	RedirectURL string
	Action      string
	Username    string
	UserID      string
	// Confirm is the redirect confirmation token (non-allow-listed URLs).
	Confirm string
	// Session is the pending login (code step).
	Session string
	Digits  int
	// Email offers a code by e-mail (the user has an address and e-mail
	// codes are on); EmailSent asks for that code.
	Email, EmailSent bool
	enrolData
	rememberOffer
}

// policyNotice is what a page says of the enforcement policy to a user
// without 2FA: it is required now, or in DaysLeft days.
type policyNotice struct {
	Required bool
	DaysLeft int
}

// enrolData is the enforcement policy's enrolment step on the sign-in and
// OAuth pages (signin_enrol.go): the QR code, the enrolment sealed for the
// pending sign-in, the notice; then the recovery codes.
type enrolData struct {
	policyNotice
	Enrol     *enrolView
	Sealed    string
	Codes     []string
	CodesHref template.URL
}

// rememberOffer offers "remember this browser" for RememberDays.
type rememberOffer struct {
	Remember     bool
	RememberDays int
}

// signin is one request to the sign-in page, as read so far.
type signin struct {
	form    url.Values
	cookie  string
	fresh   bool // the page cookie was set just now: a POST cannot be valid
	raw     string
	target  *url.URL
	allowed bool // raw is on the allowlist: no confirmation needed
	page    PageData
	d       *signinData
}

// first is the template a visit starts with.
func (q *signin) first() string {
	if q.allowed {
		return "signin.html"
	}
	return "signin_confirm.html"
}

// SignIn is the "Sign in with 2FA" page (GET /login/sso/redirect[/{idpId}]):
// the form, then its steps (confirm the redirect, credentials, code).
func (p *Pages) SignIn(w http.ResponseWriter, r *http.Request) {
	if idp, ok := mux.Vars(r)["idpId"]; ok {
		if unescaped, err := url.PathUnescape(idp); err == nil {
			idp = unescaped
		}
		if idp != p.cfg.SSOProviderID {
			p.upstream.ServeHTTP(w, r) // the homeserver's own SSO
			return
		}
	}
	form, ok := httpx.PostedForm(w, r)
	if !ok {
		return
	}
	q, w, err := p.readSignIn(w, r, form)
	switch {
	case err != nil:
		httpx.WriteError(w, r, err)
	case r.Method == http.MethodGet:
		renderPage(w, http.StatusOK, q.first(), q.page)
	case p.signInChecked(w, r, q):
		switch step := q.form.Get("step"); {
		case step == "code":
			p.signInCode(w, r, q)
		case enrolSteps[step]:
			p.signInEnrolStep(w, r, q, step)
		default:
			p.signInCredentials(w, r, q)
		}
	}
}

// readSignIn reads the redirect target and the page cookie. The form posts to
// this page, which redirects to the client: the CSP's form-action must allow
// the client's origin too (Chromium checks it on the redirect after a form
// submission), so the writer returned adds it.
func (p *Pages) readSignIn(w http.ResponseWriter, r *http.Request, form url.Values) (*signin, http.ResponseWriter, error) {
	raw := r.URL.Query().Get("redirectUrl")
	if raw == "" {
		return nil, w, httperr.MMissingParam.WithMessage("Missing redirectUrl")
	}
	target, err := parseRedirect(raw)
	if err != nil {
		return nil, w, mautrix.MInvalidParam.WithMessage("redirectUrl must be an absolute http or https URL")
	}
	w = &formActionCSP{ResponseWriter: w, origin: target.Scheme + "://" + target.Host}
	q := &signin{form: form, raw: raw, target: target, allowed: p.redirectAllowed(raw)}
	q.cookie, q.fresh = p.signinCookie(w, r)
	q.d = &signinData{Provider: p.cfg.SSOProviderName, Host: target.Host, RedirectURL: raw,
		Action: r.URL.RequestURI(), Digits: p.acc.Params().Digits, rememberOffer: p.rememberOffer()}
	q.page = PageData{Title: p.cfg.SSOProviderName, Data: q.d, CSRF: p.csrf.token("signin\x00"+raw, q.cookie, p.now())}
	return q, w, nil
}

// signInChecked checks a POST's cookie and tokens (the code step's token,
// bound to its pending login too, is checked in signInCode) and the redirect
// confirmation; it answers itself and returns false unless the credentials
// or code step may go on.
func (p *Pages) signInChecked(w http.ResponseWriter, r *http.Request, q *signin) bool {
	step := q.form.Get("step")
	if q.fresh || (step != "code" && !enrolSteps[step] && !p.csrf.check("signin\x00"+q.raw, q.cookie, q.form.Get("csrf"), p.now())) {
		q.page.Error = "This page has expired (or cookies are blocked). Please try again."
		renderPage(w, http.StatusForbidden, q.first(), q.page)
		return false
	}
	confirm := p.csrf.token("signin-redirect\x00"+q.raw, q.cookie, p.now())
	switch {
	case step == "confirm": // "Continue to <host>": the confirmation itself
		if !q.allowed {
			q.d.Confirm = confirm
		}
		renderPage(w, http.StatusOK, "signin.html", q.page)
		return false
	case !q.allowed && !p.csrf.check("signin-redirect\x00"+q.raw, q.cookie, q.form.Get("confirm"), p.now()):
		q.page.Error = "Please confirm where to continue first."
		renderPage(w, http.StatusForbidden, "signin_confirm.html", q.page)
		return false
	case !q.allowed:
		q.d.Confirm = confirm
	}
	return true
}

// formActionCSP adds origin to the form-action directive of the page's CSP.
type formActionCSP struct {
	http.ResponseWriter
	origin string
}

func (f *formActionCSP) WriteHeader(status int) {
	h := f.Header()
	if csp := h.Get("Content-Security-Policy"); csp != "" {
		h.Set("Content-Security-Policy", strings.Replace(csp, "form-action 'self'", "form-action 'self' "+f.origin, 1))
	}
	f.ResponseWriter.WriteHeader(status)
}

func (f *formActionCSP) Write(b []byte) (int, error) { return f.ResponseWriter.Write(b) }

// signinCookie returns the request's page cookie, or sets a new one and
// reports it fresh (a POST with a fresh cookie cannot carry a valid form).
func (p *Pages) signinCookie(w http.ResponseWriter, r *http.Request) (value string, fresh bool) {
	if c, err := r.Cookie(signinCookie); err == nil && len(c.Value) >= 22 && len(c.Value) <= 64 {
		return c.Value, false
	}
	v := httpx.RandomToken(16)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: v, Path: "/_matrix/client/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: p.secure(r)})
	return v, true
}

// signInCredentials checks username and password with the homeserver. A user
// without 2FA gets the login token now; an enrolled user gets the code step
// (or, when the form already carries a code, the code is checked at once).
func (p *Pages) signInCredentials(w http.ResponseWriter, r *http.Request, q *signin) {
	user, password := strings.TrimSpace(q.form.Get("username")), q.form.Get("password")
	q.d.Username = user
	login, err := p.passwordLogin(r, user, password)
	if err != nil {
		p.signInRefused(w, r, q, "signin.html", err)
		return
	}
	userID := string(login.UserID)
	body, err := json.Marshal(login)
	var enabled bool
	if err == nil {
		enabled, err = p.acc.Enabled(r.Context(), userID)
	}
	if err == nil && !enabled && p.enrolFirst(w, r, q, login, body) {
		return // the policy's enrolment step answered
	}
	var s *uia.Session
	remembered := err == nil && enabled && p.remembered(r, userID)
	if err == nil && enabled && !remembered {
		p.codes.RememberEmails(r.Context(), userID, login.AccessToken)
		s, err = p.held.Hold(r.Context(), storage.KindSignIn, userID, flows.SecondFactorFlows(p.codes.Factors(r.Context(), userID)...), "", body, p.origin(r))
	}
	switch {
	case err != nil:
		p.signInFailed(w, r, q, login.AccessToken, err)
	case !enabled:
		httpx.Logger(r).WithField("user_id", userID).Info("sign-in page: signed in (no 2FA)")
		p.issueLoginToken(w, r, userID, body, q)
	case remembered:
		httpx.Logger(r).WithField("user_id", userID).Info("sign-in page: signed in, browser remembered (no code)")
		p.issueLoginToken(w, r, userID, body, q)
	case strings.TrimSpace(q.form.Get("code")) != "": // username, password and code in one form
		p.codeStep(q, s)
		p.checkSignInCode(w, r, s, q)
	default:
		p.codeStep(q, s)
		httpx.Logger(r).WithField("user_id", userID).Info("sign-in page: password right, asking for the code")
		renderPage(w, http.StatusOK, "signin_code.html", q.page)
	}
}

// errBadCredentials: the one refusal for an unknown user, a wrong password and
// a wrong code (the page says genericSignInError).
var errBadCredentials = errors.New("pages: invalid username, password or code")

// passwordLogin logs user in at the homeserver; its 4xx refusals (but 429)
// are errBadCredentials.
func (p *Pages) passwordLogin(r *http.Request, user, password string) (*mautrix.RespLogin, error) {
	if user == "" || password == "" {
		return nil, errBadCredentials
	}
	login, err := p.hs.PasswordLogin(r.Context(), user, password, "", pendingDeviceName)
	if errcode, refused := httperr.HomeserverRefused(err); refused {
		httpx.Logger(r).WithField("errcode", errcode).Info("sign-in page: homeserver refused the password login")
		return nil, errBadCredentials
	}
	return login, err
}

// codeStep puts the pending login s on the page for the code step.
func (p *Pages) codeStep(q *signin, s *uia.Session) {
	q.d.Session, q.d.UserID = s.ID, s.UserID
	q.d.Email = slices.Contains(s.NextStages(), flows.StageEmail)
	q.page.CSRF = p.csrf.token("signin-code\x00"+q.raw+"\x00"+s.ID, q.cookie, p.now())
}

// signInRefused shows template name again with the refusal for err: the one
// generic text for bad credentials or codes, the wait for a lockout or the
// homeserver's rate limit, "Something went wrong" for the rest.
func (p *Pages) signInRefused(w http.ResponseWriter, r *http.Request, q *signin, name string, err error) {
	if errors.Is(err, errBadCredentials) || errors.Is(err, account.ErrInvalidCode) || errors.Is(err, account.ErrMissingCode) {
		httpx.Logger(r).WithError(err).Info("sign-in page: refused")
		q.page.Error = genericSignInError
		renderPage(w, http.StatusForbidden, name, q.page)
		return
	}
	if wait, ok := httperr.Wait(err); ok {
		httpx.SetRetryAfter(w.Header(), wait)
	} else if wait, ok := httperr.HomeserverLimited(err); ok {
		httpx.SetRetryAfter(w.Header(), wait)
	}
	p.renderError(w, r, name, q.page, err)
}

// signInFailed logs a failure after a successful password login, logs that
// login out again and shows the error (its status and sentence from the one
// table: 503 while the database is down, 502 for the homeserver, 500 else).
func (p *Pages) signInFailed(w http.ResponseWriter, r *http.Request, q *signin, accessToken string, err error) {
	p.signInFailedPage(w, r, q.page, "signin.html", accessToken, err)
}

// signInCode is the code step: the pending login in the form's session field.
func (p *Pages) signInCode(w http.ResponseWriter, r *http.Request, q *signin) {
	sid := q.form.Get("session")
	s, err := p.engine.LoadKind(r.Context(), sid, storage.KindSignIn)
	if err == nil && isEnrolSession(s) {
		err = uia.ErrUnknownSession // its login is released by enrolling only
	}
	if err != nil || !p.csrf.check("signin-code\x00"+q.raw+"\x00"+sid, q.cookie, q.form.Get("csrf"), p.now()) {
		if err != nil && !errors.Is(err, uia.ErrUnknownSession) {
			httpx.Logger(r).WithError(err).Error("sign-in page: loading the pending login")
		}
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", q.page)
		return
	}
	p.codeStep(q, s)
	if q.form.Get("send") != "" {
		p.signInSendCode(w, r, s, q)
		return
	}
	p.checkSignInCode(w, r, s, q)
}

// signInSendCode mails an e-mail code for pending login s and shows the
// code step asking for it.
func (p *Pages) signInSendCode(w http.ResponseWriter, r *http.Request, s *uia.Session, q *signin) {
	err := flows.ErrNoEmail
	if q.d.Email {
		var to string
		if to, err = p.codes.SendCode(r.Context(), s.UserID); err == nil {
			err = &flows.CodeSentError{To: to}
			q.d.EmailSent = true
		}
	}
	p.renderError(w, r, "signin_code.html", q.page, err)
}

// checkSignInCode verifies the form's code for pending login s: a wrong code
// shows the code step again (the account's lockout counts it), a lockout or
// a failure drops the login, a right one issues the login token.
func (p *Pages) checkSignInCode(w http.ResponseWriter, r *http.Request, s *uia.Session, q *signin) {
	l := httpx.Logger(r).WithField("user_id", s.UserID)
	var err error
	if q.form.Get("method") == "email" {
		q.d.EmailSent = true
		err = p.acc.VerifyEmail(r.Context(), s.UserID, q.form.Get("code"))
	} else {
		err = flows.VerifyEither(r.Context(), p.acc, s.UserID, q.form.Get("code"))
	}
	verified := err == nil
	if errors.Is(err, account.ErrNotEnabled) {
		err = nil // 2FA was turned off meanwhile: the password was right, go on
	}
	var body []byte
	if err == nil {
		body, err = p.held.Release(r.Context(), s)
	}
	switch {
	case err == nil:
		l.Info("sign-in page: signed in with 2FA")
		if verified && q.form.Get("remember") != "" {
			p.rememberBrowser(w, r, s.UserID)
		}
		p.issueLoginToken(w, r, s.UserID, body, q)
	case errors.Is(err, account.ErrInvalidCode) || errors.Is(err, account.ErrMissingCode):
		p.signInRefused(w, r, q, "signin_code.html", err)
	case errors.Is(err, uia.ErrUnknownSession):
		q.d.Session = ""
		q.page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", q.page)
	default: // locked out, or broken: the pending login ends now
		p.held.Drop(r.Context(), s, l)
		q.d.Session = ""
		p.signInRefused(w, r, q, "signin.html", err)
	}
}

// issueLoginToken holds the login response body behind a new single-use
// login token and redirects the browser to the client with it.
func (p *Pages) issueLoginToken(w http.ResponseWriter, r *http.Request, userID string, body []byte, q *signin) {
	token, err := p.held.IssueToken(r.Context(), userID, body, p.origin(r))
	if err != nil {
		var login struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(body, &login)
		p.signInFailed(w, r, q, login.AccessToken, err)
		return
	}
	loc := *q.target
	if loc.RawQuery == "" {
		loc.RawQuery = "loginToken=" + token
	} else {
		loc.RawQuery += "&loginToken=" + token
	}
	h := w.Header()
	h.Set("Location", loc.String())
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
}

// redirectHost is a host name or IP literal with an optional port: nothing
// that could break out of the CSP source it is put in.
var redirectHost = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// parseRedirect accepts absolute http(s) URLs with a host.
func parseRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || !redirectHost.MatchString(u.Host) {
		return nil, errors.New("not an absolute http(s) URL")
	}
	return u, nil
}

// redirectAllowed reports whether raw starts with an allow-listed prefix at a
// boundary ("https://app.example" allows "https://app.example/x" but not
// "https://app.example.evil" nor "https://app.example@evil").
func (p *Pages) redirectAllowed(raw string) bool {
	for _, p := range p.cfg.RedirectAllowlist {
		if p == "" || !strings.HasPrefix(raw, p) {
			continue
		}
		if strings.HasSuffix(p, "/") || len(raw) == len(p) || strings.ContainsRune("/?#", rune(raw[len(p)])) {
			return true
		}
	}
	return false
}
