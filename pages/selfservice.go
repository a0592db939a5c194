package pages

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The self-service page (/_matrix2fa/): a user signs in with their Matrix
// password (and, when 2FA is on, a code), then sees their status, enrols and
// confirms TOTP, regenerates recovery codes or disables 2FA, under the same
// rules as the /account/two-factor endpoints.
//
// Web sessions are server-side: the browser holds a random 32-byte ID in an
// HttpOnly, SameSite=Strict cookie (Secure over https); the store keeps it as a
// UIASession whose ID is a hash of the cookie value and whose Path is
// selfSessionPath, so a leaked database row is no usable cookie and the UIA
// engine never takes it for one of its own sessions (its method and path
// never match a request). Sign-in creates a short "password done" session;
// the 2FA code replaces it by a new, full one (a new ID at each step up, so a
// planted cookie is never promoted). Sessions end after selfSessionTTL, at
// sign-out (deleted), and are swept with the UIA sessions.
//
// Every POST carries a CSRF token (csrfToken in page.go) bound to the web
// session, or, for the sign-in form, to a random pre-session cookie.

// SelfServicePath is the self-service page.
const SelfServicePath = "/_matrix2fa/"

const (
	selfSessionPath   = "/_matrix2fa/session"
	selfSessionMethod = "WEB"
	selfSessionCookie = "matrix2fa_session"
	selfPreCookie     = "matrix2fa_presession"
	// selfSessionTTL bounds a signed-in web session (not extended by use).
	selfSessionTTL = 15 * time.Minute
	// selfPendingTTL bounds the wait for the 2FA code after the password.
	selfPendingTTL     = 5 * time.Minute
	selfCSRFPurpose    = "selfservice"
	selfPreCSRFPurpose = "selfservice-signin"
	selfDeviceName     = "matrix-2fa self-service"
)

// Web session stages.
const (
	stagePassword = "password" // password checked, 2FA code still due
	stageFull     = "full"
)

type selfSessionData struct {
	Stage string `json:"stage"`
	// Enrol is the unconfirmed enrolment shown in this session, sealed with
	// the secret box for this session, so its QR code can be shown again
	// (after a mistyped code) until it is confirmed.
	Enrol []byte `json:"enrol,omitempty"`
	// Policy says the enforcement policy applied to the user at sign-in
	// (asked with the sign-in's token, which the page does not keep).
	Policy bool `json:"policy,omitempty"`
	// GraceUntil is when the policy's grace period ends for the user (as
	// asked at sign-in; zero when the policy does not apply).
	GraceUntil time.Time `json:"grace_until,omitzero"`
	// Next is the account management view to open once signed in (a query
	// made by accountTarget).
	Next string `json:"next,omitempty"`
}

type selfSession struct {
	storeID string
	userID  string
	data    selfSessionData
	expires time.Time
}

// selfView is what selfservice.html shows.
type selfView struct {
	View     string // signin, code, status, enrol, codes, locked
	User     string
	Username string
	Status   account.Status
	Notice   string
	// Resumable says the session holds an unconfirmed enrolment to show again.
	Resumable bool
	Enrol     *enrolView
	Codes     []string
	CodesHref template.URL
	Retry     string
	Back      bool
	Lists     *listsView
	// Account management views: Next is the action to come back to after
	// signing in; TwoFA says the forms ask for a code; Listed says Devices
	// were read from the homeserver.
	Next     string
	TwoFA    bool
	DeviceID string
	XSession string
	// Approve says what the m.oauth approval view approves.
	Approve string
	Devices []homeserver.Device
	Listed  bool
	// Device is the homeserver's details of DeviceID, once read.
	Device *deviceView
	// Under says the policy applies to the user, who has no 2FA: the status
	// says how many days are left, or that it is required now.
	Under bool
	policyNotice
}

// deviceView is one device's details, its last sighting as text.
type deviceView struct {
	homeserver.Device
	LastSeen string
}

type enrolView struct {
	QR        template.URL
	OpenURI   template.URL
	Secret    string
	Grouped   string
	Params    account.Params
	ExpiresAt string
	Replacing bool
}

// sealedEnrolment is the part of an Enrolment kept in the web session.
type sealedEnrolment struct {
	Secret    string         `json:"secret"`
	URI       string         `json:"uri"`
	Params    account.Params `json:"params"`
	ExpiresAt time.Time      `json:"expires_at"`
}

func selfStoreID(cookie string) string {
	h := sha256.Sum256([]byte("matrix2fa-web-session\x00" + cookie))
	return "web:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// secure reports whether r reached the gateway over https: directly, through
// a trusted proxy that says so, or by the configured public URL. Cookies are
// then marked Secure.
func (p *Pages) secure(r *http.Request) bool {
	return Secure(r, p.cfg.PublicBaseURL, p.proxies)
}

func (p *Pages) setSelfCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: SelfServicePath, MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// loadSelfSession returns the request's live web session, or nil.
func (p *Pages) loadSelfSession(r *http.Request) (*selfSession, error) {
	c, err := r.Cookie(selfSessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	sid := selfStoreID(c.Value)
	s, err := p.store.Session(r.Context(), sid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.Kind != storage.KindWeb || !p.now().Before(s.ExpiresAt) {
		return nil, nil
	}
	var d selfSessionData
	if err := json.Unmarshal(s.Data, &d); err != nil || (d.Stage != stagePassword && d.Stage != stageFull) {
		return nil, nil
	}
	return &selfSession{storeID: sid, userID: s.UserID, data: d, expires: s.ExpiresAt}, nil
}

// newSelfSession stores a new web session for userID and sets its cookie.
func (p *Pages) newSelfSession(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, d selfSessionData, ttl time.Duration) (*selfSession, error) {
	cookie := httpx.RandomToken(32)
	now := p.now()
	raw, _ := json.Marshal(d)
	s := storage.UIASession{ID: selfStoreID(cookie), Kind: storage.KindWeb, UserID: userID, Method: selfSessionMethod, Path: selfSessionPath,
		Data: raw, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := p.store.CreateSession(ctx, s); err != nil {
		return nil, err
	}
	// The cookie lives in the browser for the session; the server decides.
	p.setSelfCookie(w, r, selfSessionCookie, cookie, 0)
	return &selfSession{storeID: s.ID, userID: userID, data: d, expires: s.ExpiresAt}, nil
}

func (p *Pages) saveSelfSession(ctx context.Context, s *selfSession) error {
	raw, _ := json.Marshal(s.data)
	return p.store.SetSessionData(ctx, s.storeID, raw)
}

// preCookie returns the pre-session cookie the sign-in form's CSRF token is
// bound to, setting a new one when the browser has none.
func (p *Pages) preCookie(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(selfPreCookie); err == nil && c.Value != "" && len(c.Value) <= 100 {
		return c.Value
	}
	v := httpx.RandomToken(32)
	p.setSelfCookie(w, r, selfPreCookie, v, 0)
	return v
}

// render writes the page: CSRF is bound to the session, or for the sign-in
// form to the pre-session cookie.
func (p *Pages) renderSelf(w http.ResponseWriter, r *http.Request, status int, s *selfSession, v selfView, errText string) {
	var csrf string
	if s != nil {
		csrf = p.csrf.token(selfCSRFPurpose, s.storeID, p.now())
		v.User = s.userID
	} else {
		csrf = p.csrf.token(selfPreCSRFPurpose, p.preCookie(w, r), p.now())
		v.User = ""
	}
	if v.View == "" {
		v.View = "signin"
	}
	renderPage(w, status, "selfservice.html", PageData{Title: "Two-factor authentication", CSRF: csrf, Error: errText, Data: v})
}

// renderStatus renders the signed-in status page.
func (p *Pages) renderStatus(w http.ResponseWriter, r *http.Request, status int, s *selfSession, notice, errText string) {
	p.renderStatusWith(w, r, status, s, notice, errText, nil)
}

// renderStatusWith renders the status page with the user's remembered
// browsers and bot tokens, and newToken (a bot token made just now) once.
func (p *Pages) renderStatusWith(w http.ResponseWriter, r *http.Request, status int, s *selfSession, notice, errText string, newToken *newTokenView) {
	st, err := p.acc.Status(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	v := selfView{View: "status", Status: st, Notice: notice}
	v.Resumable = st.Pending && len(s.data.Enrol) > 0
	if v.Under = s.data.Policy && !st.Enabled; v.Under {
		v.policyNotice = noticeOf(policy.State{Applies: true, GraceUntil: s.data.GraceUntil, Enforced: !p.now().Before(s.data.GraceUntil)}, p.now())
	}
	if v.Lists, err = p.lists(r.Context(), s.userID); err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	v.Lists.NewToken = newToken
	p.renderSelf(w, r, status, s, v, errText)
}

// selfInternal shows a failure the user cannot fix (its status and sentence
// from the one error table: 503 while the database is down, 502 for the
// homeserver, 500 else).
func (p *Pages) selfInternal(w http.ResponseWriter, r *http.Request, s *selfSession, err error) {
	status, text := httperr.Page(err)
	httpx.Logger(r).WithError(err).Error("self-service page: internal error")
	v := selfView{View: "failure", Back: true}
	p.renderSelf(w, r, status, s, v, text)
}

// handleSelfGet shows the page for the browser's state: signed out, waiting
// for the 2FA code, or signed in.
// SelfGet shows the self-service page.
func (p *Pages) SelfGet(w http.ResponseWriter, r *http.Request) {
	s, err := p.loadSelfSession(r)
	if err != nil {
		p.selfInternal(w, r, nil, err)
		return
	}
	view, next := accountTarget(r.URL.Query())
	switch {
	case s == nil:
		if _, err := r.Cookie(selfSessionCookie); err == nil {
			p.setSelfCookie(w, r, selfSessionCookie, "", -1)
		}
		p.renderSelf(w, r, http.StatusOK, nil, selfView{View: "signin", Next: next}, "")
	case s.data.Stage == stagePassword:
		p.renderSelf(w, r, http.StatusOK, s, selfView{View: "code"}, "")
	case view != "":
		p.renderAction(w, r, s, view)
	default:
		p.renderStatus(w, r, http.StatusOK, s, "", "")
	}
}

const (
	msgCSRF         = "This form has expired or did not come from this page. Please try again."
	msgEnded        = "Your session has ended. Please sign in again."
	msgBadPassword  = "Wrong username or password."
	msgBadCode      = "That code is not valid. Check your authenticator app (or recovery code) and try again."
	msgBadPwOrCode  = "Wrong password or code."
	msgNoCode       = "Enter a code."
	msgNoCredential = "Enter your username and password."
	msgPolicy       = "This server requires two-factor authentication for your account: it cannot be turned off."
)

// policyState asks the enforcement policy about userID (with token, when
// at hand, for homeserver admins); the zero State without a policy.
func (p *Pages) policyState(ctx context.Context, userID, token string) (policy.State, error) {
	if p.policy == nil {
		return policy.State{}, nil
	}
	if token != "" {
		ctx = policy.WithAccessToken(ctx, token)
	}
	return p.policy.Evaluate(ctx, userID)
}

// SelfPost runs one action of the self-service page (sign-in, code, enrol,
// confirm, regenerate, disable, sign-out), each form checked for CSRF.
func (p *Pages) SelfPost(w http.ResponseWriter, r *http.Request) {
	if !p.selfForm(w, r) {
		return
	}
	action := r.PostForm.Get("action")
	if action == "signin" {
		pre, err := r.Cookie(selfPreCookie)
		if err != nil || !p.csrf.check(selfPreCSRFPurpose, pre.Value, r.PostForm.Get("csrf"), p.now()) {
			p.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgCSRF)
			return
		}
		p.selfSignIn(w, r)
		return
	}
	s, ok := p.selfSessionFor(w, r)
	if !ok {
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithFields(logrus.Fields{"user_id": s.userID, "action": action}))
	switch {
	case action == "signout":
		p.selfSignOut(w, r, s)
	case s.data.Stage == stagePassword && action == "code":
		p.selfSecondFactor(w, r, s)
	case s.data.Stage == stagePassword:
		p.renderSelf(w, r, http.StatusBadRequest, s, selfView{View: "code"}, "Enter your code to finish signing in.")
	default:
		p.selfAction(w, r, s, action)
	}
}

// selfForm reads the posted form (at most MaxBody) and refuses browsers that
// say the post is cross-site; it answers itself when it returns false.
func (p *Pages) selfForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpx.WriteError(w, r, httperr.ErrTooLarge)
			return false
		}
		p.renderSelf(w, r, http.StatusBadRequest, nil, selfView{View: "signin"}, "The form could not be read.")
		return false
	}
	// A cross-site form post never gets here with a valid token anyway;
	// browsers that say so are refused before anything else.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		p.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgCSRF)
		return false
	}
	return true
}

// selfSessionFor loads the signed-in web session and checks the form's CSRF
// token against it; it answers itself when it returns false.
func (p *Pages) selfSessionFor(w http.ResponseWriter, r *http.Request) (*selfSession, bool) {
	s, err := p.loadSelfSession(r)
	switch {
	case err != nil:
		p.selfInternal(w, r, nil, err)
	case s == nil:
		p.setSelfCookie(w, r, selfSessionCookie, "", -1)
		p.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgEnded)
	case !p.csrf.check(selfCSRFPurpose, s.storeID, r.PostForm.Get("csrf"), p.now()) && s.data.Stage == stagePassword:
		p.renderSelf(w, r, http.StatusForbidden, s, selfView{View: "code"}, msgCSRF)
	case !p.csrf.check(selfCSRFPurpose, s.storeID, r.PostForm.Get("csrf"), p.now()):
		p.renderStatus(w, r, http.StatusForbidden, s, "", msgCSRF)
	default:
		return s, true
	}
	return nil, false
}

// selfAction runs an action of a fully signed-in session.
func (p *Pages) selfAction(w http.ResponseWriter, r *http.Request, s *selfSession, action string) {
	switch action {
	case "enrol":
		p.selfEnrol(w, r, s)
	case "resume":
		p.selfResume(w, r, s)
	case "confirm":
		p.selfConfirm(w, r, s)
	case "regenerate":
		p.selfRegenerate(w, r, s)
	case "disable":
		p.selfDisable(w, r, s)
	case "forget-browser", "forget-browsers":
		p.selfForgetBrowsers(w, r, s, action == "forget-browsers")
	case "bot-create":
		p.selfBotCreate(w, r, s)
	case "bot-revoke":
		p.selfBotRevoke(w, r, s)
	case "devices":
		p.selfDevices(w, r, s)
	case "device_details":
		p.selfDeviceDetails(w, r, s)
	case "device_delete":
		p.selfDeviceDelete(w, r, s)
	case "password_change":
		p.selfPasswordChange(w, r, s)
	case "deactivate":
		p.selfDeactivate(w, r, s)
	case "xsign_approve", "approve":
		p.selfApprove(w, r, s)
	default:
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Unknown action.")
	}
}

// selfSignInRefused answers a password login the homeserver refused: its
// rate limit as the locked page, a 4xx as a wrong password, else unreachable.
func (p *Pages) selfSignInRefused(w http.ResponseWriter, r *http.Request, v selfView, err error) {
	if wait, limited := httperr.HomeserverLimited(err); limited {
		p.renderLocked(w, r, nil, wait)
	} else if errcode, refused := httperr.HomeserverRefused(err); refused {
		httpx.Logger(r).WithField("errcode", errcode).Info("self-service sign-in refused")
		p.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
	} else {
		httpx.Logger(r).WithError(err).Error("self-service sign-in: homeserver failed")
		p.renderSelf(w, r, http.StatusBadGateway, nil, v, "The homeserver could not be reached. Please try again later.")
	}
}

func (p *Pages) selfSignIn(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostForm.Get("username"))
	password := r.PostForm.Get("password")
	v := selfView{View: "signin", Username: username}
	if username == "" || password == "" {
		p.renderSelf(w, r, http.StatusBadRequest, nil, v, msgNoCredential)
		return
	}
	if len(username) > 255 || len(password) > 1024 {
		p.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		return
	}
	ctx := r.Context()
	login, err := p.hs.PasswordLogin(ctx, username, password, "", selfDeviceName)
	if err != nil {
		p.selfSignInRefused(w, r, v, err)
		return
	}
	pst, err := p.policyState(ctx, string(login.UserID), login.AccessToken)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	if err := p.hs.Logout(cctx, login.AccessToken); err != nil {
		httpx.Logger(r).WithError(err).WithField("device_id", login.DeviceID).Error("self-service sign-in: could not log the check device out")
	}
	cancel()
	userID := string(login.UserID)
	if strings.HasPrefix(username, "@") && !canonical.SameUser(username, userID) {
		httpx.Logger(r).WithField("answered_user_id", userID).Error("self-service sign-in: homeserver answered for another user")
		p.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", userID))
	enabled := false
	if err == nil {
		enabled, err = p.acc.Enabled(ctx, userID)
	}
	if err != nil {
		p.selfInternal(w, r, nil, err)
		return
	}
	stage, ttl := stageFull, selfSessionTTL
	if enabled {
		stage, ttl = stagePassword, selfPendingTTL
	}
	p.dropSelfCookieSession(r)
	next := safeNext(r.PostForm.Get("next"))
	if _, err := p.newSelfSession(ctx, w, r, userID, selfSessionData{Stage: stage, Policy: pst.Applies, GraceUntil: pst.GraceUntil, Next: next}, ttl); err != nil {
		p.selfInternal(w, r, nil, err)
		return
	}
	httpx.Logger(r).WithField("stage", stage).Info("self-service sign-in: password accepted")
	http.Redirect(w, r, selfURL(next, stage), http.StatusSeeOther)
}

// selfURL is where a sign-in step goes next: the account management view
// once fully signed in, else the page.
func selfURL(next, stage string) string {
	if next == "" || stage != stageFull {
		return SelfServicePath
	}
	return SelfServicePath + "?" + next
}

// dropSelfCookieSession deletes the session the request's cookie names, if any.
func (p *Pages) dropSelfCookieSession(r *http.Request) {
	if c, err := r.Cookie(selfSessionCookie); err == nil && c.Value != "" {
		p.store.TakeSession(r.Context(), selfStoreID(c.Value))
	}
}

// selfSecondFactor completes the sign-in with a TOTP or recovery code and
// replaces the session by a full one under a new ID.
func (p *Pages) selfSecondFactor(w http.ResponseWriter, r *http.Request, s *selfSession) {
	code := r.PostForm.Get("code")
	if strings.TrimSpace(code) == "" {
		p.renderSelf(w, r, http.StatusBadRequest, s, selfView{View: "code"}, msgNoCode)
		return
	}
	if err := flows.VerifyEither(r.Context(), p.acc, s.userID, code); err != nil {
		p.codeFailure(w, r, s, err, func(status int, msg string) {
			p.renderSelf(w, r, status, s, selfView{View: "code"}, msg)
		})
		return
	}
	if _, err := p.store.TakeSession(r.Context(), s.storeID); err != nil {
		// Taken concurrently (another tab, sign-out): this one lost.
		p.setSelfCookie(w, r, selfSessionCookie, "", -1)
		p.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgEnded)
		return
	}
	if _, err := p.newSelfSession(r.Context(), w, r, s.userID, selfSessionData{Stage: stageFull, Policy: s.data.Policy, GraceUntil: s.data.GraceUntil}, selfSessionTTL); err != nil {
		p.selfInternal(w, r, nil, err)
		return
	}
	httpx.Logger(r).Info("self-service sign-in: second factor accepted")
	http.Redirect(w, r, selfURL(s.data.Next, stageFull), http.StatusSeeOther)
}

// codeFailure answers a failed code check: 429 when locked out, 403 for a
// wrong code, 400 for a missing one or 2FA being off, 500 otherwise.
func (p *Pages) codeFailure(w http.ResponseWriter, r *http.Request, s *selfSession, err error, show func(status int, msg string)) {
	if le, ok := account.IsLocked(err); ok {
		httpx.Logger(r).Info("self-service: locked out")
		p.renderLocked(w, r, s, le.RetryAfter)
		return
	}
	switch {
	case errors.Is(err, account.ErrInvalidCode):
		httpx.Logger(r).WithError(err).Info("self-service: code refused")
		show(http.StatusForbidden, msgBadCode)
	case errors.Is(err, account.ErrMissingCode):
		show(http.StatusBadRequest, msgNoCode)
	case errors.Is(err, account.ErrNotEnabled):
		show(http.StatusBadRequest, "Two-factor authentication is not enabled.")
	case errors.Is(err, account.ErrNoPending):
		show(http.StatusBadRequest, "There is no enrolment waiting for confirmation, or it has expired. Please start again.")
	default:
		p.selfInternal(w, r, s, err)
	}
}

func (p *Pages) renderLocked(w http.ResponseWriter, r *http.Request, s *selfSession, wait time.Duration) {
	httpx.SetRetryAfter(w.Header(), wait)
	p.renderSelf(w, r, http.StatusTooManyRequests, s, selfView{View: "locked", Retry: httperr.FormatWait(wait), Back: true},
		"Too many failed attempts.")
}

func (p *Pages) selfSignOut(w http.ResponseWriter, r *http.Request, s *selfSession) {
	p.store.TakeSession(r.Context(), s.storeID)
	p.setSelfCookie(w, r, selfSessionCookie, "", -1)
	httpx.Logger(r).Info("self-service: signed out")
	http.Redirect(w, r, SelfServicePath, http.StatusSeeOther)
}

// selfEnrol starts (or restarts) enrolment and shows the QR code. Replacing an
// enabled authenticator needs a code from it (or a recovery code) first, as
// the enrolment endpoint's 2FA stage does.
func (p *Pages) selfEnrol(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	enabled, err := p.acc.Enabled(ctx, s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	if enabled {
		code := r.PostForm.Get("code")
		if strings.TrimSpace(code) == "" {
			p.renderStatus(w, r, http.StatusBadRequest, s, "", "Enter a code from your current authenticator to set up a new one.")
			return
		}
		if err := flows.VerifyEither(ctx, p.acc, s.userID, code); err != nil {
			p.codeFailure(w, r, s, err, func(status int, msg string) { p.renderStatus(w, r, status, s, "", msg) })
			return
		}
	}
	en, err := p.acc.Enrol(ctx, s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	se := sealedEnrolment{Secret: en.Secret, URI: en.URI, Params: en.Params, ExpiresAt: en.ExpiresAt}
	plain, _ := json.Marshal(se)
	sealed, err := p.box.Seal(selfEnrolOwner(s), plain)
	clear(plain)
	if err == nil {
		s.data.Enrol = sealed
		err = p.saveSelfSession(ctx, s)
	}
	if err != nil {
		httpx.Logger(r).WithError(err).Warn("self-service: could not keep the enrolment in the web session")
	}
	httpx.Logger(r).Info("self-service: enrolment started")
	p.renderSelf(w, r, http.StatusOK, s, selfView{View: "enrol", Enrol: enrolViewOf(se, en.QRPNG, enabled)}, "")
}

// selfEnrolOwner binds a sealed enrolment to its web session.
func selfEnrolOwner(s *selfSession) string { return "self-enrol:" + s.storeID }

func enrolViewOf(se sealedEnrolment, png []byte, replacing bool) *enrolView {
	var groups []string
	for i := 0; i < len(se.Secret); i += 4 {
		groups = append(groups, se.Secret[i:min(i+4, len(se.Secret))])
	}
	return &enrolView{
		// Both URLs are built here from base64 and from our own otpauth URI.
		QR:        template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)),
		OpenURI:   template.URL(se.URI),
		Secret:    se.Secret,
		Grouped:   strings.Join(groups, " "),
		Params:    se.Params,
		ExpiresAt: se.ExpiresAt.UTC().Format("15:04 UTC"),
		Replacing: replacing,
	}
}

// sessionEnrolment returns the enrolment kept in the session, if it is still
// the pending one.
func (p *Pages) sessionEnrolment(ctx context.Context, s *selfSession) (*enrolView, bool) {
	return p.openEnrolment(ctx, s.userID, selfEnrolOwner(s), s.data.Enrol)
}

// openEnrolment opens an enrolment sealed for owner and returns its view,
// if it is still userID's pending one and unexpired.
func (p *Pages) openEnrolment(ctx context.Context, userID, owner string, sealed []byte) (*enrolView, bool) {
	if len(sealed) == 0 {
		return nil, false
	}
	st, err := p.acc.Status(ctx, userID)
	if err != nil || !st.Pending {
		return nil, false
	}
	plain, err := p.box.Open(owner, p.box.KeyID(), sealed)
	if err != nil {
		return nil, false
	}
	defer clear(plain)
	var se sealedEnrolment
	if json.Unmarshal(plain, &se) != nil || !p.now().Before(se.ExpiresAt) {
		return nil, false
	}
	m, err := account.QRMatrix(se.URI)
	if err != nil {
		return nil, false
	}
	png, err := account.QRPNG(m)
	if err != nil {
		return nil, false
	}
	return enrolViewOf(se, png, st.Enabled), true
}

// selfResume shows the session's unconfirmed enrolment again.
func (p *Pages) selfResume(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ev, ok := p.sessionEnrolment(r.Context(), s)
	if !ok {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "That enrolment can no longer be shown. Please start again.")
		return
	}
	p.renderSelf(w, r, http.StatusOK, s, selfView{View: "enrol", Enrol: ev}, "")
}

// selfConfirm enables the pending secret with a code from it and shows the
// new recovery codes, once.
func (p *Pages) selfConfirm(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	codes, err := p.acc.Confirm(ctx, s.userID, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""))
	if err != nil {
		p.codeFailure(w, r, s, err, func(status int, msg string) {
			if ev, ok := p.sessionEnrolment(ctx, s); ok && !errors.Is(err, account.ErrNoPending) {
				p.renderSelf(w, r, status, s, selfView{View: "enrol", Enrol: ev}, msg)
				return
			}
			p.renderStatus(w, r, status, s, "", msg)
		})
		return
	}
	s.data.Enrol = nil
	if err := p.saveSelfSession(ctx, s); err != nil {
		httpx.Logger(r).WithError(err).Warn("self-service: could not clear the enrolment from the web session")
	}
	httpx.Logger(r).Info("self-service: two-factor authentication enabled")
	p.renderCodes(w, r, s, codes, "Two-factor authentication is now on.")
}

func (p *Pages) renderCodes(w http.ResponseWriter, r *http.Request, s *selfSession, codes []string, notice string) {
	p.renderSelf(w, r, http.StatusOK, s, selfView{View: "codes", Codes: codes, CodesHref: codesHref(s.userID, codes), Notice: notice}, "")
}

// codesHref is a download link of userID's recovery codes.
func codesHref(userID string, codes []string) template.URL {
	text := "matrix-2fa recovery codes for " + userID + "\nEach code works once.\n\n" + strings.Join(codes, "\n") + "\n"
	return template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text)))
}

// selfEnabled answers on the status page, and returns false, unless the
// user has 2FA on.
func (p *Pages) selfEnabled(w http.ResponseWriter, r *http.Request, s *selfSession) bool {
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return false
	}
	if !enabled {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Two-factor authentication is not enabled.")
		return false
	}
	return true
}

// selfRegenerate replaces the recovery codes after a fresh code (step-up).
func (p *Pages) selfRegenerate(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	show := func(status int, msg string) { p.renderStatus(w, r, status, s, "", msg) }
	if !p.selfEnabled(w, r, s) {
		return
	}
	if err := flows.VerifyEither(ctx, p.acc, s.userID, r.PostForm.Get("code")); err != nil {
		p.codeFailure(w, r, s, err, show)
		return
	}
	codes, err := p.acc.Regenerate(ctx, s.userID)
	if err != nil {
		p.codeFailure(w, r, s, err, show)
		return
	}
	httpx.Logger(r).Info("self-service: recovery codes regenerated")
	p.renderCodes(w, r, s, codes, "New recovery codes were made; the old ones no longer work.")
}

// selfDisable turns 2FA off after the password and a code.
func (p *Pages) selfDisable(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	show := func(status int, msg string) { p.renderStatus(w, r, status, s, "", msg) }
	if !p.selfEnabled(w, r, s) {
		return
	}
	if pst, err := p.policyState(ctx, s.userID, ""); err != nil || pst.Applies || s.data.Policy {
		if err != nil {
			p.selfInternal(w, r, s, err)
			return
		}
		httpx.Logger(r).Info("self-service: disable refused, the enforcement policy applies")
		show(http.StatusForbidden, msgPolicy)
		return
	}
	password, code := r.PostForm.Get("password"), r.PostForm.Get("code")
	if password == "" || strings.TrimSpace(code) == "" {
		show(http.StatusBadRequest, "Enter your password and a code.")
		return
	}
	ok, err := p.hs.CheckPassword(ctx, id.UserID(s.userID), password)
	if err != nil {
		var re mautrix.RespError
		if errors.As(err, &re) && re.StatusCode == http.StatusTooManyRequests {
			p.renderLocked(w, r, s, time.Minute)
			return
		}
		p.selfInternal(w, r, s, err)
		return
	}
	if !ok {
		httpx.Logger(r).Info("self-service: disable refused, wrong password")
		show(http.StatusForbidden, msgBadPwOrCode)
		return
	}
	if err := flows.VerifyEither(ctx, p.acc, s.userID, code); err != nil {
		p.codeFailure(w, r, s, err, func(status int, msg string) {
			if status == http.StatusForbidden {
				msg = msgBadPwOrCode
			}
			show(status, msg)
		})
		return
	}
	if err := p.acc.Disable(ctx, s.userID); err != nil {
		p.codeFailure(w, r, s, err, show)
		return
	}
	s.data.Enrol = nil
	p.saveSelfSession(ctx, s)
	httpx.Logger(r).Info("self-service: two-factor authentication disabled")
	p.renderStatus(w, r, http.StatusOK, s, "Two-factor authentication is now off.", "")
}
