package pages

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// "Remember this browser": on the code step of the sign-in page and of the
// OAuth authorization page a checkbox asks the gateway to skip the code in
// this browser next time. After a right code the browser gets a random
// 32-byte cookie (rememberCookie: HttpOnly, SameSite=Strict, Secure over
// https), set with the same value for Path /_matrix/client/ (the narrowest
// path that covers the sign-in page under every version prefix) and, with
// the OAuth API on, for Path /_matrix2fa/oauth2/ (the same cookie for the
// authorization page; no path sends it anywhere else), and the store keeps
// only its SHA-256, bound to the user, with when it was made, the browser's
// user agent and address, until RememberTTL has passed. A later sign-in on
// either page in that browser whose password the homeserver accepts for the
// same user is let in without the code. SameSite=Strict suffices: the cookie is read only
// on the form's POST, which the page makes to itself.
//
// The account page lists a user's remembered browsers and revokes one or
// all; account.Service revokes all when 2FA is turned off, reset or set up
// anew, and the gateway when the password is changed through it.

const (
	rememberCookie = "m2fa_remember"
	rememberPath   = "/_matrix/client/"
	// maxUserAgent bounds the user agent kept with a remembered browser.
	maxUserAgent = 256
)

// rememberHash is what the store keeps of a remember cookie.
func rememberHash(cookie string) []byte {
	h := sha256.Sum256([]byte("matrix2fa-remember\x00" + cookie))
	return h[:]
}

// remembered reports whether r comes from a browser userID chose to have
// remembered (and it has not expired or been revoked). A store failure is
// logged and counts as no: the code is asked.
func (p *Pages) remembered(r *http.Request, userID string) bool {
	if p.cfg.RememberTTL <= 0 || p.remember == nil {
		return false
	}
	c, err := r.Cookie(rememberCookie)
	if err != nil || len(c.Value) < 22 || len(c.Value) > 64 {
		return false
	}
	_, err = p.remember.Browser(r.Context(), userID, rememberHash(c.Value), p.now())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		httpx.Logger(r).WithError(err).Error("sign-in page: reading a remembered browser")
	}
	return err == nil
}

// rememberBrowser stores a new remembered browser for userID and sets its
// cookie; a failure is logged (the sign-in goes on, the browser is not
// remembered).
func (p *Pages) rememberBrowser(w http.ResponseWriter, r *http.Request, userID string) {
	if p.cfg.RememberTTL <= 0 || p.remember == nil {
		return
	}
	cookie := httpx.RandomToken(32)
	now := p.now()
	ua := r.UserAgent()
	if len(ua) > maxUserAgent {
		ua = strings.ToValidUTF8(ua[:maxUserAgent], "")
	}
	b := storage.RememberedBrowser{Hash: rememberHash(cookie), UserID: userID, UserAgent: ua,
		Addr: p.proxies.ClientAddr(r), CreatedAt: now, ExpiresAt: now.Add(p.cfg.RememberTTL)}
	if err := p.remember.PutBrowser(r.Context(), b); err != nil {
		httpx.Logger(r).WithError(err).Error("sign-in page: could not remember the browser")
		return
	}
	paths := []string{rememberPath}
	if p.oauth != nil {
		paths = append(paths, oauth.Prefix)
	}
	for _, path := range paths {
		http.SetCookie(w, &http.Cookie{Name: rememberCookie, Value: cookie, Path: path,
			MaxAge: int(p.cfg.RememberTTL.Seconds()), HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteStrictMode})
	}
	httpx.Logger(r).WithField("user_id", userID).Info("sign-in page: browser remembered")
}

// rememberOffer is the code steps' "remember this browser" checkbox: offered
// when on, for how many whole days (at least 1).
func (p *Pages) rememberOffer() rememberOffer {
	return rememberOffer{Remember: p.cfg.RememberTTL > 0 && p.remember != nil,
		RememberDays: max(1, int(p.cfg.RememberTTL.Hours()/24))}
}
