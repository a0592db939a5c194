package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// The m.oauth stage (MSC4312; oauth/approval.go): a 2FA user's
// cross-signing reset from a client holding an OAuth-issued token.

const xsignPath = "/keys/device_signing/upload"

// oauthStageState is hsState with the approval the account page added.
type oauthStageState struct {
	hsState
	// Approval is the sealed password the user approved with.
	Approval []byte `json:"approval,omitempty"`
}

// wantsOAuthStage reports whether q gets the m.oauth stage: the
// cross-signing upload, with a token this gateway's OAuth server issued.
func (g *Gateway) wantsOAuthStage(r *http.Request, q *guardedRequest) (bool, error) {
	if q.ep.Path != xsignPath || !g.oauth.Enabled() {
		return false, nil
	}
	return g.oauth.IsGrantToken(r.Context(), q.token)
}

// oauthChallenge is the 401 for s: the one m.oauth flow, with its url.
func (g *Gateway) oauthChallenge(s *uia.Session) *uia.Challenge {
	ch := g.engine.Challenge(s, nil)
	ch.Params = map[string]any{oauth.StageOAuth: map[string]string{"url": g.oauth.ApprovalURL(s.ID)}}
	return ch
}

// oauthStage runs the m.oauth stage: the homeserver's challenge becomes a
// session whose one flow is m.oauth; once the account page has approved it
// (password and code), the client's retry goes to the homeserver with the
// approved password, exactly once.
func (g *Gateway) oauthStage(w http.ResponseWriter, r *http.Request, q *guardedRequest) {
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: q.owner}
	if q.clientSession() == "" {
		resp, err := g.forward(r, q, nil)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		hsUIA, ok := homeserver.ParseUIA(resp.Body)
		if resp.Status != http.StatusUnauthorized || !ok {
			httpx.CopyResponse(w, resp) // no UIA needed (the first upload) or an error
			return
		}
		data, _ := json.Marshal(hsState{Session: hsUIA.Session, Operation: q.operation()})
		s, err := g.engine.Start(r.Context(), req, [][]string{{oauth.StageOAuth}}, "", data, 0)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.Logger(r).Info("cross-signing reset with an OAuth token: m.oauth stage")
		httpx.WriteJSON(w, http.StatusUnauthorized, g.oauthChallenge(s))
		return
	}
	s, err := g.loadGuarded(r, q, req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if !s.HasCompleted(oauth.StageOAuth) {
		httpx.WriteJSON(w, http.StatusUnauthorized, g.oauthChallenge(s))
		return
	}
	g.oauthApproved(w, r, q, s)
}

// oauthApproved consumes an approved session and forwards the request with
// the homeserver's password stage.
func (g *Gateway) oauthApproved(w http.ResponseWriter, r *http.Request, q *guardedRequest, s *uia.Session) {
	taken, err := g.engine.Finish(r.Context(), s)
	var state oauthStageState
	if err == nil {
		err = json.Unmarshal(taken.Data, &state)
	}
	var password string
	if err == nil {
		password, err = g.oauth.OpenApproval(s.ID, state.Approval)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	auth, _ := json.Marshal(map[string]any{"type": "m.login.password", "session": state.Session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": q.owner}})
	httpx.Logger(r).Info("cross-signing reset approved on the account page; forwarded")
	g.forwardAs(w, r, q, auth)
}
