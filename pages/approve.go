package pages

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/trust"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// The m.oauth stage's approval (MSC4312; oauth/approval.go): a client with
// an OAuth token sends the user here with the UIA session of the guarded
// operation it asked for. The page says what that operation is (the
// sentence built from what the gateway read of the request), and approves
// it after the password and the code.

const msgApprovalUnknown = "This request is unknown, has expired or is not yours. Start it in your app again."

// approvalSession loads UIA session sid waiting for the m.oauth stage, if
// it is userID's, and the operation it is bound to.
func (p *Pages) approvalSession(ctx context.Context, sid, userID string) (*uia.Session, oauth.Operation, bool) {
	var state struct {
		Approve oauth.Operation `json:"approve"`
	}
	if p.oauth == nil || sid == "" {
		return nil, state.Approve, false
	}
	u, err := p.engine.LoadKind(ctx, sid, storage.KindUIA)
	if err != nil || u.UserID != userID || !slices.Contains(u.NextStages(), oauth.StageOAuth) ||
		json.Unmarshal(u.Data, &state) != nil {
		return nil, state.Approve, false
	}
	if state.Approve.Op == "" && strings.HasSuffix(u.Path, "/keys/device_signing/upload") {
		state.Approve.Op = trust.CrossSigningReset // a session from before the field
	}
	if state.Approve.Op == "" {
		return nil, state.Approve, false
	}
	return u, state.Approve, true
}

// approvalView is the view that approves op in session sid: the reset's own
// view, or the generic one with the sentence.
func approvalView(sid string, op oauth.Operation, twoFA bool) selfView {
	v := selfView{View: "approve", XSession: sid, TwoFA: twoFA, Back: true, Approve: op.Sentence()}
	if op.Op == trust.CrossSigningReset {
		v.View = "xsign"
	}
	return v
}

// renderApproval shows the approval of session sid, or a readable refusal.
func (p *Pages) renderApproval(w http.ResponseWriter, r *http.Request, s *selfSession, sid string) {
	_, op, ok := p.approvalSession(r.Context(), sid, s.userID)
	if !ok {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", msgApprovalUnknown)
		return
	}
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	p.renderSelf(w, r, http.StatusOK, s, approvalView(sid, op, enabled), "")
}

// selfApprove approves the operation of a UIA session waiting for m.oauth
// after the password and the code: the password, which the homeserver's own
// stage needs, is sealed into the UIA session, and the stage is marked done;
// the client's retry (the same request) completes the operation.
func (p *Pages) selfApprove(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	sid := r.PostForm.Get("session")
	u, op, ok := p.approvalSession(ctx, sid, s.userID)
	if !ok {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", msgApprovalUnknown)
		return
	}
	enabled, err := p.acc.Enabled(ctx, s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	ok = p.stepUp(w, r, s, approvalView(sid, op, enabled), func(ctx context.Context, _ string) error {
		return p.approve(ctx, u, r.PostForm.Get("password"))
	})
	if !ok {
		return
	}
	httpx.Logger(r).WithField("operation", op.Op).Info("account page: operation approved (m.oauth)")
	notice := "Approved: " + op.Sentence() + ". Go back to your app to finish it."
	if op.Op == trust.CrossSigningReset {
		notice = "Reset allowed. Go back to your app to finish it."
	}
	p.renderSelf(w, r, http.StatusOK, s, selfView{View: "done", Back: true, Notice: notice}, "")
}

// approve seals password into session u and marks m.oauth done.
func (p *Pages) approve(ctx context.Context, u *uia.Session, password string) error {
	sealed, err := p.oauth.SealApproval(u.ID, password)
	if err != nil {
		return err
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(u.Data, &data); err != nil {
		return err
	}
	data["approval"], _ = json.Marshal(sealed)
	raw, _ := json.Marshal(data)
	if err := p.store.SetSessionData(ctx, u.ID, raw); err != nil {
		return err
	}
	return p.engine.MarkCompleted(ctx, u, oauth.StageOAuth)
}
