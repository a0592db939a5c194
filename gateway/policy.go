package gateway

import (
	"context"
	"errors"
	"net/http"
	"path"
	"regexp"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/pages"
	"github.com/matrix-2fa/matrix-2fa/policy"
)

// The enforcement policy at the API (spec/protocol.md, "Enforcement
// policy"): with it on, every request to the homeserver's APIs carrying an
// access token is checked (a cached whoami, then the policy, cached too);
// a user it blocks (past the grace period, no 2FA) gets 403 M_FORBIDDEN
// naming the enrolment page, except on what enrolling needs: the gateway's
// /account/two-factor endpoints, /account/whoami, /logout and /logout/all
// (and /login itself, checked there). The gateway's own pages take no
// access token. With the policy off none of this runs.

// enrolAllowed matches the client API paths a blocked user may still use,
// spelt exactly (see policyGuards).
var enrolAllowed = regexp.MustCompile(`^/_matrix/client/(?:v\d+|r0|api/v1|unstable(?:/[^/%]+)?)/(account/two-factor(/[^%]*)?|account/whoami|logout(/all)?|login)$`)

// policyGuards reports whether the policy checks a request to the raw
// (escaped) path p. Only the exact spelling of an allowed path is let
// through: a dot segment, an escape, a double slash or another letter case
// could be read by the homeserver (or a proxy) as another endpoint (Synapse's
// state_key takes "../../account/whoami"), so such a spelling is checked.
func policyGuards(p string) bool {
	plain := p == "/" || strings.HasPrefix(p, "/") && !strings.Contains(p, "%") && path.Clean(p) == strings.TrimSuffix(p, "/")
	if l := strings.ToLower(p); !strings.HasPrefix(l, "/_matrix/") && !strings.HasPrefix(l, "/_synapse/") && !strings.HasPrefix(l, "/_dendrite/") {
		return !plain
	}
	return !plain || !enrolAllowed.MatchString(p)
}

// enrolURL is the self-service page, where a blocked user enrols.
func (g *Gateway) enrolURL(r *http.Request) string {
	if g.cfg.PublicBaseURL != "" {
		return strings.TrimRight(g.cfg.PublicBaseURL, "/") + pages.SelfServicePath
	}
	scheme := "http"
	if pages.Secure(r, "", g.proxies) {
		scheme = "https"
	}
	return scheme + "://" + r.Host + pages.SelfServicePath
}

// policyError is the Matrix error of a user the policy blocks.
func (g *Gateway) policyError(r *http.Request) error {
	return mautrix.MForbidden.WithMessage("Two-factor authentication is required for this account: set it up at %s, then try again", g.enrolURL(r))
}

// policyBlocks answers a request carrying the access token of a user the
// policy blocks (true: answered). Unknown tokens go on (the homeserver
// refuses them itself), as do application services' (they have no device).
func (g *Gateway) policyBlocks(w http.ResponseWriter, r *http.Request) bool {
	if !policyGuards(r.URL.EscapedPath()) {
		return false
	}
	tok, err := httpx.RequestToken(r)
	if err != nil { // a token given twice: the homeserver might take either
		httpx.WriteError(w, r, err)
		return true
	}
	if tok == "" {
		return false
	}
	who, err := g.hs.WhoAmI(r.Context(), tok)
	var re mautrix.RespError
	if errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden) || err == nil && who.DeviceID == "" {
		return false // a token the homeserver refuses itself, or an application service's
	}
	var st policy.State
	if err == nil {
		st, err = g.policy.Evaluate(policy.WithAccessToken(r.Context(), tok), string(who.UserID))
	}
	if err == nil && !st.Enforced {
		return false
	}
	l := g.log.WithField("user_id", who.UserID).WithField("path", r.URL.Path)
	if err != nil {
		l.WithError(err).Error("enforcement policy: could not decide; refused")
	} else {
		l.Info("enforcement policy: request refused, no 2FA after the grace period")
		err = g.policyError(r)
	}
	httpx.WriteError(w, r, err)
	return true
}

// loginBlocked answers, and logs out again, a successful login of a user
// without 2FA whom the policy blocks (true: answered).
func (g *Gateway) loginBlocked(w http.ResponseWriter, r *http.Request, login *mautrix.RespLogin) bool {
	if !g.policy.On() {
		return false
	}
	st, err := g.policy.Evaluate(policy.WithAccessToken(r.Context(), login.AccessToken), string(login.UserID))
	if err == nil && !st.Enforced {
		return false
	}
	l := httpx.Logger(r).WithField("user_id", login.UserID)
	if lerr := g.hs.Logout(context.WithoutCancel(r.Context()), login.AccessToken); lerr != nil {
		l.WithError(lerr).Error("logging out a login the enforcement policy refused")
	}
	if err == nil {
		l.Info("enforcement policy: login refused, no 2FA after the grace period")
		err = g.policyError(r)
	}
	httpx.WriteError(w, r, err)
	return true
}

// disableRefused answers a request to disable 2FA while the policy applies
// to the caller (true: answered).
func (g *Gateway) disableRefused(w http.ResponseWriter, r *http.Request, who homeserver.WhoAmI) bool {
	if !g.policy.On() {
		return false
	}
	tok, _ := httpx.RequestToken(r)
	st, err := g.policy.Evaluate(policy.WithAccessToken(r.Context(), tok), string(who.UserID))
	if err == nil && !st.Applies {
		return false
	}
	if err == nil {
		httpx.Logger(r).Info("enforcement policy: disabling 2FA refused")
		err = httperr.ErrPolicyRequired
	}
	httpx.WriteError(w, r, err)
	return true
}
