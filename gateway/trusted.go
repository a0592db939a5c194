package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// client is who sends r for the trusted-client policy: its user agent and
// its address as the gateway sees it (behind trusted proxies, theirs).
func (g *Gateway) client(r *http.Request) trust.Client {
	o := g.origin(r)
	return trust.Client{UA: o.UA, Addr: o.Addr}
}

// trusted reports whether user's token, from r's client, may skip the 2FA
// stage of op now. A storage error is logged and asks for the stage.
func (g *Gateway) trusted(r *http.Request, user, token, op string) bool {
	ok, err := g.trust.Trusted(r.Context(), user, token, g.client(r), op)
	if err != nil {
		httpx.Logger(r).WithError(err).Warn("trusted client: check failed; asking for the second factor")
		return false
	}
	if ok {
		httpx.Logger(r).WithField("operation", op).Info("trusted client: second factor skipped")
	}
	return ok
}

// trustedGuarded reports whether q goes to the homeserver as for a user
// without 2FA: its client is trusted, it sends none of the gateway's stages,
// and it continues no gateway session (one in progress goes on as it began).
func (g *Gateway) trustedGuarded(r *http.Request, q *guardedRequest) bool {
	if !g.trust.Enabled() || q.second != nil || q.token == "" {
		return false
	}
	if sid := q.clientSession(); sid != "" {
		if _, err := g.store.Session(r.Context(), sid); err == nil {
			return false
		}
	}
	return g.trusted(r, q.owner, q.token, q.ep.Op)
}

// grantTrust trusts user's token from r's client for the window, after a
// completed 2FA stage; a failure is logged (the client is asked next time).
func (g *Gateway) grantTrust(r *http.Request, user, token string) {
	if !g.trust.Enabled() {
		return
	}
	if err := g.trust.Grant(r.Context(), user, token, g.client(r)); err != nil {
		httpx.Logger(r).WithError(err).Warn("trusted client: could not record the trust")
	}
}

// ownFlows are fl for our own endpoint op: without the 2FA stages for a
// trusted client, unless the request continues a session begun with fl.
func (g *Gateway) ownFlows(r *http.Request, user, op string, fl [][]string, session string) [][]string {
	tok, err := httpx.RequestToken(r)
	if err != nil || !g.trust.Enabled() || !g.trusted(r, user, tok, op) {
		return fl
	}
	if session != "" {
		if s, err := g.store.Session(r.Context(), session); err == nil && slices.EqualFunc(s.Flows, fl, slices.Equal) {
			return fl
		}
	}
	return withoutSecondFactor(fl)
}

// withoutSecondFactor is fl with the 2FA stages left out, without empty or
// repeated flows.
func withoutSecondFactor(fl [][]string) [][]string {
	var out [][]string
	for _, f := range fl {
		var stages []string
		for _, st := range f {
			if !flows.IsSecondFactor(st) {
				stages = append(stages, st)
			}
		}
		if len(stages) > 0 && !slices.ContainsFunc(out, func(o []string) bool { return slices.Equal(o, stages) }) {
			out = append(out, stages)
		}
	}
	return out
}

// logoutToken is the access token of a POST to a logout endpoint while
// trusted clients are on ("" otherwise), so its trust can end with it.
func (g *Gateway) logoutToken(r *http.Request) string {
	if r.Method != http.MethodPost || !g.trust.Enabled() || !strings.HasPrefix(r.URL.Path, "/_matrix/client/") ||
		!(strings.HasSuffix(r.URL.Path, "/logout") || strings.HasSuffix(r.URL.Path, "/logout/all")) {
		return ""
	}
	tok, err := httpx.RequestToken(r)
	if err != nil {
		return ""
	}
	return tok
}

// forgetTrust ends the trust of a token that was logged out (best effort:
// a failure is logged; the homeserver refuses the token anyway).
func (g *Gateway) forgetTrust(r *http.Request, token string) {
	// The client may be gone already: the forgetting outlives its request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if _, err := g.trust.Forget(ctx, token); err != nil {
		g.log.WithError(err).Warn("trusted client: could not forget a logged-out token")
	}
}
