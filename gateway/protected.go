package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// hsState is what a gateway session remembers of the homeserver's session.
type hsState struct {
	// Session is the homeserver's session ID ("" when it gave none and the
	// gateway minted the ID).
	Session string `json:"session"`
	// Params are the homeserver's params, returned with every challenge.
	Params map[string]json.RawMessage `json:"params,omitempty"`
	// Operation is the SHA-256 of the rebuilt body (auth left out) that
	// started the session: a later round must ask for the same operation.
	Operation []byte `json:"operation"`
}

// operation is the SHA-256 of the request's rebuilt body without auth.
func (q *guardedRequest) operation() []byte {
	h := sha256.Sum256(q.upstream(nil))
	return h[:]
}

// guardedRequest is a request to a guarded endpoint as the gateway read it.
type guardedRequest struct {
	ep     guardedEndpoint
	token  string
	owner  string // the access token's owner ("" without a token)
	device string // the access token's device
	// fields are the body's fields besides auth, rebuilt (ep.Body).
	fields map[string]json.RawMessage
	// auth is the auth dict (nil: none); second is set when it is one of
	// the gateway's own 2FA stages.
	auth   *canonical.Auth
	second *uia.Auth
}

// upstream returns the request body to forward with auth (nil: none).
func (q *guardedRequest) upstream(auth json.RawMessage) []byte {
	body := make(map[string]json.RawMessage, len(q.fields)+1)
	for k, v := range q.fields {
		body[k] = v
	}
	if auth != nil {
		body["auth"] = auth
	}
	b, _ := json.Marshal(body)
	return b
}

// handleGuarded guards a homeserver endpoint: every request is read and
// rebuilt (the auth dict bound to the token's owner, only known fields);
// for a user with 2FA the 2FA stage comes first, so the homeserver sees a
// request with auth only after the 2FA stage is complete for that session and
// that user, and never sees the gateway's stage types.
func (g *Gateway) handleGuarded(ep guardedEndpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := g.readGuarded(w, r, ep)
		if err != nil {
			g.refuseGuarded(w, r, q, err)
			return
		}
		enabled := false
		if q.owner != "" {
			r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", q.owner))
			if enabled, err = g.acc.Enabled(r.Context(), q.owner); err != nil {
				httpx.WriteError(w, r, err)
				return
			}
		}
		oauthStage := false
		if enabled {
			if oauthStage, err = g.wantsOAuthStage(r, q); err != nil {
				httpx.WriteError(w, r, err)
				return
			}
		}
		switch {
		case !enabled || g.trustedGuarded(r, q):
			g.forwardAs(w, r, q, q.authBody(q.clientSession()))
		case oauthStage:
			g.oauthStage(w, r, q)
		case ep.OwnUIA:
			g.ownUIA(w, r, q)
		default:
			g.inFront(w, r, q)
		}
	}
}

func (q *guardedRequest) clientSession() string {
	if q.auth == nil {
		return ""
	}
	return q.auth.Session
}

// authBody is the rebuilt auth dict with session (nil when there is none).
func (q *guardedRequest) authBody(session string) json.RawMessage {
	if q.auth == nil || q.second != nil {
		return nil
	}
	return q.auth.Body(session)
}

// readGuarded reads the token, its owner and the body. Errors are Matrix
// errors for the client (refuseGuarded logs and audits the cross-user ones).
func (g *Gateway) readGuarded(w http.ResponseWriter, r *http.Request, ep guardedEndpoint) (*guardedRequest, error) {
	q := &guardedRequest{ep: ep}
	var err error
	if q.token, err = httpx.RequestToken(r); err != nil {
		return q, err
	}
	if query := r.URL.Query(); query.Has("user_id") || query.Has("device_id") || query.Has("org.matrix.msc3202.device_id") {
		return q, httperr.ErrIdentityAssertion
	}
	switch {
	case q.token != "":
		who, err := g.hs.WhoAmI(r.Context(), q.token)
		if err != nil {
			return q, err
		}
		g.learnServerName(string(who.UserID))
		q.owner, q.device = string(who.UserID), string(who.DeviceID)
	case !ep.NoToken:
		return q, httperr.ErrMissingToken
	}
	_, obj, err := httpx.ReadObject(w, r)
	if err != nil {
		return q, err
	}
	if q.fields, err = ep.Body.Rebuild(canonical.Object(obj)); err != nil {
		return q, err
	}
	authObj, ok, err := canonical.Object(obj).Object("auth")
	if err != nil || !ok {
		return q, err
	}
	if typ, _, _ := authObj.String("type"); flows.IsSecondFactor(typ) {
		if q.second, err = uia.ParseAuth(obj["auth"]); err != nil {
			return q, err
		}
		q.auth = &canonical.Auth{Type: typ, Session: q.second.Session}
		return q, nil
	}
	if q.auth, err = canonical.ParseAuth(authObj); err != nil {
		return q, err
	}
	return q, q.auth.BindTo(q.owner)
}

// refuseGuarded answers a request that could not be read; one that named
// another user is a warning and an audit event on the token owner's trail.
func (g *Gateway) refuseGuarded(w http.ResponseWriter, r *http.Request, q *guardedRequest, err error) {
	if errors.Is(err, canonical.ErrOtherUser) || errors.Is(err, canonical.ErrNotAUserID) ||
		errors.Is(err, canonical.ErrAmbiguousUser) {
		httpx.Logger(r).WithError(err).WithField("user_id", q.owner).Warn("guarded endpoint: auth dict names another user; refused")
		if q.owner != "" {
			g.acc.RecordRefused(r.Context(), q.owner, r.Method+" "+r.URL.Path+": the auth dict named another user")
		}
	}
	httpx.WriteError(w, r, err)
}

// forwardAs sends the rebuilt request upstream with auth and copies the answer.
func (g *Gateway) forwardAs(w http.ResponseWriter, r *http.Request, q *guardedRequest, auth json.RawMessage) {
	resp, err := g.forward(r, q, auth)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.CopyResponse(w, resp)
}

// forward sends the rebuilt request upstream: canonical path, no query, the
// checked token as the only credential.
// A password changed this way revokes the owner's remembered browsers.
func (g *Gateway) forward(r *http.Request, q *guardedRequest, auth json.RawMessage) (*homeserver.Response, error) {
	resp, err := g.hs.Do(r.Context(), r.Method, r.URL.EscapedPath(), g.hs.CheckedHeader(r, q.token), q.upstream(auth))
	if err == nil && resp.Status >= 200 && resp.Status < 300 && q.ep.ChangesPassword && q.owner != "" {
		if ferr := g.acc.ForgetBrowsers(context.WithoutCancel(r.Context()), q.owner, "password changed"); ferr != nil {
			httpx.Logger(r).WithError(ferr).Error("password changed: could not revoke the remembered browsers")
		}
	}
	return resp, err
}

// ownUIA guards an endpoint the homeserver may perform without UIA: the
// gateway's own 2FA session, bound to the operation like the others, then
// the request without any auth dict.
func (g *Gateway) ownUIA(w http.ResponseWriter, r *http.Request, q *guardedRequest) {
	ctx := r.Context()
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: q.owner}
	var s *uia.Session
	var err error
	if q.clientSession() == "" {
		data, _ := json.Marshal(hsState{Operation: q.operation()})
		g.RememberEmails(ctx, q.owner, q.token)
		s, err = g.engine.Start(ctx, req, flows.SecondFactorFlows(g.Factors(ctx, q.owner)...), "", data, 0)
	} else {
		s, err = g.loadGuarded(r, q, req, false)
	}
	if err == nil && q.second != nil {
		if err = g.engine.Attempt(ctx, s, q.second); err != nil {
			g.writeUIAError(w, r, s, err)
			return
		}
		if s.Done() {
			g.grantTrust(r, q.owner, q.token)
		}
	}
	switch {
	case err != nil:
		httpx.WriteError(w, r, err)
	case !s.Done():
		g.notYet(w, r, q, s)
	default:
		if _, err := g.engine.Finish(ctx, s); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		g.forwardAs(w, r, q, nil)
	}
}

// inFront puts the 2FA stage in front of the homeserver's own stages.
func (g *Gateway) inFront(w http.ResponseWriter, r *http.Request, q *guardedRequest) {
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: q.owner}
	var s *uia.Session
	var err error
	if q.clientSession() == "" {
		// No session yet: ask the homeserver for its challenge (the request
		// goes without auth, so it cannot perform anything that needs UIA).
		if s, err = g.learnChallenge(w, r, q, req); s == nil {
			if err != nil {
				httpx.WriteError(w, r, err)
			}
			return
		}
		if q.auth == nil || q.auth.Type == "" {
			httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
			return
		}
	} else if s, err = g.loadGuarded(r, q, req, false); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	switch {
	case q.second != nil:
		if err := g.engine.Attempt(r.Context(), s, q.second); err != nil {
			g.writeUIAError(w, r, s, err)
			return
		}
		if flows.SecondFactorDone(s) {
			g.grantTrust(r, q.owner, q.token)
		}
		httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
	case !flows.SecondFactorDone(s) && g.stageWithCode(w, r, q, s):
	case !flows.SecondFactorDone(s):
		g.notYet(w, r, q, s)
	default:
		g.forwardStage(w, r, q, s)
	}
}

// notYet answers a round before the second factor is done: a homeserver
// stage sent now is never forwarded (the challenge with M_FORBIDDEN); a bare
// session gets the challenge.
func (g *Gateway) notYet(w http.ResponseWriter, r *http.Request, q *guardedRequest, s *uia.Session) {
	if q.auth != nil && q.auth.Type != "" && q.second == nil {
		httpx.Logger(r).WithField("stage", q.auth.Type).Warn("homeserver stage sent before the second factor; not forwarded")
		re := mautrix.MForbidden.WithMessage("Complete two-factor authentication first")
		httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, &re))
		return
	}
	httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
}

// loadGuarded loads the client's session for req; it must have been started
// for the same operation (the same rebuilt body), else ErrSessionMismatch.
// An m.oauth session (one client's approval on the account page) loads
// only on the m.oauth path (oauthPath: oauthStage, which checks the client's
// device), and a 2FA session only off it: neither completes the other.
func (g *Gateway) loadGuarded(r *http.Request, q *guardedRequest, req uia.Request, oauthPath bool) (*uia.Session, error) {
	s, err := g.engine.Load(r.Context(), q.auth.Session, req)
	if err != nil {
		return nil, err
	}
	if isApproval(s) != oauthPath {
		return nil, uia.ErrSessionMismatch
	}
	var state hsState
	if err := json.Unmarshal(s.Data, &state); err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(state.Operation, q.operation()) != 1 {
		return nil, uia.ErrSessionMismatch
	}
	return s, nil
}

// isApproval reports whether s is an m.oauth session.
func isApproval(s *uia.Session) bool {
	for _, f := range s.Flows {
		if slices.Contains(f, oauth.StageOAuth) {
			return true
		}
	}
	return false
}

// learnChallenge forwards the request without auth. A 401 UIA answer starts
// the gateway's session mirroring the homeserver's; any other answer is
// written to the client as it is (nil session, nil error).
func (g *Gateway) learnChallenge(w http.ResponseWriter, r *http.Request, q *guardedRequest, req uia.Request) (*uia.Session, error) {
	resp, err := g.forward(r, q, nil)
	if err != nil {
		return nil, err
	}
	hsUIA, ok := homeserver.ParseUIA(resp.Body)
	if resp.Status != http.StatusUnauthorized || !ok {
		httpx.CopyResponse(w, resp) // no UIA needed (or an error): the homeserver's answer
		return nil, nil
	}
	g.RememberEmails(r.Context(), q.owner, q.token)
	return g.startProtected(r, req, hsUIA, q.operation())
}

// startProtected records a gateway session mirroring the homeserver's, reusing
// its session ID (or minting one when it gave none).
func (g *Gateway) startProtected(r *http.Request, req uia.Request, hsUIA *mautrix.RespUserInteractive, operation []byte) (*uia.Session, error) {
	var hsFlows [][]string
	for _, f := range hsUIA.Flows {
		var stages []string
		for _, st := range f.Stages {
			stages = append(stages, string(st))
		}
		hsFlows = append(hsFlows, stages)
	}
	state := hsState{Session: hsUIA.Session, Operation: operation}
	if len(hsUIA.Params) > 0 {
		state.Params = map[string]json.RawMessage{}
		for k, v := range hsUIA.Params {
			b, _ := json.Marshal(v)
			state.Params[string(k)] = b
		}
	}
	data, err := json.Marshal(state)
	if err != nil {
		return nil, err
	}
	factors := g.Factors(r.Context(), req.UserID)
	s, err := g.engine.Start(r.Context(), req, flows.InFront(hsFlows, factors...), hsUIA.Session, data, 0)
	if errors.Is(err, storage.ErrConflict) {
		// The homeserver handed out an ID we already hold: take it over only
		// for the very same request, else use a fresh ID of our own.
		if s, err = g.engine.Load(r.Context(), hsUIA.Session, req); err == nil && bytes.Equal(s.Data, data) {
			return s, nil
		}
		s, err = g.engine.Start(r.Context(), req, flows.InFront(hsFlows, factors...), "", data, 0)
	}
	if err != nil {
		return nil, err
	}
	// Merge the homeserver's params into ours.
	var params map[string]json.RawMessage
	json.Unmarshal(s.Params, &params)
	for k, v := range state.Params {
		if _, ours := params[k]; !ours {
			params[k] = v
		}
	}
	s.Params, _ = json.Marshal(params)
	return s, nil
}

// forwardStage sends a homeserver stage (the 2FA stage being done) upstream,
// rebuilt, with the homeserver's session ID, and merges its answer into ours.
func (g *Gateway) forwardStage(w http.ResponseWriter, r *http.Request, q *guardedRequest, s *uia.Session) {
	var state hsState
	if err := json.Unmarshal(s.Data, &state); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	resp, err := g.forward(r, q, q.authBody(state.Session))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if resp.Status >= 200 && resp.Status < 300 {
		g.engine.Finish(r.Context(), s)
		httpx.CopyResponse(w, resp)
		return
	}
	hsUIA, ok := homeserver.ParseUIA(resp.Body)
	if resp.Status != http.StatusUnauthorized || !ok {
		if q.auth.Type == "" && resp.Status == http.StatusBadRequest {
			// A bare {"session"} (the resume after a fallback page) that the
			// homeserver refuses without a stage type (Dendrite: 400): answer
			// the challenge, the 2FA stage completed.
			httpx.WriteJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
			return
		}
		httpx.CopyResponse(w, resp)
		return
	}
	// Still in UIA: our 2FA stage first, then what the homeserver says it has.
	ch := g.engine.Challenge(s, nil)
	completed := []string{s.Completed[0]}
	for _, c := range hsUIA.Completed {
		if !slices.Contains(completed, c) {
			completed = append(completed, c)
		}
	}
	ch.Completed = completed
	ch.ErrCode, ch.Error = hsUIA.ErrCode, hsUIA.Error
	httpx.WriteJSON(w, http.StatusUnauthorized, ch)
}
