package flows

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Request-body errors, raised by the HTTP layer and mapped here.
var (
	ErrNotJSON  = errors.New("flows: body is not JSON")
	ErrBadJSON  = errors.New("flows: body has the wrong shape")
	ErrTooLarge = errors.New("flows: body too large")
	// ErrAmbiguousToken: the access token is given more than once (header
	// and query, or twice in either).
	ErrAmbiguousToken = errors.New("flows: access token given more than once")
	// ErrIdentityAssertion: an application service's user_id or device_id
	// query parameter on an endpoint the gateway guards.
	ErrIdentityAssertion = errors.New("flows: identity assertion on a guarded endpoint")
)

// MMissingParam is the Matrix error mautrix does not predefine.
var MMissingParam = mautrix.RespError{ErrCode: "M_MISSING_PARAM", StatusCode: http.StatusBadRequest}

// errorTable is the one place domain errors become Matrix errors. Texts say
// nothing that helps guessing: wrong and replayed codes read the same.
var errorTable = []struct {
	err  error
	resp mautrix.RespError
}{
	{account.ErrMissingCode, MMissingParam.WithMessage("No code was given")},
	{account.ErrInvalidCode, mautrix.MForbidden.WithMessage("Invalid code")},
	{account.ErrNoPending, mautrix.MInvalidParam.WithMessage("No pending two-factor enrolment, or it has expired; start again")},
	{account.ErrNotEnabled, mautrix.MInvalidParam.WithMessage("Two-factor authentication is not enabled")},
	{ErrMissingPassword, MMissingParam.WithMessage("No password was given")},
	{ErrWrongPassword, mautrix.MForbidden.WithMessage("Invalid password")},
	{uia.ErrUnknownSession, mautrix.MInvalidParam.WithMessage("Unknown or expired UIA session")},
	{uia.ErrSessionMismatch, mautrix.MForbidden.WithMessage("Requested operation has changed during the UI authentication session")},
	{uia.ErrStageNotAllowed, mautrix.MForbidden.WithMessage("That authentication stage is not allowed now; complete the stages of one flow in order")},
	{uia.ErrUnknownStage, mautrix.MInvalidParam.WithMessage("Unknown auth type")},
	{uia.ErrBadAuth, mautrix.MBadJSON.WithMessage("The auth dict is malformed")},
	{canonical.ErrOtherUser, mautrix.MForbidden.WithMessage("The auth dict names another user: you can only authenticate as yourself")},
	{canonical.ErrNotAUserID, mautrix.MForbidden.WithMessage("Identify yourself with your Matrix user ID here")},
	{canonical.ErrAmbiguousUser, mautrix.MInvalidParam.WithMessage("The request names its user in more than one way (identifier and user/medium/address): give one identifier")},
	{canonical.ErrNoIdentifierType, MMissingParam.WithMessage("The identifier has no type")},
	{canonical.ErrUnknownIdentifier, mautrix.MUnknown.WithMessage("Unknown identifier type").WithStatus(http.StatusBadRequest)},
	{canonical.ErrUnknownLoginType, mautrix.MUnknown.WithMessage("Unknown login type").WithStatus(http.StatusBadRequest)},
	{canonical.ErrBadField, mautrix.MBadJSON.WithMessage("A field is missing or has the wrong type")},
	{ErrAmbiguousToken, mautrix.MMissingToken.WithMessage("Give the access token once: in the Authorization header or in access_token, not both")},
	{ErrIdentityAssertion, mautrix.MForbidden.WithMessage("Acting as another user (user_id, device_id) is not possible on this endpoint")},
	{ErrNotJSON, mautrix.MNotJSON.WithMessage("Content not JSON")},
	{ErrBadJSON, mautrix.MBadJSON.WithMessage("The request body has the wrong shape")},
	{ErrTooLarge, mautrix.MTooLarge.WithMessage("The request body is too large")},
}

// MatrixError maps err to the Matrix error a client sees. A Matrix error from
// the homeserver passes unchanged; anything unknown is a bare 500 M_UNKNOWN
// (the caller logs the detail).
func MatrixError(err error) mautrix.RespError {
	if le, ok := account.IsLocked(err); ok {
		ms := le.RetryAfter.Milliseconds()
		secs := int64((le.RetryAfter + time.Second - 1) / time.Second)
		return mautrix.MLimitExceeded.WithMessage("Too many failed attempts; try again later").
			WithExtraField("retry_after_ms", ms).WithExtraHeader("Retry-After", strconv.FormatInt(secs, 10))
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return row.resp
		}
	}
	var re mautrix.RespError
	if errors.As(err, &re) && re.ErrCode != "" {
		if re.StatusCode == 0 {
			re.StatusCode = http.StatusBadRequest
		}
		return re
	}
	var rp *mautrix.RespError
	if errors.As(err, &rp) && rp != nil && rp.ErrCode != "" {
		return MatrixError(*rp)
	}
	return mautrix.MUnknown.WithMessage("Internal server error").WithStatus(http.StatusInternalServerError)
}

// IsStageFailure reports whether err is a failed authentication attempt that
// the spec answers inside UIA with the 401 challenge (errcode merged in)
// rather than with a plain error.
func IsStageFailure(err error) bool {
	return errors.Is(err, account.ErrInvalidCode) || errors.Is(err, ErrWrongPassword) ||
		errors.Is(err, uia.ErrStageNotAllowed) || errors.Is(err, account.ErrNotEnabled)
}
