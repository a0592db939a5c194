package flows

import (
	"errors"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// IsStageFailure reports whether err is a failed authentication attempt that
// the spec answers inside UIA with the 401 challenge (errcode merged in)
// rather than with a plain error.
func IsStageFailure(err error) bool {
	var sent *CodeSentError
	return errors.Is(err, account.ErrInvalidCode) || errors.Is(err, ErrWrongPassword) ||
		errors.Is(err, uia.ErrStageNotAllowed) || errors.Is(err, account.ErrNotEnabled) ||
		errors.Is(err, account.ErrTooSoon) || errors.Is(err, ErrNoEmail) || errors.Is(err, ErrNotSent) || errors.As(err, &sent)
}

// ErrNotSent: the e-mail with the code could not be sent.
var ErrNotSent = errors.New("flows: the e-mail code could not be sent")

// ErrNoEmail: the e-mail stage for a user without a verified address.
var ErrNoEmail = errors.New("flows: no verified e-mail address")
