package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Admin page sessions, like the self-service page's: the browser holds a
// random 32-byte cookie (HttpOnly, SameSite=Strict, path PagePath, Secure
// over https); the store keeps a session of kind storage.KindAdminWeb under
// a hash of it. Sign-in makes a short "password done" session when the admin
// has 2FA; the code replaces it by a full one under a new ID.

const (
	sessionCookie  = "matrix2fa_admin_session"
	preCookie      = "matrix2fa_admin_presession"
	sessionPath    = "/_matrix2fa/admin/session"
	sessionMethod  = "WEB"
	sessionTTL     = 15 * time.Minute
	pendingTTL     = 5 * time.Minute
	csrfPurpose    = "admin-page"
	preCSRFPurpose = "admin-page-signin"
	deviceName     = "matrix-2fa admin page"
	stagePassword  = "password"
	stageFull      = "full"
)

type sessionData struct {
	Stage string `json:"stage"`
	// HSAdmin: the homeserver said this user is an admin at sign-in.
	HSAdmin bool `json:"hs_admin"`
}

type session struct {
	storeID string
	userID  string
	data    sessionData
}

func storeID(cookie string) string {
	h := sha256.Sum256([]byte("matrix2fa-admin-session\x00" + cookie))
	return "admin:" + base64.RawURLEncoding.EncodeToString(h[:])
}

func (a *Admin) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: PagePath, MaxAge: maxAge,
		HttpOnly: true, Secure: a.secure(r), SameSite: http.SameSiteStrictMode})
}

// loadSession returns the request's live admin page session, or nil.
func (a *Admin) loadSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	sid := storeID(c.Value)
	s, err := a.store.Session(r.Context(), sid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.Kind != storage.KindAdminWeb || s.Path != sessionPath || !a.now().Before(s.ExpiresAt) {
		return nil, nil
	}
	var d sessionData
	if json.Unmarshal(s.Data, &d) != nil || (d.Stage != stagePassword && d.Stage != stageFull) {
		return nil, nil
	}
	return &session{storeID: sid, userID: s.UserID, data: d}, nil
}

// newSession stores a session for userID and sets its cookie.
func (a *Admin) newSession(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, d sessionData, ttl time.Duration) error {
	cookie := httpx.RandomToken(32)
	now := a.now()
	raw, _ := json.Marshal(d)
	err := a.store.CreateSession(ctx, storage.UIASession{ID: storeID(cookie), Kind: storage.KindAdminWeb, UserID: userID,
		Method: sessionMethod, Path: sessionPath, Data: raw, CreatedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return err
	}
	a.setCookie(w, r, sessionCookie, cookie, 0)
	return nil
}

// preSession returns the cookie the sign-in form's CSRF token is bound to,
// setting one when the browser has none.
func (a *Admin) preSession(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && c.Value != "" && len(c.Value) <= 100 {
		return c.Value
	}
	v := httpx.RandomToken(32)
	a.setCookie(w, r, preCookie, v, 0)
	return v
}

// sessionPrincipal is who a signed-in session acts as under the current
// configuration; ok=false when the user is no longer an admin.
func (a *Admin) sessionPrincipal(s *session) (principal, bool) {
	for _, sc := range a.cfg.Scoped {
		if sc.User == s.userID {
			return principal{name: s.userID, scope: Scope{patterns: slices.Clone(sc.Users)}}, true
		}
	}
	if slices.Contains(a.cfg.Admins, s.userID) || (a.cfg.HomeserverAdmins && s.data.HSAdmin) {
		return principal{name: s.userID}, true
	}
	return principal{}, false
}
