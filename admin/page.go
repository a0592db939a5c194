package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/pages"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The admin page (PagePath): an admin signs in with their Matrix password
// (and their own 2FA code when they have 2FA), then finds a user, sees their
// status and audit trail, unlocks them, or resets their 2FA after typing the
// user ID again. Every POST carries a CSRF token bound to the session (or, for
// sign-in, to a pre-session cookie); browsers that say a post is cross-site
// are refused first.

// view is what admin.html shows.
type view struct {
	View     string // signin, code, home, user, confirm
	Admin    string
	Scope    []string
	Username string
	Status   string
	Users    []storage.UserRow
	Next     string
	User     *userView
	Notice   string
}

const (
	msgCSRF        = "This form has expired or did not come from this page. Please try again."
	msgEnded       = "Your session has ended. Please sign in again."
	msgBadPassword = "Wrong username or password."
	msgBadCode     = "That code is not valid. Check your authenticator app (or recovery code) and try again."
	homeListed     = 50
)

// render writes the page with a CSRF token bound to s, or to the
// pre-session cookie when signed out.
func (a *Admin) render(w http.ResponseWriter, r *http.Request, status int, s *session, v view, errText string) {
	var token string
	if s != nil {
		token = a.csrf.Token(csrfPurpose, s.storeID, a.now())
		v.Admin = s.userID
	} else {
		token = a.csrf.Token(preCSRFPurpose, a.preSession(w, r), a.now())
	}
	if v.View == "" {
		v.View = "signin"
	}
	pages.Render(w, status, "admin.html", pages.PageData{Title: "Two-factor authentication — admin", CSRF: token, Error: errText, Data: v})
}

// fail shows err's sentence (httperr, the one table) on view v.
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, s *session, v view, err error) {
	status, text := httperr.Page(err)
	l := httpx.Logger(r).WithError(err)
	if status >= 500 {
		l.Error("admin page: internal error")
	} else {
		l.Info("admin page: refused")
	}
	if wait, ok := httperr.Wait(err); ok {
		httpx.SetRetryAfter(w.Header(), wait)
	}
	a.render(w, r, status, s, v, text)
}

// PageGet shows the admin page for the browser's state.
func (a *Admin) PageGet(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.Enabled {
		httpx.WriteError(w, r, httperr.ErrAdminOff)
		return
	}
	s, err := a.loadSession(r)
	switch {
	case err != nil:
		a.fail(w, r, nil, view{}, err)
	case s == nil:
		a.render(w, r, http.StatusOK, nil, view{View: "signin"}, "")
	case s.data.Stage == stagePassword:
		a.render(w, r, http.StatusOK, s, view{View: "code"}, "")
	default:
		p, ok := a.sessionPrincipal(s)
		if !ok {
			a.signOut(w, r, s)
			return
		}
		a.showGet(w, r, s, p)
	}
}

// showGet shows a user (?user=) or the home view (?status=, ?from=).
func (a *Admin) showGet(w http.ResponseWriter, r *http.Request, s *session, p principal) {
	q := r.URL.Query()
	if u := q.Get("user"); u != "" {
		a.showUser(w, r, s, p, u, http.StatusOK, "")
		return
	}
	a.showHome(w, r, s, p, q.Get("status"), q.Get("from"))
}

func (a *Admin) showHome(w http.ResponseWriter, r *http.Request, s *session, p principal, status, from string) {
	if status != storage.UsersEnabled && status != storage.UsersLocked {
		status = storage.UsersAll
	}
	v := view{View: "home", Status: status, Scope: p.scope.patterns}
	rows, next, err := a.listUsers(r.Context(), p, storage.UserQuery{Status: status, After: from, Limit: homeListed, Now: a.now()})
	if err != nil {
		a.fail(w, r, s, v, err)
		return
	}
	v.Users, v.Next = rows, next
	a.render(w, r, http.StatusOK, s, v, "")
}

// showUser shows one user (typed or linked: parsed here).
func (a *Admin) showUser(w http.ResponseWriter, r *http.Request, s *session, p principal, raw string, status int, notice string) {
	home := view{View: "home", Status: storage.UsersAll, Scope: p.scope.patterns}
	userID, err := parseUser(url.PathEscape(strings.TrimSpace(raw)))
	if err == nil {
		var u userView
		if u, err = a.user(r.Context(), p, userID); err == nil {
			a.render(w, r, status, s, view{View: "user", User: &u, Notice: notice, Scope: p.scope.patterns}, "")
			return
		}
	}
	a.fail(w, r, s, home, err)
}

// PagePost runs one form of the admin page, chosen by its action field.
func (a *Admin) PagePost(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.Enabled {
		httpx.WriteError(w, r, httperr.ErrAdminOff)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
	if err := r.ParseForm(); err != nil {
		httpx.WriteError(w, r, httperr.ErrTooLarge)
		return
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		a.render(w, r, http.StatusForbidden, nil, view{View: "signin"}, msgCSRF)
		return
	}
	action := r.PostForm.Get("action")
	if action == "signin" {
		pre, err := r.Cookie(preCookie)
		if err != nil || !a.csrf.Check(preCSRFPurpose, pre.Value, r.PostForm.Get("csrf"), a.now()) {
			a.render(w, r, http.StatusForbidden, nil, view{View: "signin"}, msgCSRF)
			return
		}
		a.signIn(w, r)
		return
	}
	s, ok := a.postSession(w, r)
	if !ok {
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithFields(logrus.Fields{"admin": s.userID, "action": action}))
	switch {
	case action == "signout":
		a.signOut(w, r, s)
	case s.data.Stage == stagePassword && action == "code":
		a.secondFactor(w, r, s)
	case s.data.Stage == stagePassword:
		a.render(w, r, http.StatusBadRequest, s, view{View: "code"}, "Enter your code to finish signing in.")
	default:
		a.action(w, r, s, action)
	}
}

// postSession loads the session and checks the form's CSRF token against
// it; it answers itself when it returns false.
func (a *Admin) postSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	s, err := a.loadSession(r)
	switch {
	case err != nil:
		a.fail(w, r, nil, view{}, err)
	case s == nil:
		a.setCookie(w, r, sessionCookie, "", -1)
		a.render(w, r, http.StatusForbidden, nil, view{View: "signin"}, msgEnded)
	case !a.csrf.Check(csrfPurpose, s.storeID, r.PostForm.Get("csrf"), a.now()):
		httpx.Logger(r).WithField("admin", s.userID).Warn("admin page: CSRF token refused")
		v := view{View: "code"}
		if s.data.Stage == stageFull {
			v = view{View: "home", Status: storage.UsersAll}
		}
		a.render(w, r, http.StatusForbidden, s, v, msgCSRF)
	default:
		return s, true
	}
	return nil, false
}

// action runs an action of a fully signed-in admin.
func (a *Admin) action(w http.ResponseWriter, r *http.Request, s *session, action string) {
	p, ok := a.sessionPrincipal(s)
	if !ok {
		a.signOut(w, r, s)
		return
	}
	user := r.PostForm.Get("user")
	switch action {
	case "find":
		a.showUser(w, r, s, p, user, http.StatusOK, "")
	case "unlock":
		a.pageUnlock(w, r, s, p, user)
	case "reset-ask":
		a.pageResetAsk(w, r, s, p, user)
	case "reset":
		a.pageReset(w, r, s, p, user)
	default:
		a.render(w, r, http.StatusBadRequest, s, view{View: "home", Status: storage.UsersAll}, "Unknown action.")
	}
}

func (a *Admin) pageUnlock(w http.ResponseWriter, r *http.Request, s *session, p principal, raw string) {
	userID, err := parseUser(url.PathEscape(raw))
	if err == nil {
		err = a.unlock(r.Context(), p, userID)
	}
	if err != nil {
		a.fail(w, r, s, view{View: "home", Status: storage.UsersAll, Scope: p.scope.patterns}, err)
		return
	}
	httpx.Logger(r).WithField("user_id", userID).Info("admin page: unlocked")
	a.showUser(w, r, s, p, userID, http.StatusOK, "Unlocked: the failed attempts and back-off are cleared.")
}

// pageResetAsk shows the confirmation step of a reset.
func (a *Admin) pageResetAsk(w http.ResponseWriter, r *http.Request, s *session, p principal, raw string) {
	userID, err := parseUser(url.PathEscape(raw))
	var u userView
	if err == nil {
		u, err = a.user(r.Context(), p, userID)
	}
	if err != nil {
		a.fail(w, r, s, view{View: "home", Status: storage.UsersAll, Scope: p.scope.patterns}, err)
		return
	}
	a.render(w, r, http.StatusOK, s, view{View: "confirm", User: &u}, "")
}

// pageReset resets a user's 2FA once the admin typed the user ID again.
func (a *Admin) pageReset(w http.ResponseWriter, r *http.Request, s *session, p principal, raw string) {
	userID, err := parseUser(url.PathEscape(raw))
	if err != nil {
		a.fail(w, r, s, view{View: "home", Status: storage.UsersAll, Scope: p.scope.patterns}, err)
		return
	}
	if strings.TrimSpace(r.PostForm.Get("confirm")) != userID {
		if u, err := a.user(r.Context(), p, userID); err == nil {
			a.render(w, r, http.StatusBadRequest, s, view{View: "confirm", User: &u}, "Type the user ID exactly to confirm the reset.")
			return
		}
		a.fail(w, r, s, view{View: "home", Status: storage.UsersAll}, httperr.ErrOutOfScope)
		return
	}
	existed, err := a.reset(r.Context(), p, userID)
	if err != nil {
		a.fail(w, r, s, view{View: "home", Status: storage.UsersAll, Scope: p.scope.patterns}, err)
		return
	}
	httpx.Logger(r).WithFields(logrus.Fields{"user_id": userID, "had_2fa": existed}).Info("admin page: two-factor authentication reset")
	notice := "Reset: the user can sign in with their password alone and enrol again."
	if !existed {
		notice = "The user had no two-factor authentication; the reset is recorded anyway."
	}
	a.showUser(w, r, s, p, userID, http.StatusOK, notice)
}

// signIn checks the password at the homeserver, asks it (with the token of
// that check, logged out right after) whether the user is an admin, and
// starts a session: full, or waiting for the admin's own 2FA code.
func (a *Admin) signIn(w http.ResponseWriter, r *http.Request) {
	username, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	v := view{View: "signin", Username: username}
	if username == "" || password == "" || len(username) > 255 || len(password) > 1024 {
		a.render(w, r, http.StatusBadRequest, nil, v, "Enter your username and password.")
		return
	}
	ctx := r.Context()
	login, err := a.hs.PasswordLogin(ctx, username, password, "", deviceName)
	if err != nil {
		a.signInRefused(w, r, v, err)
		return
	}
	userID := string(login.UserID)
	hsAdmin, err := a.hsAdmin(ctx, userID, login.AccessToken)
	a.logout(r, login.AccessToken)
	if err == nil && strings.HasPrefix(username, "@") && !canonical.SameUser(username, userID) {
		err = httperr.ErrUpstreamAnswer
	}
	if err != nil {
		a.fail(w, r, nil, v, err)
		return
	}
	d := sessionData{Stage: stageFull, HSAdmin: hsAdmin}
	if _, ok := a.sessionPrincipal(&session{userID: userID, data: d}); !ok {
		httpx.Logger(r).WithField("user_id", userID).Warn("admin page: sign-in of a non-admin refused")
		a.render(w, r, http.StatusForbidden, nil, v, "This account is not an administrator of the two-factor gateway.")
		return
	}
	a.startSession(w, r, userID, d)
}

// startSession starts the session of an admin whose password was right.
func (a *Admin) startSession(w http.ResponseWriter, r *http.Request, userID string, d sessionData) {
	enabled, err := a.acc.Enabled(r.Context(), userID)
	if err != nil {
		a.fail(w, r, nil, view{View: "signin"}, err)
		return
	}
	ttl := sessionTTL
	if enabled {
		d.Stage, ttl = stagePassword, pendingTTL
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		a.store.TakeSession(r.Context(), storeID(c.Value))
	}
	if err := a.newSession(r.Context(), w, r, userID, d, ttl); err != nil {
		a.fail(w, r, nil, view{View: "signin"}, err)
		return
	}
	httpx.Logger(r).WithFields(logrus.Fields{"user_id": userID, "stage": d.Stage}).Info("admin page: password accepted")
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}

// hsAdmin asks the homeserver whether userID is an admin, when the
// configuration lets homeserver admins in.
func (a *Admin) hsAdmin(ctx context.Context, userID, token string) (bool, error) {
	if !a.cfg.HomeserverAdmins {
		return false, nil
	}
	return a.checker.IsAdmin(ctx, userID, token)
}

func (a *Admin) logout(r *http.Request, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 15*time.Second)
	defer cancel()
	if err := a.hs.Logout(ctx, token); err != nil {
		httpx.Logger(r).WithError(err).Error("admin page: could not log the sign-in device out")
	}
}

// signInRefused answers a password the homeserver refused.
func (a *Admin) signInRefused(w http.ResponseWriter, r *http.Request, v view, err error) {
	if errcode, refused := httperr.HomeserverRefused(err); refused {
		httpx.Logger(r).WithField("errcode", errcode).Info("admin page: sign-in refused")
		a.render(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		return
	}
	a.fail(w, r, nil, v, err)
}

// secondFactor completes the sign-in with the admin's code and replaces the
// session by a full one under a new ID.
func (a *Admin) secondFactor(w http.ResponseWriter, r *http.Request, s *session) {
	err := flows.VerifyEither(r.Context(), a.acc, s.userID, r.PostForm.Get("code"))
	if errors.Is(err, account.ErrInvalidCode) {
		httpx.Logger(r).WithError(err).Info("admin page: code refused")
		a.render(w, r, http.StatusForbidden, s, view{View: "code"}, msgBadCode)
		return
	}
	if err != nil {
		a.fail(w, r, s, view{View: "code"}, err)
		return
	}
	if _, err := a.store.TakeSession(r.Context(), s.storeID); err != nil {
		a.setCookie(w, r, sessionCookie, "", -1)
		a.render(w, r, http.StatusForbidden, nil, view{View: "signin"}, msgEnded)
		return
	}
	d := s.data
	d.Stage = stageFull
	if err := a.newSession(r.Context(), w, r, s.userID, d, sessionTTL); err != nil {
		a.fail(w, r, nil, view{View: "signin"}, err)
		return
	}
	httpx.Logger(r).Info("admin page: second factor accepted")
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}

func (a *Admin) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	a.store.TakeSession(r.Context(), s.storeID)
	a.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}
