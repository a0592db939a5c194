package pages

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// User registration on the authorization page (prompt=create): while the
// homeserver lets the page register users (oauth.Server.Registration), an
// authorization request with prompt=create shows the create view: username,
// the password twice, a registration token only when the homeserver's flow
// needs one, and the client's name and URI as on the sign-in view. The page
// registers the user at the homeserver with a body it built itself
// (username, password, auth, inhibit_login), completing only dummy and
// registration token stages in a UIA session it started itself, checks that
// the homeserver registered exactly that username, records an audit event,
// and then goes on exactly as a sign-in with that password does: the
// enforcement policy's enrolment, the code for a user with 2FA, and only
// then the client's login with its device ID. Without registration,
// prompt=create shows the sign-in view with a sentence saying so. Same
// anti-forgery token, rate limit and "Deny" as the sign-in view.

// createView is the create view's part of the page data.
type createView struct {
	// Token shows the registration token field.
	Token bool
}

// usernameChars are the characters of a user ID's localpart (Matrix spec,
// "User Identifiers"), after lowercasing.
var usernameChars = regexp.MustCompile(`^[a-z0-9._=/+-]{1,255}$`)

// maxPasswordLen is the longest password homeservers take (Synapse, Dendrite).
const maxPasswordLen = 512

// promptHrefs puts the links between the views on the page: to the create
// view while registration is possible, and back to the sign-in view.
func (p *Pages) promptHrefs(r *http.Request, q *authz) {
	query := r.URL.Query()
	var rest []string
	for _, v := range strings.Fields(query.Get("prompt")) {
		if v != "create" {
			rest = append(rest, v)
		}
	}
	query.Del("prompt")
	if len(rest) > 0 {
		query.Set("prompt", strings.Join(rest, " "))
	}
	q.d.SignInHref = r.URL.Path + "?" + query.Encode()
	if q.reg.Possible {
		query.Set("prompt", strings.Join(append(rest, "create"), " "))
		q.d.CreateHref = r.URL.Path + "?" + query.Encode()
	}
}

// authorizeView shows the first step: the create view for prompt=create
// while registration is possible, else the sign-in view (saying so when
// the client asked for registration).
func (p *Pages) authorizeView(w http.ResponseWriter, q *authz, status int) {
	if q.req.Create && q.reg.Possible {
		q.d.Create = &createView{Token: q.reg.Token}
		q.page.Title = "Create an account for " + q.d.ClientName
		renderPage(w, status, "oauth_create.html", q.page)
		return
	}
	if q.req.Create {
		q.d.Notice = "This server does not allow creating an account here. Sign in with an existing account instead."
	}
	renderPage(w, status, "oauth.html", q.page)
}

// authorizeCreate is the create step: check the form, register the user at
// the homeserver, then sign in as them.
func (p *Pages) authorizeCreate(w http.ResponseWriter, r *http.Request, q *authz) {
	if !q.req.Create || !q.reg.Possible {
		q.reg, q.d.CreateHref = oauth.Registration{}, ""
		p.signInRefusedPage(w, r, q.page, "oauth.html", httperr.ErrRegistrationClosed)
		return
	}
	q.d.Create = &createView{Token: q.reg.Token}
	q.page.Title = "Create an account for " + q.d.ClientName
	user := strings.ToLower(strings.TrimSpace(q.form.Get("username")))
	q.d.Username = user
	password, token := q.form.Get("password"), strings.TrimSpace(q.form.Get("token"))
	err := checkCreateForm(user, password, q.form.Get("password2"))
	var userID string
	if err == nil {
		userID, err = p.registerUser(r, user, password, token)
	}
	if err != nil && answerLost(err) {
		userID, err = p.registeredAnyway(r, user, password, err)
	}
	if errors.Is(err, httperr.ErrRegistrationClosed) {
		q.d.Create, q.d.CreateHref, q.page.Title = nil, "", "Sign in to "+q.d.ClientName
		p.signInRefusedPage(w, r, q.page, "oauth.html", err)
		return
	}
	if err != nil {
		p.signInRefusedPage(w, r, q.page, "oauth_create.html", err)
		return
	}
	p.acc.Record(r.Context(), userID, storage.AuditRegistered, fmt.Sprintf("OAuth page, client %s (%q)", q.req.Client.ID, q.req.Client.DisplayName()))
	httpx.Logger(r).WithFields(map[string]any{"user_id": userID, "client_id": q.req.Client.ID}).Info("oauth page: user registered")
	q.d.Create, q.d.Username, q.page.Title = nil, userID, "Sign in to "+q.d.ClientName
	p.authorizeSignIn(w, r, q, userID, password)
}

// answerLost reports whether a registration may have happened though its
// answer did not come back: the homeserver out of reach mid-request, a 5xx,
// or an answer without a Matrix error. (A homeserver that answered oddly —
// another user ID, a stage again — is not asked again.)
func answerLost(err error) bool {
	var odd *homeserver.UnexpectedStatusError
	return errors.Is(err, homeserver.ErrUnreachable) || errors.As(err, &odd)
}

// registeredAnyway asks, after a registration whose answer was lost (cause),
// whether the account now exists with this password: a throw-away login as
// user. If it signs in, the registration happened; else cause stands.
func (p *Pages) registeredAnyway(r *http.Request, user, password string, cause error) (string, error) {
	check, err := p.passwordLogin(r, user, password)
	if err != nil {
		return "", cause
	}
	if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), check.AccessToken); lerr != nil {
		httpx.Logger(r).WithError(lerr).Error("oauth page: logging out the check login")
	}
	if !strings.HasPrefix(string(check.UserID), "@"+user+":") {
		return "", cause
	}
	httpx.Logger(r).WithError(cause).WithField("user_id", check.UserID).Warn("oauth page: the registration's answer was lost, but the account signs in")
	return string(check.UserID), nil
}

// checkCreateForm checks what the page can itself: the username's
// characters and the password typed twice (its strength is the homeserver's).
func checkCreateForm(user, password, again string) error {
	switch {
	case !usernameChars.MatchString(user):
		return mautrix.MInvalidUsername.WithStatus(http.StatusBadRequest)
	case password == "":
		return flows.ErrMissingPassword
	case password != again:
		return httperr.ErrPasswordMismatch
	case len(password) > maxPasswordLen:
		return httperr.ErrPasswordTooLong
	}
	return nil
}

// registerUser registers user with password at the homeserver, completing
// the dummy and registration token stages of the UIA session its first
// request started, and returns the user ID the homeserver registered, which
// must be user's. A 403 is ErrRegistrationClosed; a refused token
// ErrBadRegistrationToken; other refusals are the homeserver's errors.
func (p *Pages) registerUser(r *http.Request, user, password, token string) (string, error) {
	req := homeserver.RegisterRequest{Username: user, Password: password, InhibitLogin: true}
	res, err := p.hs.Register(r.Context(), req)
	for i := 0; err == nil && res.UserID == "" && i < 3; i++ {
		req.Auth, err = nextRegisterStage(res.UIA, req.Auth, token)
		if err == nil {
			res, err = p.hs.Register(r.Context(), req)
		}
	}
	if err == nil && res.AccessToken != "" { // a login despite inhibit_login: not the client's
		if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), res.AccessToken); lerr != nil {
			httpx.Logger(r).WithError(lerr).Error("oauth page: logging out the registration's login")
		}
	}
	var re mautrix.RespError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%w: %w", httperr.ErrRegistrationClosed, err)
	case err != nil:
		return "", err
	case res.UserID == "":
		return "", fmt.Errorf("%w: the registration did not end", httperr.ErrUpstreamAnswer)
	case !strings.HasPrefix(res.UserID, "@"+user+":"):
		return "", fmt.Errorf("%w: asked to register %q, the homeserver registered %q", httperr.ErrUpstreamAnswer, user, res.UserID)
	}
	return res.UserID, nil
}

// nextRegisterStage is the auth dict for the next stage of the challenge
// uia, after last (nil at first): the first stage of the flow the page can
// complete that is not completed yet. A refusal of the last stage is the
// homeserver's error (ErrBadRegistrationToken for the token).
func nextRegisterStage(uia *mautrix.RespUserInteractive, last *homeserver.RegisterAuth, token string) (*homeserver.RegisterAuth, error) {
	if last != nil && uia.ErrCode != "" {
		if last.Type == oauth.StageRegistrationToken {
			return nil, httperr.ErrBadRegistrationToken
		}
		return nil, mautrix.RespError{ErrCode: uia.ErrCode, Err: uia.Error, StatusCode: http.StatusUnauthorized}
	}
	stages, ok := oauth.CompletableFlow(uia.Flows)
	if !ok {
		return nil, httperr.ErrRegistrationClosed
	}
	for _, st := range stages {
		if slices.Contains(uia.Completed, st) {
			continue
		}
		if last != nil && last.Type == st {
			return nil, fmt.Errorf("%w: the homeserver asks for %s again", httperr.ErrUpstreamAnswer, st)
		}
		auth := &homeserver.RegisterAuth{Type: st, Session: uia.Session}
		if st == oauth.StageRegistrationToken {
			if token == "" {
				return nil, httperr.ErrMissingRegistrationToken
			}
			auth.Token = token
		}
		return auth, nil
	}
	return nil, fmt.Errorf("%w: the registration flow is complete but did not end", httperr.ErrUpstreamAnswer)
}
