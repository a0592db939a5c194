package httperr

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Request errors, raised by the HTTP layer.
var (
	ErrNotJSON  = errors.New("httperr: body is not JSON")
	ErrBadJSON  = errors.New("httperr: body has the wrong shape")
	ErrTooLarge = errors.New("httperr: body too large")
	// ErrAmbiguousToken: the access token is given more than once (header
	// and query, or twice in either).
	ErrAmbiguousToken = errors.New("httperr: access token given more than once")
	// ErrIdentityAssertion: an application service's user_id or device_id
	// query parameter on an endpoint the gateway guards.
	ErrIdentityAssertion = errors.New("httperr: identity assertion on a guarded endpoint")
	// ErrHeldLoginHere: a held /login opened on a fallback page that may not
	// complete it.
	ErrHeldLoginHere = errors.New("httperr: held login on the fallback page")
	// ErrNotCanonical: a user ID in another letter case than the enrolled
	// user's (the provider API checks codes only for the exact ID).
	ErrNotCanonical = errors.New("httperr: user ID not in its canonical case")
	// ErrUnrecognized: a guarded path under a prefix or in a spelling no
	// homeserver serves.
	ErrUnrecognized = errors.New("httperr: unrecognized request")
	// ErrAdminAPI: the homeserver's admin API, not served through the gateway.
	ErrAdminAPI = errors.New("httperr: homeserver admin API")
	// ErrMissingToken: an endpoint that needs an access token got none.
	ErrMissingToken = errors.New("httperr: missing access token")
	// ErrInvalidLoginToken: a login token of the gateway's, expired.
	ErrInvalidLoginToken = errors.New("httperr: invalid login token")
	// ErrUpstreamAnswer: the homeserver answered in a way the gateway cannot
	// check (a 200 login without user_id or access_token): refused.
	ErrUpstreamAnswer = errors.New("httperr: unexpected answer from the homeserver")
	// ErrAdminOff: the admin API or page, or the provider API, is not enabled.
	ErrAdminOff = errors.New("httperr: not enabled")
	// ErrNotAdmin: the caller is no admin of the 2FA gateway.
	ErrNotAdmin = errors.New("httperr: not an admin")
	// ErrOutOfScope: a scoped admin named a user outside their scope (or
	// asked for what only an admin of every user may see).
	ErrOutOfScope = errors.New("httperr: user outside the admin's scope")
	// ErrBadParam: a path or query parameter is malformed.
	ErrBadParam = errors.New("httperr: malformed parameter")
	// ErrPolicyRequired: disabling 2FA while the enforcement policy
	// requires it of the user.
	ErrPolicyRequired = errors.New("httperr: 2FA required by the enforcement policy")
	// ErrBadSecret: the provider API's shared secret is missing or wrong.
	ErrBadSecret = errors.New("httperr: missing or wrong shared secret")
	// ErrRegistrationClosed: the homeserver does not let the OAuth page
	// register users (registration off, or only flows the page cannot
	// complete).
	ErrRegistrationClosed = errors.New("httperr: registration not possible here")
	// ErrPasswordMismatch: the two new passwords of a form differ.
	ErrPasswordMismatch = errors.New("httperr: the passwords differ")
	// ErrPasswordTooLong: a new password longer than homeservers take (512
	// bytes: Synapse, Dendrite).
	ErrPasswordTooLong = errors.New("httperr: password too long")
	// ErrMissingRegistrationToken and ErrBadRegistrationToken: the
	// homeserver asks for a registration token; none was given, or it
	// refused the one given.
	ErrMissingRegistrationToken = errors.New("httperr: no registration token")
	ErrBadRegistrationToken     = errors.New("httperr: registration token refused")
)

// MMissingParam and MWeakPassword are Matrix errors mautrix does not predefine.
var (
	MMissingParam = mautrix.RespError{ErrCode: "M_MISSING_PARAM", StatusCode: http.StatusBadRequest}
	MWeakPassword = mautrix.RespError{ErrCode: "M_WEAK_PASSWORD", StatusCode: http.StatusBadRequest}
)

// row is one entry of the table: the API's Matrix error (none: the
// homeserver's own passes unchanged) and the pages' text.
// Texts say nothing that helps guessing: wrong and replayed codes read the same.
type row struct {
	err  error
	resp mautrix.RespError
	page string
}

var table = []row{
	{account.ErrMissingCode, MMissingParam.WithMessage("No code was given"), "Enter a code."},
	{account.ErrInvalidCode, mautrix.MForbidden.WithMessage("Invalid code"),
		"Invalid code. That code is not valid: check your authenticator app (or recovery code) and try again."},
	{account.ErrNoPending, mautrix.MInvalidParam.WithMessage("No pending two-factor enrolment, or it has expired; start again"),
		"There is no enrolment waiting for confirmation, or it has expired. Please start again."},
	{account.ErrNotEnabled, mautrix.MInvalidParam.WithMessage("Two-factor authentication is not enabled"),
		"Two-factor authentication is not enabled."},
	{account.ErrTooSoon, mautrix.MLimitExceeded.WithMessage("A code was sent less than a minute ago: check your mail, or wait a minute for a new one"),
		"A code was sent less than a minute ago: check your mail, or wait a minute for a new one."},
	{flows.ErrNoEmail, mautrix.MForbidden.WithMessage("This account has no verified e-mail address: use your authenticator app or a recovery code"),
		"This account has no verified e-mail address: use your authenticator app or a recovery code."},
	{flows.ErrNotSent, mautrix.MUnknown.WithMessage("The code could not be sent by e-mail just now: try again, or use your authenticator app or a recovery code").WithStatus(http.StatusServiceUnavailable),
		"The code could not be sent by e-mail just now: try again, or use your authenticator app or a recovery code."},
	{flows.ErrMissingPassword, MMissingParam.WithMessage("No password was given"), "Enter your password."},
	{flows.ErrWrongPassword, mautrix.MForbidden.WithMessage("Invalid password"), "Wrong password."},
	{ErrHeldLoginHere, mautrix.MForbidden.WithMessage("A sign-in is confirmed in the app where the password was typed"),
		"A sign-in is confirmed in the app where the password was typed, not on this page: enter your code there. " +
			"If you did not just sign in yourself, someone else knows your password. Do not enter a code anywhere; change your password."},
	{uia.ErrUnknownSession, mautrix.MInvalidParam.WithMessage("Unknown or expired UIA session"),
		"This link has expired or has already been used. Go back to your app and start again: it will open a new one."},
	{uia.ErrSessionMismatch, mautrix.MForbidden.WithMessage("Requested operation has changed during the UI authentication session"),
		"This confirmation belongs to another operation. Start again in your app."},
	{uia.ErrStageNotAllowed, mautrix.MForbidden.WithMessage("That authentication stage is not allowed now; complete the stages of one flow in order"),
		"Complete the previous step in your app first, then try again."},
	{uia.ErrUnknownStage, mautrix.MInvalidParam.WithMessage("Unknown auth type"), ""},
	{uia.ErrBadAuth, mautrix.MBadJSON.WithMessage("The auth dict is malformed"), ""},
	{canonical.ErrOtherUser, mautrix.MForbidden.WithMessage("The auth dict names another user: you can only authenticate as yourself"), ""},
	{canonical.ErrNotAUserID, mautrix.MForbidden.WithMessage("Identify yourself with your Matrix user ID here"), ""},
	{canonical.ErrAmbiguousUser, mautrix.MInvalidParam.WithMessage("The request names its user in more than one way (identifier and user/medium/address): give one identifier"), ""},
	{canonical.ErrNoIdentifierType, MMissingParam.WithMessage("The identifier has no type"), ""},
	{canonical.ErrUnknownIdentifier, mautrix.MUnknown.WithMessage("Unknown identifier type").WithStatus(http.StatusBadRequest), ""},
	{canonical.ErrUnknownLoginType, mautrix.MUnknown.WithMessage("Unknown login type").WithStatus(http.StatusBadRequest), ""},
	{canonical.ErrBadField, mautrix.MBadJSON.WithMessage("A field is missing or has the wrong type"), ""},
	{canonical.ErrMissingField, MMissingParam.WithMessage("A required field is missing or empty (devices: name at least one device)"), ""},
	{ErrAmbiguousToken, mautrix.MMissingToken.WithMessage("Give the access token once: in the Authorization header or in access_token, not both"), ""},
	{ErrIdentityAssertion, mautrix.MForbidden.WithMessage("Acting as another user (user_id, device_id) is not possible on this endpoint"), ""},
	{ErrNotCanonical, mautrix.MForbidden.WithMessage("Use the user ID exactly as the homeserver returned it"), ""},
	{ErrUnrecognized, mautrix.MUnrecognized.WithMessage("Unrecognized request"), ""},
	{ErrAdminAPI, mautrix.MForbidden.WithMessage("The homeserver's admin API is not served through the 2FA gateway"), ""},
	{ErrMissingToken, mautrix.MMissingToken.WithMessage("Missing access token"), ""},
	{ErrInvalidLoginToken, mautrix.MForbidden.WithMessage("Invalid login token"), ""},
	{ErrUpstreamAnswer, mautrix.MUnknown.WithMessage("Unexpected answer from the homeserver").WithStatus(http.StatusBadGateway),
		"The homeserver gave an unexpected answer. Please try again in a moment."},
	{ErrAdminOff, mautrix.MUnrecognized.WithMessage("Not enabled on this gateway").WithStatus(http.StatusNotFound), "This page is not enabled."},
	{ErrNotAdmin, mautrix.MForbidden.WithMessage("You are not an administrator of the 2FA gateway"),
		"This account is not an administrator of the two-factor gateway."},
	{ErrOutOfScope, mautrix.MForbidden.WithMessage("That user is outside the users you administer"),
		"That user is outside the users you administer."},
	{ErrBadParam, mautrix.MInvalidParam.WithMessage("A parameter is malformed"), "Enter a full user ID like @alice:example.org."},
	{ErrPolicyRequired, mautrix.MForbidden.WithMessage("This server requires two-factor authentication for your account: it cannot be turned off"),
		"This server requires two-factor authentication for your account: it cannot be turned off."},
	{ErrBadSecret, mautrix.MUnknownToken.WithMessage("Missing or wrong shared secret").WithStatus(http.StatusUnauthorized), ""},
	{ErrRegistrationClosed, mautrix.MForbidden.WithMessage("Registration is not possible here"),
		"This server does not allow creating an account here. Sign in with an existing account instead."},
	{ErrPasswordMismatch, mautrix.MInvalidParam.WithMessage("The passwords differ"), "The two passwords do not match. Type the same password twice."},
	{ErrPasswordTooLong, mautrix.MInvalidParam.WithMessage("The password is too long"), "That password is too long: use at most 512 characters."},
	{ErrMissingRegistrationToken, MMissingParam.WithMessage("No registration token was given"),
		"This server needs a registration token to create an account. Enter the one you were given."},
	{ErrBadRegistrationToken, mautrix.MForbidden.WithMessage("Invalid registration token"),
		"That registration token is not valid. Check it, or ask whoever gave it to you for a new one."},
	// The homeserver's refusals of a registration (the OAuth page's prompt=create).
	// No Matrix error of their own: the homeserver's passes unchanged.
	{mautrix.MUserInUse, mautrix.RespError{}, "That username is taken. Choose another one."},
	{mautrix.MInvalidUsername, mautrix.RespError{}, "That username cannot be used. Use only lowercase letters, digits and . _ = - / +"},
	{mautrix.MExclusive, mautrix.RespError{}, "That username is reserved on this server. Choose another one."},
	{MWeakPassword, mautrix.RespError{}, "That password is too weak. Choose a longer one."},
	{homeserver.ErrUnreachable, mautrix.MUnknown.WithMessage("The homeserver cannot be reached; try again shortly").WithStatus(http.StatusBadGateway),
		"The homeserver cannot be reached. Please try again in a moment."},
	{storage.ErrUnavailable, mautrix.MUnknown.WithMessage("The 2FA database is unavailable; try again shortly").WithStatus(http.StatusServiceUnavailable),
		"The service is briefly unavailable. Please try again in a moment."},
	{ErrNotJSON, mautrix.MNotJSON.WithMessage("Content not JSON"), "The form could not be read. Please try again."},
	{ErrBadJSON, mautrix.MBadJSON.WithMessage("The request body has the wrong shape"), "The form could not be read. Please try again."},
	{ErrTooLarge, mautrix.MTooLarge.WithMessage("The request body is too large"), "The form is too large."},
}

// Matrix maps err to the Matrix error an API client sees. A lockout is 429
// M_LIMIT_EXCEEDED with retry_after_ms and Retry-After; a Matrix error from
// the homeserver passes unchanged; anything unknown is a bare 500 M_UNKNOWN
// (the caller logs the detail).
func Matrix(err error) mautrix.RespError {
	err = unexpected(err)
	var sent *flows.CodeSentError
	if errors.As(err, &sent) {
		return mautrix.RespError{ErrCode: "M_UNAUTHORIZED", Err: "A code was sent to " + sent.To + ": send it as code",
			StatusCode: http.StatusUnauthorized}
	}
	if wait, ok := Wait(err); ok {
		return mautrix.MLimitExceeded.WithMessage("Too many failed attempts; try again in %s", FormatWait(wait)).
			WithExtraField("retry_after_ms", wait.Milliseconds()).WithExtraHeader("Retry-After", RetryAfter(wait))
	}
	for _, r := range table {
		if errors.Is(err, r.err) && r.resp.ErrCode != "" {
			return r.resp
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
		return Matrix(*rp)
	}
	return mautrix.MUnknown.WithMessage("Internal server error").WithStatus(http.StatusInternalServerError)
}

// unexpected folds the homeserver's unexpected answers to the gateway's own
// calls (a 5xx, or an answer without a Matrix error) into ErrUpstreamAnswer:
// 502, not the 500 of the gateway's own faults.
func unexpected(err error) error {
	var odd *homeserver.UnexpectedStatusError
	if errors.As(err, &odd) && !errors.Is(err, ErrUpstreamAnswer) {
		return fmt.Errorf("%w: %w", ErrUpstreamAnswer, err)
	}
	return err
}

// Page maps err to the status and sentence a page shows. A lockout or the
// homeserver's rate limit says how long to wait; anything without a sentence
// of its own is "Something went wrong" with the Matrix status (5xx for the
// unknown).
func Page(err error) (status int, text string) {
	err = unexpected(err)
	var sent *flows.CodeSentError
	if errors.As(err, &sent) {
		return http.StatusOK, "A code was sent to " + sent.To + ". Enter it below; it is valid for 10 minutes."
	}
	if wait, ok := Wait(err); ok {
		return http.StatusTooManyRequests, "Too many failed attempts. Try again in " + FormatWait(wait) + "."
	}
	if wait, ok := HomeserverLimited(err); ok {
		return http.StatusTooManyRequests, "Too many attempts. Please wait " + FormatWait(wait) + " and try again."
	}
	re := Matrix(err)
	for _, r := range table {
		if errors.Is(err, r.err) && r.page != "" {
			return re.StatusCode, r.page
		}
	}
	if re.StatusCode >= 500 {
		return re.StatusCode, "Something went wrong. Please try again later."
	}
	return re.StatusCode, "That did not work. Please try again."
}

// Wait reports the wait of a 2FA lockout.
func Wait(err error) (time.Duration, bool) {
	if le, ok := account.IsLocked(err); ok {
		return le.RetryAfter, true
	}
	return 0, false
}

// HomeserverRefused reports whether err is the homeserver's own refusal of
// a request (a 4xx other than its rate limit: a wrong password, an unknown
// token), and its errcode.
func HomeserverRefused(err error) (errcode string, ok bool) {
	var re mautrix.RespError
	if !errors.As(err, &re) || re.StatusCode < 400 || re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests {
		return "", false
	}
	return re.ErrCode, true
}

// HomeserverLimited reports whether err is the homeserver's 429, and its
// retry_after_ms (a second when it gave none).
func HomeserverLimited(err error) (time.Duration, bool) {
	var re mautrix.RespError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	if ms, ok := re.ExtraData["retry_after_ms"].(float64); ok && ms > 0 {
		return time.Duration(ms) * time.Millisecond, true
	}
	return time.Second, true
}

// RetryAfter is d in whole seconds, rounded up, at least 1 (the Retry-After
// header's value).
func RetryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}

// FormatWait says d in minutes and seconds, rounded up to a second.
func FormatWait(d time.Duration) string {
	secs, _ := strconv.ParseInt(RetryAfter(d), 10, 64)
	m, s := secs/60, secs%60
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case m == 0:
		return plural(s, "second")
	case s == 0:
		return plural(m, "minute")
	default:
		return plural(m, "minute") + " " + plural(s, "second")
	}
}
