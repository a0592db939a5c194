package flows

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Stage types.
const (
	StageTOTP     = "m.login.2fa.totp"
	StageRecovery = "m.login.2fa.recovery"
	StageEmail    = "m.login.2fa.email"
	StagePassword = string(mautrix.AuthTypePassword)
	StageToken    = string(mautrix.AuthTypeToken)
)

// IsSecondFactor reports whether t is one of our 2FA stage types (which are
// never forwarded to a homeserver).
func IsSecondFactor(t string) bool { return t == StageTOTP || t == StageRecovery || t == StageEmail }

// SecondFactorDone reports whether a 2FA stage is among s's completed stages.
func SecondFactorDone(s *uia.Session) bool { return slices.ContainsFunc(s.Completed, IsSecondFactor) }

// Verifier is what the 2FA stages need from the account domain.
type Verifier interface {
	VerifyTOTP(ctx context.Context, userID, code string) error
	VerifyRecovery(ctx context.Context, userID, code string) error
	Params() account.Params
}

// PasswordChecker checks a password with the homeserver, with no lasting effect.
type PasswordChecker interface {
	CheckPassword(ctx context.Context, userID id.UserID, password string) (bool, error)
}

// TOTPStage is m.login.2fa.totp: a current, unused RFC 6238 code.
type TOTPStage struct{ V Verifier }

// Type implements uia.Stage.
func (TOTPStage) Type() string { return StageTOTP }

// Params implements uia.Stage: digits and period for the client's input field.
func (s TOTPStage) Params() any {
	p := s.V.Params()
	return map[string]int{"digits": p.Digits, "period": p.Period}
}

// Authenticate implements uia.Stage.
func (s TOTPStage) Authenticate(ctx context.Context, sess *uia.Session, a *uia.Auth) error {
	return s.V.VerifyTOTP(ctx, sess.UserID, a.Code)
}

// RecoveryStage is m.login.2fa.recovery: one unused recovery code, consumed.
type RecoveryStage struct{ V Verifier }

// Type implements uia.Stage.
func (RecoveryStage) Type() string { return StageRecovery }

// Params implements uia.Stage.
func (RecoveryStage) Params() any { return nil }

// Authenticate implements uia.Stage.
func (s RecoveryStage) Authenticate(ctx context.Context, sess *uia.Session, a *uia.Auth) error {
	return s.V.VerifyRecovery(ctx, sess.UserID, a.Code)
}

// VerifyEither checks code as a TOTP code when it is all digits and as a
// recovery code otherwise. The TOTP fallback page uses it: clients stay on the
// first flow they pick, so that page must take a recovery code too.
func VerifyEither(ctx context.Context, v Verifier, userID, code string) error {
	c := strings.TrimSpace(code)
	if c != "" && strings.Trim(c, "0123456789 ") == "" {
		return v.VerifyTOTP(ctx, userID, strings.ReplaceAll(c, " ", ""))
	}
	return v.VerifyRecovery(ctx, userID, c)
}

// Password stage errors.
var (
	ErrMissingPassword = errors.New("flows: no password given")
	ErrWrongPassword   = errors.New("flows: wrong password")
)

// PasswordStage is m.login.password, checked by the homeserver, for the
// session's own user only.
type PasswordStage struct{ HS PasswordChecker }

// Type implements uia.Stage.
func (PasswordStage) Type() string { return StagePassword }

// Params implements uia.Stage.
func (PasswordStage) Params() any { return nil }

// Authenticate implements uia.Stage. The dict is read as the homeserver
// endpoints' dicts are (canonical): a dict naming another user, or naming
// its user in two ways that disagree, is refused; the password is checked for
// the session's user only.
func (s PasswordStage) Authenticate(ctx context.Context, sess *uia.Session, a *uia.Auth) error {
	var o canonical.Object
	if err := json.Unmarshal(a.Raw, &o); err != nil || o == nil {
		return uia.ErrBadAuth
	}
	o["type"] = json.RawMessage(`"` + StagePassword + `"`) // the engine dispatched it as one
	ca, err := canonical.ParseAuth(o)
	if errors.Is(err, canonical.ErrBadField) {
		return uia.ErrBadAuth
	}
	if err == nil {
		err = ca.BindTo(sess.UserID)
	}
	if err != nil {
		return err
	}
	if ca.Password == nil || *ca.Password == "" {
		return ErrMissingPassword
	}
	ok, err := s.HS.CheckPassword(ctx, id.UserID(sess.UserID), *ca.Password)
	if err != nil {
		return err
	}
	if !ok {
		return ErrWrongPassword
	}
	return nil
}

// EmailVerifier is what the e-mail stage needs from the account domain.
type EmailVerifier interface {
	VerifyEmail(ctx context.Context, userID, code string) error
}

// CodeSender makes a new e-mail code for userID and mails it; it returns the
// address, masked for showing (a***@example.org).
type CodeSender interface {
	SendCode(ctx context.Context, userID string) (maskedTo string, err error)
}

// CodeSentError is the stage's answer to a request without a code: a code
// went to To (masked). It is answered inside UIA, like a failed stage.
type CodeSentError struct{ To string }

func (e *CodeSentError) Error() string { return "flows: e-mail code sent to " + e.To }

// EmailStage is m.login.2fa.email: an auth dict without a code asks for one
// (mailed to the user's verified address); with one, it checks it.
type EmailStage struct {
	V    EmailVerifier
	Send CodeSender
}

// Type implements uia.Stage.
func (EmailStage) Type() string { return StageEmail }

// Params implements uia.Stage: the code's length.
func (EmailStage) Params() any { return map[string]int{"length": account.EmailCodeDigits} }

// Authenticate implements uia.Stage.
func (s EmailStage) Authenticate(ctx context.Context, sess *uia.Session, a *uia.Auth) error {
	if strings.TrimSpace(a.Code) == "" {
		to, err := s.Send.SendCode(ctx, sess.UserID)
		if err != nil {
			return err
		}
		return &CodeSentError{To: to}
	}
	return s.V.VerifyEmail(ctx, sess.UserID, a.Code)
}
