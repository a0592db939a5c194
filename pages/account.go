package pages

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
)

// Account management (the Matrix spec's account_management_uri, MSC4191):
// the self-service page opens the view an action names, ?action=<action>
// (and &device_id= for one device). A browser that is not signed in signs
// in first (password, and the code for a user with 2FA) and then lands on
// the view.
//
// The page keeps no homeserver login of its own. What needs the homeserver
// takes the password again: listing the devices and showing one device's
// details, and signing a device out, deactivating the account or approving
// a request of the m.oauth stage (approve.go), which also take a code for a
// user with 2FA. Each is one throw-away homeserver login
// (the password's check), used and logged out at once; the code is checked
// after the password and before anything happens.

// AccountActions are the actions the page serves, as the server metadata's
// account_management_actions_supported lists them.
var AccountActions = []string{
	"org.matrix.profile", "org.matrix.devices_list", "org.matrix.device_view", "org.matrix.device_delete",
	"org.matrix.account_deactivate", "org.matrix.cross_signing_reset",
	"org.matrix.sessions_list", "org.matrix.session_view", "org.matrix.session_end",
}

// actionViews maps each action to the page's view.
var actionViews = map[string]string{
	"org.matrix.profile": "status", "org.matrix.devices_list": "devices", "org.matrix.sessions_list": "devices",
	"org.matrix.device_view": "device", "org.matrix.session_view": "device",
	"org.matrix.device_delete": "device", "org.matrix.session_end": "device",
	"org.matrix.account_deactivate": "deactivate", "org.matrix.cross_signing_reset": "xsign",
	// The m.oauth stage's approval of any other operation (oauth.ActionApprove).
	oauth.ActionApprove: "approve",
	// Not in the spec's list (no action names it): the page's own link.
	"org.matrix2fa.password_change": "password",
}

// accountTarget is the view a request's ?action= asks for ("" for none),
// and the query to come back to after signing in.
func accountTarget(q url.Values) (view, next string) {
	view = actionViews[q.Get("action")]
	if view == "" {
		return "", ""
	}
	keep := url.Values{"action": {q.Get("action")}}
	for _, k := range []string{"device_id", "session"} {
		if v := q.Get(k); v != "" && len(v) <= 255 {
			keep.Set(k, v)
		}
	}
	return view, keep.Encode()
}

// safeNext is next when it is a query accountTarget made, else "".
func safeNext(next string) string {
	q, err := url.ParseQuery(next)
	if err != nil {
		return ""
	}
	if _, again := accountTarget(q); again == next {
		return next
	}
	return ""
}

// renderAction shows the view of an account management action to a
// signed-in session.
func (p *Pages) renderAction(w http.ResponseWriter, r *http.Request, s *selfSession, view string) {
	q := r.URL.Query()
	if view == "status" {
		p.renderStatus(w, r, http.StatusOK, s, "", "")
		return
	}
	if view == "approve" || (view == "xsign" && q.Get("session") != "") {
		p.renderApproval(w, r, s, q.Get("session"))
		return
	}
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	v := selfView{View: view, TwoFA: enabled, DeviceID: q.Get("device_id"), XSession: q.Get("session"), Back: true}
	if view == "device" && v.DeviceID == "" {
		v.View = "devices"
	}
	p.renderSelf(w, r, http.StatusOK, s, v, "")
}

// stepUp checks the form's password with a throw-away homeserver login and,
// for a user with 2FA, its code; then runs do with that login's token, and
// logs the login out. It answers itself when anything is refused.
func (p *Pages) stepUp(w http.ResponseWriter, r *http.Request, s *selfSession, v selfView, do func(ctx context.Context, token string) error) bool {
	ctx := r.Context()
	show := func(status int, msg string) { p.renderSelf(w, r, status, s, v, msg) }
	password, code := r.PostForm.Get("password"), r.PostForm.Get("code")
	if password == "" || (v.TwoFA && strings.TrimSpace(code) == "") {
		msg := "Enter your password."
		if v.TwoFA {
			msg = "Enter your password and a code."
		}
		show(http.StatusBadRequest, msg)
		return false
	}
	login, err := p.hs.PasswordLogin(ctx, s.userID, password, "", selfDeviceName)
	if err == nil {
		defer p.logoutQuietly(r, login.AccessToken) // also when it is another user's
		if string(login.UserID) != s.userID {
			err = errors.New("pages: the homeserver logged in another user")
		}
	}
	if err != nil {
		p.stepUpRefused(w, r, s, show, msgBadPwOrCode, err)
		return false
	}
	if v.TwoFA {
		if err := flows.VerifyEither(ctx, p.acc, s.userID, code); err != nil && !errors.Is(err, account.ErrNotEnabled) {
			p.codeFailure(w, r, s, err, show)
			return false
		}
	}
	if err := do(ctx, login.AccessToken); err != nil {
		p.selfInternal(w, r, s, err)
		return false
	}
	return true
}

// stepUpRefused answers a password login of a signed-in session that
// failed: the homeserver's rate limit as the locked page, its refusal as
// wrong (shown with show), anything else as internal.
func (p *Pages) stepUpRefused(w http.ResponseWriter, r *http.Request, s *selfSession, show func(int, string), wrong string, err error) {
	if wait, limited := httperr.HomeserverLimited(err); limited {
		p.renderLocked(w, r, s, wait)
	} else if errcode, refused := httperr.HomeserverRefused(err); refused {
		httpx.Logger(r).WithField("errcode", errcode).Info("account page: wrong password")
		show(http.StatusForbidden, wrong)
	} else {
		p.selfInternal(w, r, s, err)
	}
}

// logoutQuietly logs a throw-away login out, logging a failure.
func (p *Pages) logoutQuietly(r *http.Request, token string) {
	if err := p.hs.Logout(context.WithoutCancel(r.Context()), token); err != nil {
		httpx.Logger(r).WithError(err).Error("account page: logging the throw-away login out")
	}
}

// selfDevices lists the user's devices (password only: nothing changes).
func (p *Pages) selfDevices(w http.ResponseWriter, r *http.Request, s *selfSession) {
	v := selfView{View: "devices", Back: true}
	var list []homeserver.Device
	ok := p.stepUp(w, r, s, v, func(ctx context.Context, token string) error {
		who, err := p.hs.Devices(ctx, token)
		list = who
		return err
	})
	if !ok {
		return
	}
	// The throw-away device of the listing itself is not shown.
	v.Devices = slices.DeleteFunc(list, func(d homeserver.Device) bool { return d.DisplayName == selfDeviceName })
	v.Listed = true
	p.renderSelf(w, r, http.StatusOK, s, v, "")
}

// selfDeviceDetails shows the homeserver's details of one device (the
// password only: nothing changes); an unknown device is said so.
func (p *Pages) selfDeviceDetails(w http.ResponseWriter, r *http.Request, s *selfSession) {
	device := r.PostForm.Get("device_id")
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil || device == "" || len(device) > 255 {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Which device?")
		return
	}
	v := selfView{View: "device", DeviceID: device, Back: true}
	var d homeserver.Device
	unknown := false
	ok := p.stepUp(w, r, s, v, func(ctx context.Context, token string) error {
		d, err = p.hs.Device(ctx, token, device)
		if errcode, refused := httperr.HomeserverRefused(err); refused && errcode == "M_NOT_FOUND" {
			unknown, err = true, nil
		}
		return err
	})
	if !ok {
		return
	}
	v.TwoFA = enabled
	if unknown || d.DisplayName == selfDeviceName {
		v.DeviceID = ""
		v.View = "devices"
		p.renderSelf(w, r, http.StatusNotFound, s, v, "There is no device "+device+" on your account: it may have been signed out already.")
		return
	}
	v.Device = &deviceView{Device: d}
	if d.LastSeenTS > 0 {
		v.Device.LastSeen = time.UnixMilli(d.LastSeenTS).UTC().Format("2 January 2006, 15:04 UTC")
	}
	p.renderSelf(w, r, http.StatusOK, s, v, "")
}

// selfDeviceDelete signs a device out after the password and the code.
func (p *Pages) selfDeviceDelete(w http.ResponseWriter, r *http.Request, s *selfSession) {
	device := r.PostForm.Get("device_id")
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil || device == "" {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Which device?")
		return
	}
	v := selfView{View: "device", DeviceID: device, TwoFA: enabled, Back: true}
	ok := p.stepUp(w, r, s, v, func(ctx context.Context, token string) error {
		return p.hs.DeleteDevice(ctx, token, id.UserID(s.userID), r.PostForm.Get("password"), device)
	})
	if ok {
		httpx.Logger(r).WithField("device_id", device).Info("account page: device signed out")
		p.renderStatus(w, r, http.StatusOK, s, "The device "+device+" is signed out.", "")
	}
}

// selfPasswordChange changes the password at the homeserver after the
// current password and the code (a client cannot: it would need UIA with
// both), then forgets the user's remembered browsers.
func (p *Pages) selfPasswordChange(w http.ResponseWriter, r *http.Request, s *selfSession) {
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	v := selfView{View: "password", TwoFA: enabled, Back: true}
	next := r.PostForm.Get("new_password")
	if next == "" || len(next) > 1024 || next != r.PostForm.Get("new_password_again") {
		p.renderSelf(w, r, http.StatusBadRequest, s, v, "Enter the new password twice, the same both times.")
		return
	}
	ok := p.stepUp(w, r, s, v, func(ctx context.Context, token string) error {
		return p.hs.WithPassword(ctx, token, http.MethodPost, "/_matrix/client/v3/account/password", id.UserID(s.userID),
			r.PostForm.Get("password"), map[string]any{"new_password": next, "logout_devices": r.PostForm.Get("logout_devices") != ""})
	})
	if !ok {
		return
	}
	httpx.Logger(r).Info("account page: password changed")
	if err := p.acc.ForgetBrowsers(r.Context(), s.userID, "password changed"); err != nil {
		httpx.Logger(r).WithError(err).Error("account page: forgetting remembered browsers after a password change")
	}
	p.renderStatus(w, r, http.StatusOK, s, "Your password is changed.", "")
}

// selfDeactivate deactivates the account after the password and the code.
func (p *Pages) selfDeactivate(w http.ResponseWriter, r *http.Request, s *selfSession) {
	enabled, err := p.acc.Enabled(r.Context(), s.userID)
	if err != nil {
		p.selfInternal(w, r, s, err)
		return
	}
	v := selfView{View: "deactivate", TwoFA: enabled, Back: true}
	ok := p.stepUp(w, r, s, v, func(ctx context.Context, token string) error {
		return p.hs.WithPassword(ctx, token, http.MethodPost, "/_matrix/client/v3/account/deactivate", id.UserID(s.userID),
			r.PostForm.Get("password"), map[string]any{"erase": false})
	})
	if ok {
		httpx.Logger(r).Info("account page: account deactivated")
		p.store.TakeSession(r.Context(), s.storeID)
		p.setSelfCookie(w, r, selfSessionCookie, "", -1)
		p.renderSelf(w, r, http.StatusOK, nil, selfView{View: "done", Notice: "Your account is deactivated."}, "")
	}
}
