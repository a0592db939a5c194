package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/trust"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// The m.oauth stage (MSC4312; oauth/approval.go): a 2FA user's guarded
// operation (every guarded endpoint) from a client holding an OAuth-issued
// token.

// oauthStageState is hsState with what the account page shows and adds.
type oauthStageState struct {
	hsState
	// Approve is the operation the page asks the user to approve.
	Approve oauth.Operation `json:"approve"`
	// Device is the device of the access token that started the session:
	// only that client's retry completes it (also after it refreshed its
	// token, which keeps the device).
	Device string `json:"device,omitempty"`
	// Approval is the sealed password the user approved with.
	Approval []byte `json:"approval,omitempty"`
}

// wantsOAuthStage reports whether q gets the m.oauth stage: a guarded
// operation with a token this gateway's OAuth server issued.
func (g *Gateway) wantsOAuthStage(r *http.Request, q *guardedRequest) (bool, error) {
	if q.token == "" || !g.oauth.Enabled() {
		return false, nil
	}
	return g.oauth.IsGrantToken(r.Context(), q.token)
}

// approveOperation is the operation q asks for, as the account page shows
// it: read from the rebuilt fields and the path, never from the raw body.
func approveOperation(r *http.Request, q *guardedRequest) oauth.Operation {
	op := oauth.Operation{Op: q.ep.Op}
	switch q.ep.Op {
	case trust.DeleteDevices:
		json.Unmarshal(q.fields["devices"], &op.Devices)
	case trust.DeleteDevice:
		if device, err := url.PathUnescape(mux.Vars(r)["deviceId"]); err == nil {
			op.Devices = []string{device}
		}
	case trust.ChangePassword:
		var logout *bool
		json.Unmarshal(q.fields["logout_devices"], &logout)
		op.KeepDevices = logout != nil && !*logout
	case trust.Deactivate:
		json.Unmarshal(q.fields["erase"], &op.Erase)
	}
	return op
}

// oauthChallenge is the 401 for s: the one m.oauth flow, with its url.
func (g *Gateway) oauthChallenge(s *uia.Session) *uia.Challenge {
	ch := g.engine.Challenge(s, nil)
	var state oauthStageState
	json.Unmarshal(s.Data, &state)
	if state.Approve.Op == "" {
		state.Approve.Op = trust.CrossSigningReset // a session from before the field
	}
	ch.Params = map[string]any{oauth.StageOAuth: map[string]string{"url": g.oauth.ApprovalURL(s.ID, state.Approve)}}
	return ch
}

// startOAuthStage starts the m.oauth session of q (homeserver session hsID,
// "" for none) and answers its challenge.
func (g *Gateway) startOAuthStage(w http.ResponseWriter, r *http.Request, q *guardedRequest, hsID string) {
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: q.owner}
	op := approveOperation(r, q)
	data, _ := json.Marshal(oauthStageState{hsState: hsState{Session: hsID, Operation: q.operation()}, Approve: op,
		Device: q.device})
	s, err := g.engine.Start(r.Context(), req, [][]string{{oauth.StageOAuth}}, "", data, 0)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r).WithField("operation", op.Op).Info("guarded operation with an OAuth token: m.oauth stage")
	httpx.WriteJSON(w, http.StatusUnauthorized, g.oauthChallenge(s))
}

// oauthStage runs the m.oauth stage: the homeserver's challenge (or, on an
// endpoint the gateway guards with its own UIA, the request itself) becomes
// a session whose one flow is m.oauth; once the account page has approved it
// (password and code), the client's retry goes to the homeserver with the
// approved password (without auth on an own-UIA endpoint), exactly once.
func (g *Gateway) oauthStage(w http.ResponseWriter, r *http.Request, q *guardedRequest) {
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: q.owner}
	if q.clientSession() == "" {
		if q.ep.OwnUIA {
			g.startOAuthStage(w, r, q, "")
			return
		}
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
		g.startOAuthStage(w, r, q, hsUIA.Session)
		return
	}
	s, err := g.loadGuarded(r, q, req, true)
	if err == nil && !sameClient(s, q.device) {
		err = uia.ErrSessionMismatch
	}
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

// sameClient reports whether m.oauth session s was started from device (a
// session from before the field: any device of its user).
func sameClient(s *uia.Session, device string) bool {
	var state oauthStageState
	if json.Unmarshal(s.Data, &state) != nil {
		return false
	}
	return state.Device == "" || subtle.ConstantTimeCompare([]byte(state.Device), []byte(device)) == 1
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
	httpx.Logger(r).WithField("operation", q.ep.Op).Info("operation approved on the account page; forwarded")
	if q.ep.OwnUIA {
		g.forwardAs(w, r, q, nil)
		return
	}
	auth, _ := json.Marshal(map[string]any{"type": "m.login.password", "session": state.Session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": q.owner}})
	g.forwardAs(w, r, q, auth)
}
