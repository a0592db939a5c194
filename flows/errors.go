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
	return errors.Is(err, account.ErrInvalidCode) || errors.Is(err, ErrWrongPassword) ||
		errors.Is(err, uia.ErrStageNotAllowed) || errors.Is(err, account.ErrNotEnabled)
}
