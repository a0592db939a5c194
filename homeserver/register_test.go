package homeserver_test

import (
	"errors"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

func TestRegister(t *testing.T) {
	tests := []struct {
		name     string
		req      homeserver.RegisterRequest
		status   int
		body     string
		wantBody string
		wantUser string
		wantUIA  bool
		wantCode string // a RespError with this code; "-" for an ordinary error
	}{
		{name: "flows only", status: 401, body: `{"flows":[{"stages":["m.login.dummy"]}],"session":"S"}`,
			wantBody: `{}`, wantUIA: true},
		{name: "a stage", req: homeserver.RegisterRequest{Username: "bob", Password: "pw", InhibitLogin: true,
			Auth: &homeserver.RegisterAuth{Type: "m.login.registration_token", Session: "S", Token: "T"}},
			status: 200, body: `{"user_id":"@bob:localhost","home_server":"localhost","access_token":"AT"}`,
			wantBody: `{"username":"bob","password":"pw","auth":{"type":"m.login.registration_token","session":"S","token":"T"},"inhibit_login":true}`,
			wantUser: "@bob:localhost"},
		{name: "disabled", status: 403, body: `{"errcode":"M_FORBIDDEN","error":"Registration is disabled"}`, wantBody: `{}`, wantCode: "M_FORBIDDEN"},
		{name: "in use", req: homeserver.RegisterRequest{Username: "bob", Password: "pw"}, status: 400,
			body: `{"errcode":"M_USER_IN_USE"}`, wantBody: `{"username":"bob","password":"pw"}`, wantCode: "M_USER_IN_USE"},
		{name: "401 without flows", status: 401, body: `{"errcode":"M_UNKNOWN_TOKEN"}`, wantBody: `{}`, wantCode: "M_UNKNOWN_TOKEN"},
		{name: "200 without user", status: 200, body: `{}`, wantBody: `{}`, wantCode: "-"},
		{name: "500", status: 500, body: `oops`, wantBody: `{}`, wantCode: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { writeRaw(w, tc.status, tc.body) })
			c := newClient(t, f.URL, homeserver.Options{})
			res, err := c.Register(t.Context(), tc.req)
			if reqs := f.requests(); len(reqs) != 1 || reqs[0].Path != "/_matrix/client/v3/register" || string(reqs[0].Body) != tc.wantBody {
				t.Fatalf("upstream saw %+v", reqs)
			}
			var re mautrix.RespError
			switch {
			case tc.wantCode == "-":
				if err == nil || errors.As(err, &re) {
					t.Fatalf("got %v, %v; want an ordinary error", res, err)
				}
			case tc.wantCode != "":
				if !errors.As(err, &re) || re.ErrCode != tc.wantCode || re.StatusCode != tc.status {
					t.Fatalf("got %v, %v; want %s", res, err, tc.wantCode)
				}
			case err != nil:
				t.Fatal(err)
			case res.UserID != tc.wantUser || (res.UIA != nil) != tc.wantUIA || tc.wantUser != "" && res.AccessToken != "AT":
				t.Fatalf("got %+v", res)
			}
		})
	}
}
