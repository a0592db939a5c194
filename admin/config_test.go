package admin

import "testing"

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		c    Config
		errs int
	}{
		{"off", Config{}, 0},
		{"on with nobody", Config{Enabled: true}, 1},
		{"homeserver admins", Config{Enabled: true, HomeserverAdmins: true}, 0},
		{"bad admin", Config{Enabled: true, Admins: []string{"alice"}}, 1},
		{"scoped without patterns", Config{Enabled: true, Scoped: []ScopedAdmin{{User: "@a:x"}}}, 1},
		{"bad pattern", Config{Enabled: true, Scoped: []ScopedAdmin{{User: "@a:x", Users: []string{"team-*"}}}}, 1},
		{"bad token hash", Config{Enabled: true, TokenSHA256: "abc"}, 1},
		{"token", Config{Enabled: true, TokenSHA256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}, 0},
	}
	for _, tc := range cases {
		if errs := tc.c.Validate(); len(errs) != tc.errs {
			t.Errorf("%s: Validate = %v; want %d problems", tc.name, errs, tc.errs)
		}
	}
}

func TestTokenMatches(t *testing.T) {
	c := Config{TokenSHA256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"} // sha256("foo")
	if !c.tokenMatches("foo") || c.tokenMatches("bar") || c.tokenMatches("") || (Config{}).tokenMatches("") {
		t.Error("tokenMatches is wrong")
	}
}
