package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
)

// Checker says whether userID is an admin of the homeserver, asked with the
// user's own access token.
type Checker interface {
	IsAdmin(ctx context.Context, userID, accessToken string) (bool, error)
}

// Prober is what HomeserverChecker needs of the homeserver client.
type Prober interface {
	Do(ctx context.Context, method, pathAndQuery string, header http.Header, body []byte) (*homeserver.Response, error)
}

// HomeserverChecker asks the homeserver with the caller's token. Synapse:
// GET /_synapse/admin/v1/users/{userId}/admin is 200 {"admin":true} for an
// admin and 403 for anyone else. Dendrite has no such endpoint (404) but
// answers its admin endpoints (GET /_dendrite/admin/registrationTokens, which
// only reads) with 200 for an admin and 403 for anyone else. A homeserver with
// neither has no admins here.
type HomeserverChecker struct{ HS Prober }

var _ Checker = HomeserverChecker{}

// IsAdmin implements Checker; errors are the homeserver being unreachable.
func (c HomeserverChecker) IsAdmin(ctx context.Context, userID, accessToken string) (bool, error) {
	h := http.Header{"Authorization": {"Bearer " + accessToken}}
	resp, err := c.HS.Do(ctx, http.MethodGet, "/_synapse/admin/v1/users/"+url.PathEscape(userID)+"/admin", h, nil)
	if err != nil {
		return false, err
	}
	switch resp.Status {
	case http.StatusOK:
		var b struct {
			Admin bool `json:"admin"`
		}
		return json.Unmarshal(resp.Body, &b) == nil && b.Admin, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, nil
	}
	resp, err = c.HS.Do(ctx, http.MethodGet, "/_dendrite/admin/registrationTokens", h, nil)
	if err != nil {
		return false, err
	}
	return resp.Status == http.StatusOK, nil
}

// principal is who acts: an admin's user ID (or "admin token") and scope.
type principal struct {
	name  string
	scope Scope
}

// tokenName names the static admin token in the audit log.
const tokenName = "admin token"

// resolve decides whether userID (holding accessToken) is an admin: a scoped
// admin first (scoped even when the homeserver says admin), then a listed
// admin, then the homeserver's answer. ok=false: no admin.
func (a *Admin) resolve(ctx context.Context, userID, accessToken string) (principal, bool, error) {
	for _, s := range a.cfg.Scoped {
		if s.User == userID {
			return principal{name: userID, scope: Scope{patterns: slices.Clone(s.Users)}}, true, nil
		}
	}
	if slices.Contains(a.cfg.Admins, userID) {
		return principal{name: userID}, true, nil
	}
	if !a.cfg.HomeserverAdmins || accessToken == "" {
		return principal{}, false, nil
	}
	ok, err := a.checker.IsAdmin(ctx, userID, accessToken)
	if err != nil || !ok {
		return principal{}, false, err
	}
	return principal{name: userID}, true, nil
}

// authorize resolves the API caller from its access token (or the static
// admin token).
func (a *Admin) authorize(r *http.Request) (principal, error) {
	if !a.cfg.Enabled {
		return principal{}, httperr.ErrAdminOff
	}
	tok, err := httpx.RequestToken(r)
	if err != nil {
		return principal{}, err
	}
	if tok == "" {
		return principal{}, httperr.ErrMissingToken
	}
	if a.cfg.tokenMatches(tok) {
		return principal{name: tokenName}, nil
	}
	who, err := a.hs.WhoAmI(r.Context(), tok)
	if err != nil {
		return principal{}, err
	}
	p, ok, err := a.resolve(r.Context(), string(who.UserID), tok)
	if err != nil {
		return principal{}, err
	}
	if !ok {
		httpx.Logger(r).WithField("user_id", who.UserID).Warn("admin API refused: not an admin")
		return principal{}, httperr.ErrNotAdmin
	}
	return p, nil
}
