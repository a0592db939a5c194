package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
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
}

var errSecondFactorFirst = errors.New("gateway: homeserver stage before the second factor")

// handleProtected guards a homeserver UIA endpoint. For a user with 2FA the
// 2FA stages go in front of every homeserver flow; the homeserver sees a
// request with auth only after the 2FA stage is complete for that session and
// that user, and never sees our stage types. Everyone else passes through.
func (g *Gateway) handleProtected(w http.ResponseWriter, r *http.Request) {
	tok := accessToken(r)
	if tok == "" {
		g.proxy.ServeHTTP(w, r) // e.g. a password reset by email: not ours
		return
	}
	who, err := g.hs.WhoAmI(r.Context(), tok)
	if err != nil {
		writeError(w, r, err)
		return
	}
	enabled, err := g.acc.Enabled(r.Context(), string(who.UserID))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !enabled {
		g.proxy.ServeHTTP(w, r)
		return
	}
	r = withLogger(r, logger(r).WithField("user_id", who.UserID))
	raw, body, err := readObject(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var a *uia.Auth
	if authRaw, ok := body["auth"]; ok && string(authRaw) != "null" {
		if a, err = uia.ParseAuth(authRaw); err != nil {
			writeError(w, r, err)
			return
		}
	}
	req := uia.Request{Method: r.Method, Path: r.URL.Path, UserID: string(who.UserID)}
	ctx := r.Context()

	var s *uia.Session
	if a == nil || a.Session == "" {
		// No session yet: ask the homeserver for its challenge (the request
		// goes without auth, so it cannot perform anything that needs UIA).
		delete(body, "auth")
		resp, err := g.forward(r, body)
		if err != nil {
			writeError(w, r, err)
			return
		}
		hsUIA, ok := homeserver.ParseUIA(resp.Body)
		if resp.Status != http.StatusUnauthorized || !ok {
			copyResponse(w, resp) // no UIA needed (or an error): the homeserver's answer
			return
		}
		if s, err = g.startProtected(r, req, hsUIA); err != nil {
			writeError(w, r, err)
			return
		}
		if a == nil || a.Type == "" {
			writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
			return
		}
	} else if s, err = g.engine.Load(ctx, a.Session, req); err != nil {
		writeError(w, r, err)
		return
	}

	secondDone := len(s.Completed) > 0 && flows.IsSecondFactor(s.Completed[0])
	switch {
	case a != nil && flows.IsSecondFactor(a.Type):
		if err := g.engine.Attempt(ctx, s, a); err != nil {
			g.writeUIAError(w, r, s, err)
			return
		}
		writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
	case !secondDone:
		// A homeserver stage (or a bare session) before the second factor is
		// never forwarded.
		if a != nil && a.Type != "" {
			logger(r).WithField("stage", a.Type).Warn("homeserver stage sent before the second factor; not forwarded")
			re := mautrix.MForbidden.WithMessage("Complete two-factor authentication first")
			writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, &re))
			return
		}
		writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
	default:
		g.forwardStage(w, r, s, raw, body)
	}
}

// startProtected records a gateway session mirroring the homeserver's, reusing
// its session ID (or minting one when it gave none).
func (g *Gateway) startProtected(r *http.Request, req uia.Request, hsUIA *mautrix.RespUserInteractive) (*uia.Session, error) {
	var hsFlows [][]string
	for _, f := range hsUIA.Flows {
		var stages []string
		for _, st := range f.Stages {
			stages = append(stages, string(st))
		}
		hsFlows = append(hsFlows, stages)
	}
	state := hsState{Session: hsUIA.Session}
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
	s, err := g.engine.Start(r.Context(), req, flows.InFront(hsFlows), hsUIA.Session, data, 0)
	if errors.Is(err, storage.ErrConflict) {
		// The homeserver handed out an ID we already hold: take it over only
		// for the very same request, else use a fresh ID of our own.
		if s, err = g.engine.Load(r.Context(), hsUIA.Session, req); err == nil {
			return s, nil
		}
		s, err = g.engine.Start(r.Context(), req, flows.InFront(hsFlows), "", data, 0)
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

// forwardStage sends a homeserver stage (the 2FA stage being done) upstream
// with the homeserver's session ID, and merges its answer into ours.
func (g *Gateway) forwardStage(w http.ResponseWriter, r *http.Request, s *uia.Session, raw []byte, body map[string]json.RawMessage) {
	var state hsState
	if err := json.Unmarshal(s.Data, &state); err != nil {
		writeError(w, r, err)
		return
	}
	var auth map[string]json.RawMessage
	if err := json.Unmarshal(body["auth"], &auth); err != nil {
		writeError(w, r, flows.ErrBadJSON)
		return
	}
	if t, _, _ := stringField(auth, "type"); flows.IsSecondFactor(t) {
		writeError(w, r, uia.ErrStageNotAllowed) // never forward our own stage types
		return
	}
	if state.Session == "" {
		delete(auth, "session")
	} else {
		auth["session"], _ = json.Marshal(state.Session)
	}
	body["auth"], _ = json.Marshal(auth)
	resp, err := g.forward(r, body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if resp.Status >= 200 && resp.Status < 300 {
		g.engine.Finish(r.Context(), s)
		copyResponse(w, resp)
		return
	}
	hsUIA, ok := homeserver.ParseUIA(resp.Body)
	if resp.Status != http.StatusUnauthorized || !ok {
		if _, typed := auth["type"]; !typed && resp.Status == http.StatusBadRequest {
			// A bare {"session"} (the resume after a fallback page) that the
			// homeserver refuses without a stage type (Dendrite: 400): answer
			// the challenge, the 2FA stage completed.
			writeJSON(w, http.StatusUnauthorized, g.engine.Challenge(s, nil))
			return
		}
		copyResponse(w, resp)
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
	writeJSON(w, http.StatusUnauthorized, ch)
}

// forward sends the request upstream with body re-encoded.
func (g *Gateway) forward(r *http.Request, body map[string]json.RawMessage) (*homeserver.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return g.hs.Do(r.Context(), r.Method, r.URL.RequestURI(), g.hs.ForwardedHeader(r), b)
}
