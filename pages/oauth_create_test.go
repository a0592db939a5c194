package pages

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
)

// scriptedHS answers registrations in order and records what was sent.
type scriptedHS struct {
	Homeserver
	answers []func() (*homeserver.RegisterResult, error)
	sent    []homeserver.RegisterRequest
	logouts []string
}

func (h *scriptedHS) Logout(ctx context.Context, accessToken string) error {
	h.logouts = append(h.logouts, accessToken)
	return nil
}

func (h *scriptedHS) Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error) {
	h.sent = append(h.sent, req)
	if len(h.sent) > len(h.answers) {
		return nil, errors.New("unexpected request")
	}
	return h.answers[len(h.sent)-1]()
}

func challenge(errcode string, completed []string, flows ...[]mautrix.AuthType) func() (*homeserver.RegisterResult, error) {
	return func() (*homeserver.RegisterResult, error) {
		uia := &mautrix.RespUserInteractive{Session: "S", Completed: completed, ErrCode: errcode}
		for _, f := range flows {
			uia.Flows = append(uia.Flows, mautrix.UIAFlow{Stages: f})
		}
		return &homeserver.RegisterResult{UIA: uia}, nil
	}
}

func registered(userID string) func() (*homeserver.RegisterResult, error) {
	return func() (*homeserver.RegisterResult, error) { return &homeserver.RegisterResult{UserID: userID}, nil }
}

func refused(re mautrix.RespError) func() (*homeserver.RegisterResult, error) {
	return func() (*homeserver.RegisterResult, error) { return nil, re }
}

// TestRegisterUser: the stages the page completes, in the session the
// homeserver started, with a body of the page's own; every other answer a
// refusal from the one error table.
func TestRegisterUser(t *testing.T) {
	const token, dummy = "m.login.registration_token", "m.login.dummy"
	tokenFlow := []mautrix.AuthType{token, dummy}
	cases := []struct {
		name    string
		token   string
		answers []func() (*homeserver.RegisterResult, error)
		auths   []string // the auth types sent, in order ("" for none)
		want    error    // nil: registered as @bob:hs
	}{
		{"dummy", "", []func() (*homeserver.RegisterResult, error){challenge("", nil, []mautrix.AuthType{dummy}), registered("@bob:hs")},
			[]string{"", dummy}, nil},
		{"token then dummy", "T", []func() (*homeserver.RegisterResult, error){challenge("", nil, tokenFlow),
			challenge("", []string{token}, tokenFlow), registered("@bob:hs")}, []string{"", token, dummy}, nil},
		{"no token", "", []func() (*homeserver.RegisterResult, error){challenge("", nil, tokenFlow)}, []string{""}, httperr.ErrMissingRegistrationToken},
		{"token refused", "T", []func() (*homeserver.RegisterResult, error){challenge("", nil, tokenFlow), challenge("M_UNAUTHORIZED", nil, tokenFlow)},
			[]string{"", token}, httperr.ErrBadRegistrationToken},
		{"registration off", "", []func() (*homeserver.RegisterResult, error){refused(mautrix.MForbidden.WithStatus(http.StatusForbidden))},
			[]string{""}, httperr.ErrRegistrationClosed},
		{"only a CAPTCHA", "", []func() (*homeserver.RegisterResult, error){challenge("", nil, []mautrix.AuthType{"m.login.recaptcha"})},
			[]string{""}, httperr.ErrRegistrationClosed},
		{"taken", "", []func() (*homeserver.RegisterResult, error){refused(mautrix.MUserInUse.WithStatus(http.StatusBadRequest))},
			[]string{""}, mautrix.MUserInUse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hs := &scriptedHS{answers: tc.answers}
			p := &Pages{hs: hs}
			userID, err := p.registerUser(httptest.NewRequest("POST", "/", nil), "bob", "pw", tc.token)
			if tc.want == nil && (err != nil || userID != "@bob:hs") || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %q, %v; want %v", userID, err, tc.want)
			}
			if len(hs.sent) != len(tc.auths) {
				t.Fatalf("%d requests; want %d", len(hs.sent), len(tc.auths))
			}
			for i, req := range hs.sent {
				typ := ""
				if req.Auth != nil {
					typ = req.Auth.Type
					if req.Auth.Session != "S" || (typ == token) != (req.Auth.Token == "T") {
						t.Errorf("request %d: auth %+v", i, req.Auth)
					}
				}
				if typ != tc.auths[i] || req.Username != "bob" || req.Password != "pw" || !req.InhibitLogin || req.InitialDeviceDisplayName != "" {
					t.Errorf("request %d: %+v; want auth %q", i, req, tc.auths[i])
				}
			}
		})
	}
	// A homeserver that logs the new user in despite inhibit_login: that
	// login is logged out (the client's is made after the sign-in).
	hs := &scriptedHS{answers: []func() (*homeserver.RegisterResult, error){challenge("", nil, []mautrix.AuthType{dummy}),
		func() (*homeserver.RegisterResult, error) {
			return &homeserver.RegisterResult{UserID: "@bob:hs", AccessToken: "AT"}, nil
		}}}
	if userID, err := (&Pages{hs: hs}).registerUser(httptest.NewRequest("POST", "/", nil), "bob", "pw", ""); err != nil || userID != "@bob:hs" ||
		len(hs.logouts) != 1 || hs.logouts[0] != "AT" {
		t.Errorf("a login despite inhibit_login: %q, %v, logouts %v", userID, err, hs.logouts)
	}
	for name, answers := range map[string][]func() (*homeserver.RegisterResult, error){
		"another user":   {challenge("", nil, []mautrix.AuthType{dummy}), registered("@bobby:hs")},
		"the same again": {challenge("", nil, []mautrix.AuthType{dummy}), challenge("", nil, []mautrix.AuthType{dummy})},
	} {
		p := &Pages{hs: &scriptedHS{answers: answers}}
		if userID, err := p.registerUser(httptest.NewRequest("POST", "/", nil), "bob", "pw", ""); err == nil || errors.Is(err, httperr.ErrRegistrationClosed) {
			t.Errorf("%s: got %q, %v; want an error", name, userID, err)
		}
	}
}

func TestCheckCreateForm(t *testing.T) {
	for _, tc := range []struct {
		user, password, again string
		want                  error
	}{
		{"bob", "pw", "pw", nil},
		{"b.o_b=1/2+3-4", "pw", "pw", nil},
		{"Bob", "pw", "pw", mautrix.MInvalidUsername}, // lowercased before
		{"@bob:hs", "pw", "pw", mautrix.MInvalidUsername},
		{"", "pw", "pw", mautrix.MInvalidUsername},
		{"bob", "", "", flows.ErrMissingPassword},
		{"bob", "pw", "px", httperr.ErrPasswordMismatch},
		{"bob", strings.Repeat("p", 513), strings.Repeat("p", 513), httperr.ErrPasswordTooLong},
		{"bob", strings.Repeat("p", 512), strings.Repeat("p", 512), nil},
	} {
		err := checkCreateForm(tc.user, tc.password, tc.again)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%q %q %q: %v; want %v", tc.user, tc.password, tc.again, err, tc.want)
		}
	}
}

// TestCreateViewToken: the token field is there only when the flow needs it.
func TestCreateViewToken(t *testing.T) {
	for _, token := range []bool{false, true} {
		w := httptest.NewRecorder()
		renderPage(w, http.StatusOK, "oauth_create.html", PageData{Title: "t", Data: &oauthData{ClientName: "App", Create: &createView{Token: token}}})
		if got := strings.Contains(w.Body.String(), `name="token"`); w.Code != 200 || got != token {
			t.Errorf("token %v: status %d, field %v", token, w.Code, got)
		}
	}
}
