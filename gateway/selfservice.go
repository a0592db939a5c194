package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
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

// selfServiceRoutes registers the self-service 2FA page.
func (g *Gateway) selfServiceRoutes(r *mux.Router) {
	r.HandleFunc(SelfServicePath, g.handleSelfGet).Methods(http.MethodGet)
	r.HandleFunc(SelfServicePath, g.limited(g.handleSelfPost)).Methods(http.MethodPost)
}

func selfStoreID(cookie string) string {
	h := sha256.Sum256([]byte("matrix2fa-web-session\x00" + cookie))
	return "web:" + base64.RawURLEncoding.EncodeToString(h[:])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setSelfCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: SelfServicePath, MaxAge: maxAge,
		HttpOnly: true, Secure: secureRequest(r), SameSite: http.SameSiteStrictMode,
	})
}

// loadSelfSession returns the request's live web session, or nil.
func (g *Gateway) loadSelfSession(r *http.Request) (*selfSession, error) {
	c, err := r.Cookie(selfSessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	sid := selfStoreID(c.Value)
	s, err := g.store.Session(r.Context(), sid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.Kind != storage.KindWeb || !g.now().Before(s.ExpiresAt) {
		return nil, nil
	}
	var d selfSessionData
	if err := json.Unmarshal(s.Data, &d); err != nil || (d.Stage != stagePassword && d.Stage != stageFull) {
		return nil, nil
	}
	return &selfSession{storeID: sid, userID: s.UserID, data: d, expires: s.ExpiresAt}, nil
}

// newSelfSession stores a new web session for userID and sets its cookie.
func (g *Gateway) newSelfSession(ctx context.Context, w http.ResponseWriter, r *http.Request, userID, stage string, ttl time.Duration) (*selfSession, error) {
	cookie := randomToken()
	now := g.now()
	d := selfSessionData{Stage: stage}
	raw, _ := json.Marshal(d)
	s := storage.UIASession{ID: selfStoreID(cookie), Kind: storage.KindWeb, UserID: userID, Method: selfSessionMethod, Path: selfSessionPath,
		Data: raw, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := g.store.CreateSession(ctx, s); err != nil {
		return nil, err
	}
	// The cookie lives in the browser for the session; the server decides.
	setSelfCookie(w, r, selfSessionCookie, cookie, 0)
	return &selfSession{storeID: s.ID, userID: userID, data: d, expires: s.ExpiresAt}, nil
}

func (g *Gateway) saveSelfSession(ctx context.Context, s *selfSession) error {
	raw, _ := json.Marshal(s.data)
	return g.store.SetSessionData(ctx, s.storeID, raw)
}

// preCookie returns the pre-session cookie the sign-in form's CSRF token is
// bound to, setting a new one when the browser has none.
func preCookie(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(selfPreCookie); err == nil && c.Value != "" && len(c.Value) <= 100 {
		return c.Value
	}
	v := randomToken()
	setSelfCookie(w, r, selfPreCookie, v, 0)
	return v
}

// render writes the page: CSRF is bound to the session, or for the sign-in
// form to the pre-session cookie.
func (g *Gateway) renderSelf(w http.ResponseWriter, r *http.Request, status int, s *selfSession, v selfView, errText string) {
	var csrf string
	if s != nil {
		csrf = csrfToken(selfCSRFPurpose, s.storeID, g.now())
		v.User = s.userID
	} else {
		csrf = csrfToken(selfPreCSRFPurpose, preCookie(w, r), g.now())
		v.User = ""
	}
	if v.View == "" {
		v.View = "signin"
	}
	renderPage(w, status, "selfservice.html", PageData{Title: "Two-factor authentication", CSRF: csrf, Error: errText, Data: v})
}

// statusView renders the signed-in status page.
func (g *Gateway) renderStatus(w http.ResponseWriter, r *http.Request, status int, s *selfSession, notice, errText string) {
	st, err := g.acc.Status(r.Context(), s.userID)
	if err != nil {
		g.selfInternal(w, r, s, err)
		return
	}
	v := selfView{View: "status", Status: st, Notice: notice}
	v.Resumable = st.Pending && len(s.data.Enrol) > 0
	g.renderSelf(w, r, status, s, v, errText)
}

func (g *Gateway) selfInternal(w http.ResponseWriter, r *http.Request, s *selfSession, err error) {
	httpx.Logger(r).WithError(err).Error("self-service page: internal error")
	v := selfView{View: "failure", Back: true}
	g.renderSelf(w, r, http.StatusInternalServerError, s, v, "Something went wrong on our side. Please try again later.")
}

// handleSelfGet shows the page for the browser's state: signed out, waiting
// for the 2FA code, or signed in.
func (g *Gateway) handleSelfGet(w http.ResponseWriter, r *http.Request) {
	s, err := g.loadSelfSession(r)
	if err != nil {
		g.selfInternal(w, r, nil, err)
		return
	}
	switch {
	case s == nil:
		if _, err := r.Cookie(selfSessionCookie); err == nil {
			setSelfCookie(w, r, selfSessionCookie, "", -1)
		}
		g.renderSelf(w, r, http.StatusOK, nil, selfView{View: "signin"}, "")
	case s.data.Stage == stagePassword:
		g.renderSelf(w, r, http.StatusOK, s, selfView{View: "code"}, "")
	default:
		g.renderStatus(w, r, http.StatusOK, s, "", "")
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
)

// handleSelfPost runs one of the page's forms, chosen by its action field.
func (g *Gateway) handleSelfPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpx.WriteError(w, r, httperr.ErrTooLarge)
			return
		}
		g.renderSelf(w, r, http.StatusBadRequest, nil, selfView{View: "signin"}, "The form could not be read.")
		return
	}
	// A cross-site form post never gets here with a valid token anyway;
	// browsers that say so are refused before anything else.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		g.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgCSRF)
		return
	}
	action := r.PostForm.Get("action")
	token := r.PostForm.Get("csrf")
	if action == "signin" {
		pre, err := r.Cookie(selfPreCookie)
		if err != nil || !checkCSRF(selfPreCSRFPurpose, pre.Value, token, g.now()) {
			g.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgCSRF)
			return
		}
		g.selfSignIn(w, r)
		return
	}
	s, err := g.loadSelfSession(r)
	if err != nil {
		g.selfInternal(w, r, nil, err)
		return
	}
	if s == nil {
		setSelfCookie(w, r, selfSessionCookie, "", -1)
		g.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgEnded)
		return
	}
	if !checkCSRF(selfCSRFPurpose, s.storeID, token, g.now()) {
		if s.data.Stage == stagePassword {
			g.renderSelf(w, r, http.StatusForbidden, s, selfView{View: "code"}, msgCSRF)
		} else {
			g.renderStatus(w, r, http.StatusForbidden, s, "", msgCSRF)
		}
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithFields(logrus.Fields{"user_id": s.userID, "action": action}))
	if action == "signout" {
		g.selfSignOut(w, r, s)
		return
	}
	if s.data.Stage == stagePassword {
		if action != "code" {
			g.renderSelf(w, r, http.StatusBadRequest, s, selfView{View: "code"}, "Enter your code to finish signing in.")
			return
		}
		g.selfSecondFactor(w, r, s)
		return
	}
	switch action {
	case "enrol":
		g.selfEnrol(w, r, s)
	case "resume":
		g.selfResume(w, r, s)
	case "confirm":
		g.selfConfirm(w, r, s)
	case "regenerate":
		g.selfRegenerate(w, r, s)
	case "disable":
		g.selfDisable(w, r, s)
	default:
		g.renderStatus(w, r, http.StatusBadRequest, s, "", "Unknown action.")
	}
}

// selfSignIn checks the password. A localpart cannot be turned into a user ID
// without knowing the homeserver's server name (which the gateway is not
// configured with), so the password is checked with a real password login,
// which takes a localpart or a full ID and answers with the user ID; the new
// device is logged out again at once. A full ID is checked against the answer.
func (g *Gateway) selfSignIn(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostForm.Get("username"))
	password := r.PostForm.Get("password")
	v := selfView{View: "signin", Username: username}
	if username == "" || password == "" {
		g.renderSelf(w, r, http.StatusBadRequest, nil, v, msgNoCredential)
		return
	}
	if len(username) > 255 || len(password) > 1024 {
		g.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		return
	}
	ctx := r.Context()
	login, err := g.hs.PasswordLogin(ctx, username, password, "", selfDeviceName)
	if err != nil {
		var re mautrix.RespError
		switch {
		case errors.As(err, &re) && re.StatusCode == http.StatusTooManyRequests:
			wait := time.Minute
			if ms, ok := re.ExtraData["retry_after_ms"].(float64); ok && ms > 0 {
				wait = time.Duration(ms) * time.Millisecond
			}
			g.renderLocked(w, r, nil, wait)
		case errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500:
			httpx.Logger(r).WithField("errcode", re.ErrCode).Info("self-service sign-in refused")
			g.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		default:
			httpx.Logger(r).WithError(err).Error("self-service sign-in: homeserver failed")
			g.renderSelf(w, r, http.StatusBadGateway, nil, v, "The homeserver could not be reached. Please try again later.")
		}
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	if err := g.hs.Logout(cctx, login.AccessToken); err != nil {
		httpx.Logger(r).WithError(err).WithField("device_id", login.DeviceID).Error("self-service sign-in: could not log the check device out")
	}
	cancel()
	userID := string(login.UserID)
	if strings.HasPrefix(username, "@") && !canonical.SameUser(username, userID) {
		httpx.Logger(r).WithField("answered_user_id", userID).Error("self-service sign-in: homeserver answered for another user")
		g.renderSelf(w, r, http.StatusForbidden, nil, v, msgBadPassword)
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", userID))
	enabled, err := g.acc.Enabled(ctx, userID)
	if err != nil {
		g.selfInternal(w, r, nil, err)
		return
	}
	stage, ttl := stageFull, selfSessionTTL
	if enabled {
		stage, ttl = stagePassword, selfPendingTTL
	}
	g.dropSelfCookieSession(r)
	if _, err := g.newSelfSession(ctx, w, r, userID, stage, ttl); err != nil {
		g.selfInternal(w, r, nil, err)
		return
	}
	httpx.Logger(r).WithField("stage", stage).Info("self-service sign-in: password accepted")
	http.Redirect(w, r, SelfServicePath, http.StatusSeeOther)
}

// dropSelfCookieSession deletes the session the request's cookie names, if any.
func (g *Gateway) dropSelfCookieSession(r *http.Request) {
	if c, err := r.Cookie(selfSessionCookie); err == nil && c.Value != "" {
		g.store.TakeSession(r.Context(), selfStoreID(c.Value))
	}
}

// selfSecondFactor completes the sign-in with a TOTP or recovery code and
// replaces the session by a full one under a new ID.
func (g *Gateway) selfSecondFactor(w http.ResponseWriter, r *http.Request, s *selfSession) {
	code := r.PostForm.Get("code")
	if strings.TrimSpace(code) == "" {
		g.renderSelf(w, r, http.StatusBadRequest, s, selfView{View: "code"}, msgNoCode)
		return
	}
	if err := flows.VerifyEither(r.Context(), g.acc, s.userID, code); err != nil {
		g.codeFailure(w, r, s, err, func(status int, msg string) {
			g.renderSelf(w, r, status, s, selfView{View: "code"}, msg)
		})
		return
	}
	if _, err := g.store.TakeSession(r.Context(), s.storeID); err != nil {
		// Taken concurrently (another tab, sign-out): this one lost.
		setSelfCookie(w, r, selfSessionCookie, "", -1)
		g.renderSelf(w, r, http.StatusForbidden, nil, selfView{View: "signin"}, msgEnded)
		return
	}
	if _, err := g.newSelfSession(r.Context(), w, r, s.userID, stageFull, selfSessionTTL); err != nil {
		g.selfInternal(w, r, nil, err)
		return
	}
	httpx.Logger(r).Info("self-service sign-in: second factor accepted")
	http.Redirect(w, r, SelfServicePath, http.StatusSeeOther)
}

// codeFailure answers a failed code check: 429 when locked out, 403 for a
// wrong code, 400 for a missing one or 2FA being off, 500 otherwise.
func (g *Gateway) codeFailure(w http.ResponseWriter, r *http.Request, s *selfSession, err error, show func(status int, msg string)) {
	if le, ok := account.IsLocked(err); ok {
		httpx.Logger(r).Info("self-service: locked out")
		g.renderLocked(w, r, s, le.RetryAfter)
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
		g.selfInternal(w, r, s, err)
	}
}

func (g *Gateway) renderLocked(w http.ResponseWriter, r *http.Request, s *selfSession, wait time.Duration) {
	secs := int64((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	g.renderSelf(w, r, http.StatusTooManyRequests, s, selfView{View: "locked", Retry: humanWait(secs), Back: true},
		"Too many failed attempts.")
}

func humanWait(secs int64) string {
	switch {
	case secs < 60:
		return fmt.Sprintf("%d seconds", secs)
	case secs < 120:
		return "a minute"
	default:
		return fmt.Sprintf("%d minutes", (secs+59)/60)
	}
}

func (g *Gateway) selfSignOut(w http.ResponseWriter, r *http.Request, s *selfSession) {
	g.store.TakeSession(r.Context(), s.storeID)
	setSelfCookie(w, r, selfSessionCookie, "", -1)
	httpx.Logger(r).Info("self-service: signed out")
	http.Redirect(w, r, SelfServicePath, http.StatusSeeOther)
}

// selfEnrol starts (or restarts) enrolment and shows the QR code. Replacing an
// enabled authenticator needs a code from it (or a recovery code) first, as
// the enrolment endpoint's 2FA stage does.
func (g *Gateway) selfEnrol(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	enabled, err := g.acc.Enabled(ctx, s.userID)
	if err != nil {
		g.selfInternal(w, r, s, err)
		return
	}
	if enabled {
		code := r.PostForm.Get("code")
		if strings.TrimSpace(code) == "" {
			g.renderStatus(w, r, http.StatusBadRequest, s, "", "Enter a code from your current authenticator to set up a new one.")
			return
		}
		if err := flows.VerifyEither(ctx, g.acc, s.userID, code); err != nil {
			g.codeFailure(w, r, s, err, func(status int, msg string) { g.renderStatus(w, r, status, s, "", msg) })
			return
		}
	}
	en, err := g.acc.Enrol(ctx, s.userID)
	if err != nil {
		g.selfInternal(w, r, s, err)
		return
	}
	se := sealedEnrolment{Secret: en.Secret, URI: en.URI, Params: en.Params, ExpiresAt: en.ExpiresAt}
	plain, _ := json.Marshal(se)
	sealed, err := g.box.Seal(selfEnrolOwner(s), plain)
	clear(plain)
	if err == nil {
		s.data.Enrol = sealed
		err = g.saveSelfSession(ctx, s)
	}
	if err != nil {
		httpx.Logger(r).WithError(err).Warn("self-service: could not keep the enrolment in the web session")
	}
	httpx.Logger(r).Info("self-service: enrolment started")
	g.renderSelf(w, r, http.StatusOK, s, selfView{View: "enrol", Enrol: enrolViewOf(se, en.QRPNG, enabled)}, "")
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
func (g *Gateway) sessionEnrolment(ctx context.Context, s *selfSession) (*enrolView, bool) {
	if len(s.data.Enrol) == 0 {
		return nil, false
	}
	st, err := g.acc.Status(ctx, s.userID)
	if err != nil || !st.Pending {
		return nil, false
	}
	plain, err := g.box.Open(selfEnrolOwner(s), g.box.KeyID(), s.data.Enrol)
	if err != nil {
		return nil, false
	}
	defer clear(plain)
	var se sealedEnrolment
	if json.Unmarshal(plain, &se) != nil || !g.now().Before(se.ExpiresAt) {
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
func (g *Gateway) selfResume(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ev, ok := g.sessionEnrolment(r.Context(), s)
	if !ok {
		g.renderStatus(w, r, http.StatusBadRequest, s, "", "That enrolment can no longer be shown. Please start again.")
		return
	}
	g.renderSelf(w, r, http.StatusOK, s, selfView{View: "enrol", Enrol: ev}, "")
}

// selfConfirm enables the pending secret with a code from it and shows the
// new recovery codes, once.
func (g *Gateway) selfConfirm(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	codes, err := g.acc.Confirm(ctx, s.userID, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""))
	if err != nil {
		g.codeFailure(w, r, s, err, func(status int, msg string) {
			if ev, ok := g.sessionEnrolment(ctx, s); ok && !errors.Is(err, account.ErrNoPending) {
				g.renderSelf(w, r, status, s, selfView{View: "enrol", Enrol: ev}, msg)
				return
			}
			g.renderStatus(w, r, status, s, "", msg)
		})
		return
	}
	s.data.Enrol = nil
	if err := g.saveSelfSession(ctx, s); err != nil {
		httpx.Logger(r).WithError(err).Warn("self-service: could not clear the enrolment from the web session")
	}
	httpx.Logger(r).Info("self-service: two-factor authentication enabled")
	g.renderCodes(w, r, s, codes, "Two-factor authentication is now on.")
}

func (g *Gateway) renderCodes(w http.ResponseWriter, r *http.Request, s *selfSession, codes []string, notice string) {
	text := "matrix-2fa recovery codes for " + s.userID + "\nEach code works once.\n\n" + strings.Join(codes, "\n") + "\n"
	href := template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text)))
	g.renderSelf(w, r, http.StatusOK, s, selfView{View: "codes", Codes: codes, CodesHref: href, Notice: notice}, "")
}

// selfEnabled answers on the status page, and returns false, unless the
// user has 2FA on.
func (g *Gateway) selfEnabled(w http.ResponseWriter, r *http.Request, s *selfSession) bool {
	enabled, err := g.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		g.selfInternal(w, r, s, err)
		return false
	}
	if !enabled {
		g.renderStatus(w, r, http.StatusBadRequest, s, "", "Two-factor authentication is not enabled.")
		return false
	}
	return true
}

// selfRegenerate replaces the recovery codes after a fresh code (step-up).
func (g *Gateway) selfRegenerate(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	show := func(status int, msg string) { g.renderStatus(w, r, status, s, "", msg) }
	if !g.selfEnabled(w, r, s) {
		return
	}
	if err := flows.VerifyEither(ctx, g.acc, s.userID, r.PostForm.Get("code")); err != nil {
		g.codeFailure(w, r, s, err, show)
		return
	}
	codes, err := g.acc.Regenerate(ctx, s.userID)
	if err != nil {
		g.codeFailure(w, r, s, err, show)
		return
	}
	httpx.Logger(r).Info("self-service: recovery codes regenerated")
	g.renderCodes(w, r, s, codes, "New recovery codes were made; the old ones no longer work.")
}

// selfDisable turns 2FA off after the password and a code.
func (g *Gateway) selfDisable(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	show := func(status int, msg string) { g.renderStatus(w, r, status, s, "", msg) }
	if !g.selfEnabled(w, r, s) {
		return
	}
	password, code := r.PostForm.Get("password"), r.PostForm.Get("code")
	if password == "" || strings.TrimSpace(code) == "" {
		show(http.StatusBadRequest, "Enter your password and a code.")
		return
	}
	ok, err := g.hs.CheckPassword(ctx, id.UserID(s.userID), password)
	if err != nil {
		var re mautrix.RespError
		if errors.As(err, &re) && re.StatusCode == http.StatusTooManyRequests {
			g.renderLocked(w, r, s, time.Minute)
			return
		}
		g.selfInternal(w, r, s, err)
		return
	}
	if !ok {
		httpx.Logger(r).Info("self-service: disable refused, wrong password")
		show(http.StatusForbidden, msgBadPwOrCode)
		return
	}
	if err := flows.VerifyEither(ctx, g.acc, s.userID, code); err != nil {
		g.codeFailure(w, r, s, err, func(status int, msg string) {
			if status == http.StatusForbidden {
				msg = msgBadPwOrCode
			}
			show(status, msg)
		})
		return
	}
	if err := g.acc.Disable(ctx, s.userID); err != nil {
		g.codeFailure(w, r, s, err, show)
		return
	}
	s.data.Enrol = nil
	g.saveSelfSession(ctx, s)
	httpx.Logger(r).Info("self-service: two-factor authentication disabled")
	g.renderStatus(w, r, http.StatusOK, s, "Two-factor authentication is now off.", "")
}
