package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
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
	// genericSignInError is the one error for an unknown user, a wrong
	// password and a wrong code.
	genericSignInError = "Invalid username, password or code"
)

func (g *Gateway) ssoRoutes(r *mux.Router) {
	for _, p := range Prefixes {
		r.HandleFunc(p+"/login/sso/redirect", g.limited(g.handleSignIn)).Methods(http.MethodGet, http.MethodPost)
		r.HandleFunc(p+"/login/sso/redirect/{idpId}", g.limited(g.handleSignIn)).Methods(http.MethodGet, http.MethodPost)
	}
}

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
}

func (g *Gateway) handleSignIn(w http.ResponseWriter, r *http.Request) {
	if idp, ok := mux.Vars(r)["idpId"]; ok {
		if unescaped, err := url.PathUnescape(idp); err == nil {
			idp = unescaped
		}
		if idp != g.cfg.SSOProviderID {
			g.proxy.ServeHTTP(w, r) // the homeserver's own SSO
			return
		}
	}
	form, ok := httpx.PostedForm(w, r)
	if !ok {
		return
	}
	raw := r.URL.Query().Get("redirectUrl")
	if raw == "" {
		httpx.WriteMatrixError(w, httperr.MMissingParam.WithMessage("Missing redirectUrl"))
		return
	}
	target, err := parseRedirect(raw)
	if err != nil {
		httpx.WriteMatrixError(w, mautrix.MInvalidParam.WithMessage("redirectUrl must be an absolute http or https URL"))
		return
	}
	// The form posts to this page, which redirects to the client: the CSP's
	// form-action must allow the client's origin too (Chromium checks
	// form-action on the redirect after a form submission).
	w = &formActionCSP{ResponseWriter: w, origin: target.Scheme + "://" + target.Host}
	cookie, fresh := g.signinCookie(w, r)
	d := &signinData{Provider: g.cfg.SSOProviderName, Host: target.Host, RedirectURL: raw,
		Action: r.URL.RequestURI(), Digits: g.acc.Params().Digits}
	allowed := g.redirectAllowed(raw)
	page := PageData{Title: g.cfg.SSOProviderName, Data: d, CSRF: csrfToken("signin\x00"+raw, cookie, g.now())}
	first := "signin.html"
	if !allowed {
		first = "signin_confirm.html"
	}
	if r.Method == http.MethodGet {
		renderPage(w, http.StatusOK, first, page)
		return
	}

	// POST: the cookie must have come back, and the form's token with it
	// (the code step's token, bound to its pending login too, is checked in
	// signInCode).
	step := form.Get("step")
	if fresh || (step != "code" && !checkCSRF("signin\x00"+raw, cookie, form.Get("csrf"), g.now())) {
		page.Error = "This page has expired (or cookies are blocked). Please try again."
		renderPage(w, http.StatusForbidden, first, page)
		return
	}
	confirm := csrfToken("signin-redirect\x00"+raw, cookie, g.now())
	switch {
	case step == "confirm":
		// "Continue to <host>": the confirmation itself.
		if !allowed {
			d.Confirm = confirm
		}
		renderPage(w, http.StatusOK, "signin.html", page)
		return
	case !allowed && !checkCSRF("signin-redirect\x00"+raw, cookie, form.Get("confirm"), g.now()):
		page.Error = "Please confirm where to continue first."
		renderPage(w, http.StatusForbidden, "signin_confirm.html", page)
		return
	case !allowed:
		d.Confirm = confirm
	}
	if step == "code" {
		g.signInCode(w, r, form, cookie, target, page)
		return
	}
	g.signInCredentials(w, r, form, cookie, target, page)
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
func (g *Gateway) signinCookie(w http.ResponseWriter, r *http.Request) (value string, fresh bool) {
	if c, err := r.Cookie(signinCookie); err == nil && len(c.Value) >= 22 && len(c.Value) <= 64 {
		return c.Value, false
	}
	b := make([]byte, 16)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: v, Path: "/_matrix/client/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")})
	return v, true
}

// signInCredentials checks username and password with the homeserver. A user
// without 2FA gets the login token now; an enrolled user gets the code step
// (or, when the form already carries a code, the code is checked at once).
func (g *Gateway) signInCredentials(w http.ResponseWriter, r *http.Request, form url.Values, cookie string, target *url.URL, page PageData) {
	ctx := r.Context()
	d := page.Data.(*signinData)
	user, password := strings.TrimSpace(form.Get("username")), form.Get("password")
	d.Username = user
	if user == "" || password == "" {
		page.Error = genericSignInError
		renderPage(w, http.StatusForbidden, "signin.html", page)
		return
	}
	login, err := g.hs.PasswordLogin(ctx, user, password, "", "")
	var re mautrix.RespError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusTooManyRequests:
		page.Error = "Too many attempts. Please wait a moment and try again."
		renderPage(w, http.StatusTooManyRequests, "signin.html", page)
		return
	case errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500:
		httpx.Logger(r).WithField("errcode", re.ErrCode).Info("sign-in page: homeserver refused the password login")
		page.Error = genericSignInError
		renderPage(w, http.StatusForbidden, "signin.html", page)
		return
	case err != nil:
		httpx.Logger(r).WithError(err).Error("sign-in page: password login")
		page.Error = "Something went wrong. Please try again later."
		renderPage(w, http.StatusBadGateway, "signin.html", page)
		return
	}
	userID := string(login.UserID)
	l := httpx.Logger(r).WithField("user_id", userID)
	body, err := json.Marshal(login)
	if err != nil {
		g.signInFailed(w, r, page, login.AccessToken, err)
		return
	}
	enabled, err := g.acc.Enabled(ctx, userID)
	if err != nil {
		g.signInFailed(w, r, page, login.AccessToken, err)
		return
	}
	if !enabled {
		l.Info("sign-in page: signed in (no 2FA)")
		g.issueLoginToken(w, r, userID, body, target, page)
		return
	}
	sealed, err := g.sealHeld(r, userID, body)
	if err != nil {
		g.signInFailed(w, r, page, login.AccessToken, err)
		return
	}
	req := uia.Request{Kind: storage.KindSignIn, Method: pageLoginMethod, Path: heldLoginPath, UserID: userID}
	s, err := g.engine.Start(ctx, req, [][]string{{flows.StageTOTP}, {flows.StageRecovery}}, "", sealed, g.cfg.LoginTTL)
	if err != nil {
		g.signInFailed(w, r, page, login.AccessToken, err)
		return
	}
	d.Session, d.UserID = s.ID, userID
	page.CSRF = csrfToken("signin-code\x00"+d.RedirectURL+"\x00"+s.ID, cookie, g.now())
	if strings.TrimSpace(form.Get("code")) != "" {
		// The one-form variant (username, password and code together).
		g.checkSignInCode(w, r, s, form.Get("code"), target, page)
		return
	}
	l.Info("sign-in page: password right, asking for the code")
	renderPage(w, http.StatusOK, "signin_code.html", page)
}

// signInFailed logs an internal failure after a successful password login,
// logs that login out again and shows an error.
func (g *Gateway) signInFailed(w http.ResponseWriter, r *http.Request, page PageData, accessToken string, err error) {
	httpx.Logger(r).WithError(err).Error("sign-in page")
	if accessToken != "" {
		if lerr := g.hs.Logout(context.WithoutCancel(r.Context()), accessToken); lerr != nil {
			httpx.Logger(r).WithError(lerr).Error("sign-in page: logging out an unused login")
		}
	}
	page.Error = "Something went wrong. Please try again later."
	renderPage(w, http.StatusInternalServerError, "signin.html", page)
}

// signInCode is the code step: the pending login in the form's session field.
func (g *Gateway) signInCode(w http.ResponseWriter, r *http.Request, form url.Values, cookie string, target *url.URL, page PageData) {
	d := page.Data.(*signinData)
	sid := form.Get("session")
	s, err := g.engine.LoadKind(r.Context(), sid, storage.KindSignIn)
	if err != nil || !checkCSRF("signin-code\x00"+d.RedirectURL+"\x00"+sid, cookie, form.Get("csrf"), g.now()) {
		if err != nil && !errors.Is(err, uia.ErrUnknownSession) {
			httpx.Logger(r).WithError(err).Error("sign-in page: loading the pending login")
		}
		page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", page)
		return
	}
	d.Session, d.UserID = s.ID, s.UserID
	page.CSRF = csrfToken("signin-code\x00"+d.RedirectURL+"\x00"+s.ID, cookie, g.now())
	g.checkSignInCode(w, r, s, form.Get("code"), target, page)
}

// checkSignInCode verifies code for pending login s: a wrong code shows the
// code step again (the account's lockout counts it), a lockout discards the
// login, a right one issues the login token.
func (g *Gateway) checkSignInCode(w http.ResponseWriter, r *http.Request, s *uia.Session, code string, target *url.URL, page PageData) {
	ctx := r.Context()
	l := httpx.Logger(r).WithField("user_id", s.UserID)
	err := flows.VerifyEither(ctx, g.acc, s.UserID, code)
	if le, locked := account.IsLocked(err); locked {
		g.dropPending(r, s)
		l.Warn("sign-in page: locked out")
		page.Data.(*signinData).Session = ""
		page.Error = "Too many failed attempts. Try again in " + httperr.FormatWait(le.RetryAfter) + "."
		w.Header().Set("Retry-After", strconv.FormatInt(int64((le.RetryAfter+time.Second-1)/time.Second), 10))
		renderPage(w, http.StatusTooManyRequests, "signin.html", page)
		return
	}
	if errors.Is(err, account.ErrInvalidCode) || errors.Is(err, account.ErrMissingCode) {
		l.Info("sign-in page: invalid code")
		page.Error = genericSignInError
		renderPage(w, http.StatusForbidden, "signin_code.html", page)
		return
	}
	if errors.Is(err, account.ErrNotEnabled) {
		// 2FA was turned off meanwhile: the password was right, go on.
		err = nil
	}
	if err != nil {
		g.dropPending(r, s)
		g.signInFailed(w, r, page, "", err)
		return
	}
	taken, err := g.engine.Finish(ctx, s)
	if err != nil {
		page.Data.(*signinData).Session = ""
		page.Error = "Your sign-in has expired. Please sign in again."
		renderPage(w, http.StatusForbidden, "signin.html", page)
		return
	}
	body, err := g.openHeld(taken.UserID, taken.Data)
	if err != nil {
		g.discardHeld(ctx, taken.UIASession)
		g.signInFailed(w, r, page, "", err)
		return
	}
	l.Info("sign-in page: signed in with 2FA")
	g.issueLoginToken(w, r, taken.UserID, body, target, page)
}

// dropPending ends a pending login and logs its access token out upstream.
func (g *Gateway) dropPending(r *http.Request, s *uia.Session) {
	taken, err := g.engine.Finish(r.Context(), s)
	if err != nil {
		return
	}
	if err := g.discardHeld(context.WithoutCancel(r.Context()), taken.UIASession); err != nil {
		httpx.Logger(r).WithError(err).WithField("user_id", s.UserID).Error("sign-in page: logging out a dropped login")
	}
}

// issueLoginToken holds the login response body behind a new single-use
// login token and redirects the browser to target with it.
func (g *Gateway) issueLoginToken(w http.ResponseWriter, r *http.Request, userID string, body []byte, target *url.URL, page PageData) {
	ctx := r.Context()
	token, err := newLoginToken()
	var sealed []byte
	if err == nil {
		sealed, err = g.sealHeld(r, userID, body)
	}
	if err == nil {
		req := uia.Request{Kind: storage.KindLoginToken, Method: http.MethodPost, Path: heldTokenPath, UserID: userID}
		_, err = g.engine.Start(ctx, req, [][]string{{flows.StageToken}}, loginTokenSessionID(token), sealed, g.cfg.TokenTTL)
	}
	if err != nil {
		var held struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(body, &held)
		g.signInFailed(w, r, page, held.AccessToken, err)
		return
	}
	loc := *target
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

// newLoginToken returns 256 random bits, base64url.
func newLoginToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// loginTokenSessionID is the session ID a login token is stored under: its
// SHA-256, so the database never holds a usable token.
func loginTokenSessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "login-token:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// redeemLoginToken exchanges a loginToken issued by the sign-in page for its
// held login; it returns false for tokens it did not issue (they go to the
// homeserver). Taking the session is atomic, so a token works once.
func (g *Gateway) redeemLoginToken(w http.ResponseWriter, r *http.Request, token string, login *canonical.Login) bool {
	ctx := r.Context()
	taken, err := g.store.TakeSession(ctx, loginTokenSessionID(token))
	if errors.Is(err, storage.ErrNotFound) {
		return false
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return true
	}
	l := httpx.Logger(r).WithField("user_id", taken.UserID)
	if taken.Kind != storage.KindLoginToken || !g.now().Before(taken.ExpiresAt) {
		if err := g.discardHeld(context.WithoutCancel(ctx), taken); err != nil {
			l.WithError(err).Error("logging out an expired login token's login")
		}
		httpx.WriteMatrixError(w, mautrix.MForbidden.WithMessage("Invalid login token"))
		return true
	}
	held, err := g.openHeld(taken.UserID, taken.Data)
	if err != nil {
		httpx.WriteError(w, r, errors.Join(errors.New("opening a held login"), err))
		return true
	}
	if login.DisplayName != nil && *login.DisplayName != "" {
		name := *login.DisplayName
		var login struct {
			AccessToken string      `json:"access_token"`
			DeviceID    id.DeviceID `json:"device_id"`
		}
		if err := json.Unmarshal(held, &login); err == nil {
			if err := g.hs.SetDeviceDisplayName(ctx, login.AccessToken, login.DeviceID, name); err != nil {
				l.WithError(err).Warn("login token: setting the device display name")
			}
		}
	}
	l.Info("login token redeemed")
	httpx.WriteRawJSON(w, http.StatusOK, held)
	return true
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
func (g *Gateway) redirectAllowed(raw string) bool {
	for _, p := range g.cfg.RedirectAllowlist {
		if p == "" || !strings.HasPrefix(raw, p) {
			continue
		}
		if strings.HasSuffix(p, "/") || len(raw) == len(p) || strings.ContainsRune("/?#", rune(raw[len(p)])) {
			return true
		}
	}
	return false
}
