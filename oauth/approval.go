package oauth

import (
	"bytes"
	"context"
	"errors"
	"net/url"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The m.oauth UIA stage (MSC4312): a client signed in through the OAuth API
// runs no UIA of its own, so when the homeserver asks for UIA to replace a
// 2FA user's cross-signing keys the gateway answers with the single stage
// m.oauth, whose url is the account page's org.matrix.cross_signing_reset
// action for that UIA session. There the user approves with the password
// (which the homeserver's own stage needs) and a code; the page seals the
// password into the session and marks m.oauth done; the client's retry
// (auth with the session) then goes to the homeserver with the password.

// StageOAuth is MSC4312's stage; StageOAuthUnstable its unstable name.
const (
	StageOAuth         = "m.oauth"
	StageOAuthUnstable = "org.matrix.cross_signing_reset"
)

// ApprovalURL is the account page view where the user approves the
// cross-signing reset of UIA session sid.
func (s *Server) ApprovalURL(sid string) string {
	return s.cfg.AccountURI + "?" + url.Values{"action": {"org.matrix.cross_signing_reset"}, "session": {sid}}.Encode()
}

// IsGrantToken reports whether accessToken was handed out by this server
// (the client speaks the OAuth API, so it gets m.oauth, not UIA).
func (s *Server) IsGrantToken(ctx context.Context, accessToken string) (bool, error) {
	if !s.cfg.Enabled || accessToken == "" {
		return false, nil
	}
	_, err := s.store.OAuthGrantByAccess(ctx, hash(accessToken))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func approvalOwner(sid string) string { return "oauth-approval:" + sid }

// SealApproval seals the password approving UIA session sid.
func (s *Server) SealApproval(sid, password string) ([]byte, error) {
	sealed, err := s.box.Seal(approvalOwner(sid), []byte(password))
	if err != nil {
		return nil, err
	}
	return append(append([]byte(s.box.KeyID()), 0), sealed...), nil
}

// OpenApproval opens what SealApproval sealed for sid.
func (s *Server) OpenApproval(sid string, sealed []byte) (string, error) {
	keyID, data, ok := bytes.Cut(sealed, []byte{0})
	if !ok {
		return "", errors.New("oauth: malformed approval")
	}
	plain, err := s.box.Open(approvalOwner(sid), string(keyID), data)
	return string(plain), err
}
