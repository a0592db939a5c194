package flows_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

func TestPolicy(t *testing.T) {
	cases := []struct {
		name string
		got  [][]string
		want [][]string
	}{
		{"enrol, 2FA off", flows.ForEndpoint(flows.EnrolTOTP, false), [][]string{{"m.login.password"}}},
		{"enrol, 2FA on", flows.ForEndpoint(flows.EnrolTOTP, true), [][]string{{"m.login.password", "m.login.2fa.totp"}, {"m.login.password", "m.login.2fa.recovery"}}},
		{"disable", flows.ForEndpoint(flows.DisableTOTP, true), [][]string{{"m.login.password", "m.login.2fa.totp"}, {"m.login.password", "m.login.2fa.recovery"}}},
		{"regenerate", flows.ForEndpoint(flows.Regenerate, true), [][]string{{"m.login.2fa.totp"}, {"m.login.2fa.recovery"}}},
		{"in front of homeserver flows", flows.InFront([][]string{{"m.login.password"}, {"m.login.sso"}}),
			[][]string{{"m.login.2fa.totp", "m.login.password"}, {"m.login.2fa.totp", "m.login.sso"}, {"m.login.2fa.recovery", "m.login.password"}, {"m.login.2fa.recovery", "m.login.sso"}}},
		{"in front of no flows", flows.InFront(nil), [][]string{{"m.login.2fa.totp"}, {"m.login.2fa.recovery"}}},
		{"login", flows.After("m.login.token"), [][]string{{"m.login.token", "m.login.2fa.totp"}, {"m.login.token", "m.login.2fa.recovery"}}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, tc.got, tc.want)
		}
	}
}

type fakeVerifier struct{ totp, recovery []string }

func (f *fakeVerifier) VerifyTOTP(_ context.Context, _, code string) error {
	f.totp = append(f.totp, code)
	return nil
}
func (f *fakeVerifier) VerifyRecovery(_ context.Context, _, code string) error {
	f.recovery = append(f.recovery, code)
	return nil
}
func (f *fakeVerifier) Params() account.Params {
	return account.Params{Algorithm: "SHA1", Digits: 6, Period: 30}
}

func TestVerifyEither(t *testing.T) {
	cases := []struct {
		code       string
		toRecovery bool
	}{{"123456", false}, {" 123 456 ", false}, {"ABCD-EFGH-JK", true}, {"abcdefghjk", true}, {"", true}}
	for _, tc := range cases {
		f := &fakeVerifier{}
		flows.VerifyEither(context.Background(), f, "@a:b", tc.code)
		if (len(f.recovery) == 1) != tc.toRecovery || len(f.totp)+len(f.recovery) != 1 {
			t.Errorf("%q went to totp=%v recovery=%v", tc.code, f.totp, f.recovery)
		}
	}
	if p := (flows.TOTPStage{V: &fakeVerifier{}}).Params().(map[string]int); p["digits"] != 6 || p["period"] != 30 {
		t.Errorf("TOTP params = %v", p)
	}
}

type fakeHS struct {
	password string
	asked    []id.UserID
}

func (f *fakeHS) CheckPassword(_ context.Context, u id.UserID, pw string) (bool, error) {
	f.asked = append(f.asked, u)
	return pw == f.password, nil
}

func TestPasswordStage(t *testing.T) {
	sess := &uia.Session{UIASession: storage.UIASession{UserID: "@alice:example.org"}}
	cases := []struct {
		name string
		raw  string
		want error
	}{
		{"right, localpart", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw"}`, nil},
		{"right, full id", `{"identifier":{"type":"m.id.user","user":"@alice:example.org"},"password":"pw"}`, nil},
		{"right, legacy user", `{"user":"alice","password":"pw"}`, nil},
		{"right, no identifier", `{"password":"pw"}`, nil},
		{"wrong password", `{"identifier":{"type":"m.id.user","user":"alice"},"password":"nope"}`, flows.ErrWrongPassword},
		{"another user", `{"identifier":{"type":"m.id.user","user":"bob"},"password":"pw"}`, canonical.ErrOtherUser},
		{"another server", `{"identifier":{"type":"m.id.user","user":"@alice:evil.org"},"password":"pw"}`, canonical.ErrOtherUser},
		{"legacy user disagrees with identifier", `{"identifier":{"type":"m.id.user","user":"alice"},"user":"bob","password":"pw"}`, canonical.ErrAmbiguousUser},
		{"identifier without type", `{"identifier":{"user":"alice"},"password":"pw"}`, canonical.ErrNoIdentifierType},
		{"third-party identifier", `{"identifier":{"type":"m.id.thirdparty","medium":"email","address":"a@b"},"password":"pw"}`, canonical.ErrNotAUserID},
		{"legacy third-party", `{"medium":"email","address":"a@b","password":"pw"}`, canonical.ErrNotAUserID},
		{"no password", `{"identifier":{"type":"m.id.user","user":"alice"}}`, flows.ErrMissingPassword},
		{"password not a string", `{"password":5}`, uia.ErrBadAuth},
	}
	for _, tc := range cases {
		hs := &fakeHS{password: "pw"}
		a, err := uia.ParseAuth([]byte(tc.raw))
		if err != nil {
			t.Fatal(err)
		}
		err = flows.PasswordStage{HS: hs}.Authenticate(context.Background(), sess, a)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
		for _, u := range hs.asked {
			if u != "@alice:example.org" {
				t.Errorf("%s: password checked for %s, not the session's user", tc.name, u)
			}
		}
	}
}
