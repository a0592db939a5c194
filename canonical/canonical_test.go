package canonical_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/canonical"
)

func obj(t *testing.T, s string) canonical.Object {
	t.Helper()
	var o canonical.Object
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return o
}

func TestIdentify(t *testing.T) {
	user := func(u string) *canonical.Identifier { return &canonical.Identifier{Type: canonical.IDUser, User: u} }
	cases := []struct {
		name string
		body string
		want *canonical.Identifier
		err  error
	}{
		{"identifier", `{"identifier":{"type":"m.id.user","user":"alice"}}`, user("alice"), nil},
		{"legacy user", `{"user":"@alice:hs"}`, user("@alice:hs"), nil},
		{"both agree", `{"identifier":{"type":"m.id.user","user":"alice"},"user":"alice"}`, user("alice"), nil},
		{"both disagree (B1)", `{"identifier":{"type":"m.id.user","user":"@nobody:hs"},"user":"victim"}`, nil, canonical.ErrAmbiguousUser},
		{"case differs counts as disagreeing", `{"identifier":{"type":"m.id.user","user":"alice"},"user":"ALICE"}`, nil, canonical.ErrAmbiguousUser},
		{"identifier without type (B1)", `{"identifier":{"user":"@nobody:hs"},"user":"victim"}`, nil, canonical.ErrNoIdentifierType},
		{"identifier without type alone", `{"identifier":{"user":"alice"}}`, nil, canonical.ErrNoIdentifierType},
		{"empty identifier type", `{"identifier":{"type":"","user":"alice"}}`, nil, canonical.ErrNoIdentifierType},
		{"unknown identifier type", `{"identifier":{"type":"m.id.other","user":"alice"}}`, nil, canonical.ErrUnknownIdentifier},
		{"m.id.user without user", `{"identifier":{"type":"m.id.user"}}`, nil, canonical.ErrBadField},
		{"m.id.user with empty user", `{"identifier":{"type":"m.id.user","user":""},"user":"victim"}`, nil, canonical.ErrBadField},
		{"user not a string", `{"user":5}`, nil, canonical.ErrBadField},
		{"identifier not an object", `{"identifier":"alice"}`, nil, canonical.ErrBadField},
		{"third party", `{"identifier":{"type":"m.id.thirdparty","medium":"email","address":"a@b"}}`,
			&canonical.Identifier{Type: canonical.IDThirdParty, Medium: "email", Address: "a@b"}, nil},
		{"legacy medium and address", `{"medium":"email","address":"a@b"}`,
			&canonical.Identifier{Type: canonical.IDThirdParty, Medium: "email", Address: "a@b"}, nil},
		{"legacy 3pid and user (Synapse: 3pid wins)", `{"medium":"email","address":"a@b","user":"alice"}`, nil, canonical.ErrAmbiguousUser},
		{"legacy medium alone", `{"medium":"email"}`, nil, canonical.ErrAmbiguousUser},
		{"phone", `{"identifier":{"type":"m.id.phone","country":"GB","phone":"123"}}`,
			&canonical.Identifier{Type: canonical.IDPhone, Country: "GB", Phone: "123"}, nil},
		{"nothing", `{}`, nil, nil},
		{"null identifier", `{"identifier":null}`, nil, nil},
		{"empty legacy user ignored", `{"user":"","identifier":{"type":"m.id.user","user":"alice"}}`, user("alice"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonical.Identify(obj(t, tc.body))
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v; want %v", err, tc.err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestLoginBody(t *testing.T) {
	cases := []struct {
		name string
		body string
		want string
		err  error
	}{
		{"password, legacy user rebuilt into identifier",
			`{"type":"m.login.password","user":"alice","password":"pw","device_id":"D","initial_device_display_name":"n","refresh_token":true,"extra":1}`,
			`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw","device_id":"D","initial_device_display_name":"n","refresh_token":true}`, nil},
		{"token", `{"type":"m.login.token","token":"T","user":"ignored-by-homeservers"}`,
			`{"type":"m.login.token","token":"T"}`, nil},
		{"appservice", `{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"bot"}}`,
			`{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"bot"}}`, nil},
		{"unknown type", `{"type":"org.example.jwt","token":"x"}`, "", canonical.ErrUnknownLoginType},
		{"no type", `{"user":"alice","password":"pw"}`, "", canonical.ErrUnknownLoginType},
		{"device_id not a string", `{"type":"m.login.password","user":"a","password":"p","device_id":5}`, "", canonical.ErrBadField},
		{"refresh_token not a bool", `{"type":"m.login.password","user":"a","password":"p","refresh_token":"yes"}`, "", canonical.ErrBadField},
		{"ambiguous user", `{"type":"m.login.password","identifier":{"user":"a"},"user":"b","password":"p"}`, "", canonical.ErrNoIdentifierType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := canonical.ParseLogin(obj(t, tc.body))
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v; want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			b, err := l.Body()
			if err != nil || string(b) != tc.want {
				t.Fatalf("Body() = %s, %v; want %s", b, err, tc.want)
			}
		})
	}
}

func TestAuthBindTo(t *testing.T) {
	const owner = "@alice:hs"
	cases := []struct {
		name  string
		owner string
		auth  string
		want  string // rebuilt dict with session "S"
		err   error
	}{
		{"password, no identifier: bound to the owner", owner, `{"type":"m.login.password","password":"pw"}`,
			`{"type":"m.login.password","session":"S","identifier":{"type":"m.id.user","user":"@alice:hs"},"password":"pw"}`, nil},
		{"password naming the owner by localpart", owner, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"ALICE"},"password":"pw"}`,
			`{"type":"m.login.password","session":"S","identifier":{"type":"m.id.user","user":"@alice:hs"},"password":"pw"}`, nil},
		{"password naming another user (B2)", owner, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"victim"},"password":"pw"}`, "", canonical.ErrOtherUser},
		{"legacy user naming another (B2)", owner, `{"type":"m.login.password","user":"@victim:hs","password":"pw"}`, "", canonical.ErrOtherUser},
		{"same localpart, other server", owner, `{"type":"m.login.password","user":"@alice:evil","password":"pw"}`, "", canonical.ErrOtherUser},
		{"third-party identifier", owner, `{"type":"m.login.password","medium":"email","address":"a@b","password":"pw"}`, "", canonical.ErrNotAUserID},
		{"identifier without type", owner, `{"type":"m.login.password","identifier":{"user":"victim"},"user":"alice","password":"pw"}`, "", canonical.ErrNoIdentifierType},
		{"unknown stage naming another user", owner, `{"type":"org.example.stage","user":"victim","secret":"x"}`, "", canonical.ErrOtherUser},
		{"unknown stage: only type and session", owner, `{"type":"org.example.stage","secret":"x"}`, `{"type":"org.example.stage","session":"S"}`, nil},
		{"session only", owner, `{"session":"ignored"}`, `{"session":"S"}`, nil},
		{"email stage fields", "", `{"type":"m.login.email.identity","threepid_creds":{"sid":"1","client_secret":"c","extra":"x"}}`,
			`{"type":"m.login.email.identity","session":"S","threepid_creds":{"sid":"1","client_secret":"c"}}`, nil},
		{"email stage without creds", "", `{"type":"m.login.email.identity"}`, "", canonical.ErrBadField},
		{"password without a token owner", "", `{"type":"m.login.password","password":"pw"}`, "", canonical.ErrOtherUser},
		{"recaptcha", owner, `{"type":"m.login.recaptcha","response":"r"}`, `{"type":"m.login.recaptcha","session":"S","response":"r"}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := canonical.ParseAuth(obj(t, tc.auth))
			if err == nil {
				err = a.BindTo(tc.owner)
			}
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v; want %v", err, tc.err)
			}
			if err == nil {
				if got := string(a.Body("S")); got != tc.want {
					t.Fatalf("Body = %s; want %s", got, tc.want)
				}
			}
		})
	}
}

func TestSchemaRebuild(t *testing.T) {
	s := canonical.Schema{"devices": canonical.KindStrings, "erase": canonical.KindBool, "key": canonical.KindObject,
		"name": canonical.KindString, "creds": canonical.KindThreepidCreds}
	got, err := s.Rebuild(obj(t, `{"devices":["A","B"],"erase":false,"key":{"user_id":"@a:hs"},"name":"n","creds":{"sid":"s","client_secret":"c"},"auth":{},"user":"x","other":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if want := `{"creds":{"sid":"s","client_secret":"c"},"devices":["A","B"],"erase":false,"key":{"user_id":"@a:hs"},"name":"n"}`; string(b) != want {
		t.Fatalf("rebuilt %s; want %s", b, want)
	}
	for _, bad := range []string{`{"devices":"A"}`, `{"erase":"yes"}`, `{"key":[1]}`, `{"key":"x"}`, `{"name":1}`, `{"creds":{"sid":"s"}}`, `{"devices":[1]}`} {
		if _, err := s.Rebuild(obj(t, bad)); !errors.Is(err, canonical.ErrBadField) {
			t.Errorf("%s: err = %v; want ErrBadField", bad, err)
		}
	}
}

// TestSchemaDeviceIDs: a device list must name at least one device; a
// missing, null or empty one is refused, never forwarded (homeservers read
// it differently: Dendrite signs out every device).
func TestSchemaDeviceIDs(t *testing.T) {
	s := canonical.Schema{"devices": canonical.KindDeviceIDs}
	for _, tc := range []struct {
		body string
		want error
	}{
		{`{"devices":["A"]}`, nil},
		{`{"devices":["A","B"]}`, nil},
		{`{}`, canonical.ErrMissingField},
		{`{"devices":null}`, canonical.ErrMissingField},
		{`{"devices":[]}`, canonical.ErrMissingField},
		{`{"devices":[""]}`, canonical.ErrBadField},
		{`{"devices":["A",""]}`, canonical.ErrBadField},
		{`{"devices":"A"}`, canonical.ErrBadField},
		{`{"devices":[null]}`, canonical.ErrBadField},
		{`{"devices":{}}`, canonical.ErrBadField},
	} {
		got, err := s.Rebuild(obj(t, tc.body))
		if !errors.Is(err, tc.want) || (tc.want == nil && len(got) != 1) {
			t.Errorf("%s: %v, err %v; want %v", tc.body, got, err, tc.want)
		}
	}
}

func TestQualifyAndSameUser(t *testing.T) {
	for _, tc := range []struct {
		user, server, want string
		ok                 bool
	}{
		{"alice", "hs", "@alice:hs", true},
		{"@alice:hs", "", "@alice:hs", true},
		{"@alice:other", "hs", "@alice:other", true},
		{"alice", "", "", false},
		{"alice:hs", "hs", "", false},
		{"@alice", "hs", "@alice", false},
		{"", "hs", "", false},
	} {
		if got, ok := canonical.Qualify(tc.user, tc.server); got != tc.want || ok != tc.ok {
			t.Errorf("Qualify(%q, %q) = %q, %v; want %q, %v", tc.user, tc.server, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		given string
		want  bool
	}{{"alice", true}, {"ALICE", true}, {"@Alice:hs", true}, {"@alice:HS", false}, {"bob", false}, {"@alice:evil", false}, {"@alice", false}} {
		if got := canonical.SameUser(tc.given, "@alice:hs"); got != tc.want {
			t.Errorf("SameUser(%q) = %v; want %v", tc.given, got, tc.want)
		}
	}
}

func TestPlainUserID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"@alice:hs.example", true}, {"@Al.ice_=-/+9:hs.example:8448", true}, {"@a:[::1]:8448", true},
		{"@victim :hs", false}, {"@ victim:hs", false}, {"@vic\ttim:hs", false}, {"@vi\u017fim:hs", false},
		{"@victim:hs ", false}, {"victim:hs", false}, {"@victim", false}, {"@:hs", false}, {"@a:", false},
		{"@a\u0000b:hs", false}, {"@a%20b:hs", false},
	} {
		if got := canonical.PlainUserID(tc.id); got != tc.want {
			t.Errorf("PlainUserID(%q) = %v; want %v", tc.id, got, tc.want)
		}
	}
}
