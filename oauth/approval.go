package oauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

// The m.oauth UIA stage (MSC4312): a client signed in through the OAuth API
// runs no UIA of its own, so when a 2FA user's guarded operation (a
// cross-signing reset, signing devices out, a password change, deactivation,
// adding a 3PID, a login token) needs UIA the gateway answers with the
// single stage m.oauth, whose url is the account page's approval view for
// that UIA session: org.matrix.cross_signing_reset for the reset (MSC4312's
// action), org.matrix2fa.approve for every other operation (no spec action
// approves a pending UIA session). There the user reads what is asked
// (Operation.Sentence) and approves with the password (which the
// homeserver's own stage needs) and a code; the page seals the password into
// the session and marks m.oauth done; the client's retry (auth with the
// session, the same body) then goes to the homeserver with the password.

// StageOAuth is MSC4312's stage; StageOAuthUnstable its unstable name.
const (
	StageOAuth         = "m.oauth"
	StageOAuthUnstable = "org.matrix.cross_signing_reset"
)

// Account page actions of the m.oauth url: MSC4312's for the reset, the
// gateway's own for any other operation.
const (
	ActionCrossSigningReset = "org.matrix.cross_signing_reset"
	ActionApprove           = "org.matrix2fa.approve"
)

// Operation is what an m.oauth session asks the user to approve, as the
// gateway read it from the request the session is bound to; the account
// page shows it as a sentence. It never holds a secret (no new password).
type Operation struct {
	// Op is the operation's trust.Operations name.
	Op string `json:"op"`
	// Devices are the devices signed out (delete_devices, delete_device).
	Devices []string `json:"devices,omitempty"`
	// Erase is deactivate's erase.
	Erase bool `json:"erase,omitempty"`
	// KeepDevices is a password change with logout_devices false.
	KeepDevices bool `json:"keep_devices,omitempty"`
}

// Action is the account page action that approves o.
func (o Operation) Action() string {
	if o.Op == trust.CrossSigningReset {
		return ActionCrossSigningReset
	}
	return ActionApprove
}

// Sentence says in words what approving o does, after "Your app asks to".
func (o Operation) Sentence() string {
	switch o.Op {
	case trust.DeleteDevices, trust.DeleteDevice:
		quoted := make([]string, len(o.Devices))
		for i, d := range o.Devices {
			quoted[i] = "“" + visible(d) + "”" // quoted: a device ID is the requester's text
		}
		switch len(o.Devices) {
		case 0:
			return "sign out no device (an empty list)"
		case 1:
			return "sign out the device " + quoted[0]
		}
		return fmt.Sprintf("sign out %d devices: %s", len(quoted), strings.Join(quoted, ", "))
	case trust.ChangePassword:
		if o.KeepDevices {
			return "change your password (your other devices stay signed in)"
		}
		return "change your password and sign out your other devices"
	case trust.Deactivate:
		if o.Erase {
			return "deactivate your account and erase your messages, for good"
		}
		return "deactivate your account, for good"
	case trust.Add3PID:
		return "add an email address or phone number to your account"
	case trust.CrossSigningReset:
		return "reset your cross-signing keys (your digital identity for encrypted messages)"
	case trust.LoginToken:
		return "sign in another device with a one-time login token (for example by showing a QR code)"
	}
	return "perform an operation the gateway cannot name; do not approve it"
}

// maxShown is the most of one device ID a sentence shows.
const maxShown = 64

// visible is the requester's text s as a sentence may show it between
// quotes: printable ASCII as it is; anything else — control and format
// characters (a right-to-left override, an isolate, a line break), quotes
// of the sentence's kind, any non-ASCII character — as \u{XXXX}, so that the
// text cannot change how the sentence reads. Past maxShown characters it is
// cut, saying how long it is.
func visible(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n++; n > maxShown {
			fmt.Fprintf(&b, "… (%d characters)", utf8.RuneCountInString(s))
			break
		}
		if r >= ' ' && r <= '~' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\u{%04X}`, r)
		}
	}
	return b.String()
}

// ApprovalURL is the account page view where the user approves operation
// op of UIA session sid.
func (s *Server) ApprovalURL(sid string, op Operation) string {
	return s.cfg.AccountURI + "?" + url.Values{"action": {op.Action()}, "session": {sid}}.Encode()
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
