package httperr_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

func TestMatrixError(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		status  int
		errcode string
	}{
		{"missing code", account.ErrMissingCode, 400, "M_MISSING_PARAM"},
		{"wrapped invalid code", fmt.Errorf("%w: replayed", account.ErrInvalidCode), 403, "M_FORBIDDEN"},
		{"no pending", account.ErrNoPending, 400, "M_INVALID_PARAM"},
		{"not enabled", account.ErrNotEnabled, 400, "M_INVALID_PARAM"},
		{"unknown session", uia.ErrUnknownSession, 400, "M_INVALID_PARAM"},
		{"session mismatch", uia.ErrSessionMismatch, 403, "M_FORBIDDEN"},
		{"bad auth", uia.ErrBadAuth, 400, "M_BAD_JSON"},
		{"not json", httperr.ErrNotJSON, 400, "M_NOT_JSON"},
		{"too large", httperr.ErrTooLarge, 413, "M_TOO_LARGE"},
		{"homeserver error passes", mautrix.MUnknownToken.WithMessage("Unknown token"), 401, "M_UNKNOWN_TOKEN"},
		{"unknown", errors.New("disk on fire"), 500, "M_UNKNOWN"},
		{"storage error", storage.ErrNotFound, 500, "M_UNKNOWN"},
		{"homeserver 5xx", fmt.Errorf("login: %w", &homeserver.UnexpectedStatusError{Op: "POST /login", StatusCode: 503}), 502, "M_UNKNOWN"},
		{"homeserver answer without errcode", &homeserver.UnexpectedStatusError{Op: "POST /register", StatusCode: 400}, 502, "M_UNKNOWN"},
		{"odd registration", fmt.Errorf("%w: registered another user", httperr.ErrUpstreamAnswer), 502, "M_UNKNOWN"},
	}
	for _, tc := range cases {
		got := httperr.Matrix(tc.err)
		if got.StatusCode != tc.status || got.ErrCode != tc.errcode || got.Err == "" {
			t.Errorf("%s: %d %s %q; want %d %s", tc.name, got.StatusCode, got.ErrCode, got.Err, tc.status, tc.errcode)
		}
		if tc.status == 500 && got.Err != "Internal server error" {
			t.Errorf("%s: internal detail leaks: %q", tc.name, got.Err)
		}
	}
	locked := httperr.Matrix(&account.LockedError{RetryAfter: 1500 * time.Millisecond})
	if locked.StatusCode != http.StatusTooManyRequests || locked.ErrCode != "M_LIMIT_EXCEEDED" ||
		locked.ExtraData["retry_after_ms"] != int64(1500) || locked.ExtraHeader["Retry-After"] != "2" {
		t.Errorf("locked = %+v", locked)
	}
	if httperr.Matrix(fmt.Errorf("%w: wrong", account.ErrInvalidCode)).Err != httperr.Matrix(fmt.Errorf("%w: replayed", account.ErrInvalidCode)).Err {
		t.Error("wrong and replayed codes read differently to the client")
	}
}

func TestPage(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		text   string
	}{
		{"wrong code", fmt.Errorf("%w: replayed", account.ErrInvalidCode), 403, "That code is not valid"},
		{"no code", account.ErrMissingCode, 400, "Enter a code."},
		{"expired session", uia.ErrUnknownSession, 400, "has expired or has already been used"},
		{"held login here", httperr.ErrHeldLoginHere, 403, "in the app where the password was typed"},
		{"locked", &account.LockedError{RetryAfter: 90 * time.Second}, 429, "Too many failed attempts. Try again in 1 minute 30 seconds."},
		{"homeserver 429", mautrix.MLimitExceeded.WithMessage("slow down").WithExtraField("retry_after_ms", float64(2000)).WithStatus(429), 429, "Please wait 2 seconds"},
		{"cross-user", canonical.ErrOtherUser, 403, "That did not work"},
		{"internal", errors.New("disk on fire"), 500, "Something went wrong"},
		{"username taken", mautrix.MUserInUse.WithMessage("User ID already taken.").WithStatus(400), 400, "That username is taken"},
		{"username invalid", mautrix.MInvalidUsername.WithStatus(400), 400, "cannot be used"},
		{"username exclusive", mautrix.MExclusive.WithStatus(400), 400, "reserved"},
		{"weak password", httperr.MWeakPassword.WithMessage("too short"), 400, "too weak"},
		{"registration closed", httperr.ErrRegistrationClosed, 403, "does not allow creating an account"},
		{"passwords differ", httperr.ErrPasswordMismatch, 400, "do not match"},
		{"password too long", httperr.ErrPasswordTooLong, 400, "too long"},
		{"no registration token", httperr.ErrMissingRegistrationToken, 400, "registration token"},
		{"bad registration token", httperr.ErrBadRegistrationToken, 403, "not valid"},
		{"homeserver 5xx", &homeserver.UnexpectedStatusError{Op: "POST /register", StatusCode: 500}, 502, "unexpected answer"},
	}
	for _, tc := range cases {
		status, text := httperr.Page(tc.err)
		if status != tc.status || !strings.Contains(text, tc.text) {
			t.Errorf("%s: %d %q; want %d containing %q", tc.name, status, text, tc.status, tc.text)
		}
		if tc.status == 500 && strings.Contains(text, "disk") {
			t.Errorf("%s: internal detail on the page", tc.name)
		}
	}
	if got := httperr.Matrix(mautrix.MUserInUse.WithMessage("User ID already taken.")); got.Err != "User ID already taken." {
		t.Errorf("the homeserver's M_USER_IN_USE changed on its way: %+v", got)
	}
	if got := httperr.Matrix(&account.LockedError{RetryAfter: 90 * time.Second}); got.ExtraHeader["Retry-After"] != "90" {
		t.Errorf("lockout Retry-After = %v", got.ExtraHeader)
	}
}

func TestFormatWait(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1 second", 1500 * time.Millisecond: "2 seconds", time.Minute: "1 minute",
		61 * time.Second: "1 minute 1 second", 15 * time.Minute: "15 minutes"} {
		if got := httperr.FormatWait(d); got != want {
			t.Errorf("FormatWait(%s) = %q; want %q", d, got, want)
		}
	}
	if _ = http.StatusOK; httperr.RetryAfter(100*time.Millisecond) != "1" {
		t.Error("RetryAfter rounds below a second to 0")
	}
}

func TestHomeserverRefused(t *testing.T) {
	for _, c := range []struct {
		err     error
		refused bool
	}{
		{fmt.Errorf("login: %w", mautrix.MForbidden.WithMessage("Invalid password").WithStatus(403)), true},
		{mautrix.MUnknownToken.WithMessage("x").WithStatus(401), true},
		{mautrix.MLimitExceeded.WithMessage("slow down").WithStatus(http.StatusTooManyRequests), false},
		{mautrix.MUnknown.WithMessage("boom").WithStatus(500), false},
		{errors.New("connection refused"), false},
	} {
		code, ok := httperr.HomeserverRefused(c.err)
		if ok != c.refused || ok && code == "" {
			t.Errorf("HomeserverRefused(%v) = %q, %v; want refused %v", c.err, code, ok, c.refused)
		}
	}
}
