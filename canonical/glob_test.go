package canonical

import "testing"

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"@*:example.org", "@alice:example.org", true},
		{"@*:example.org", "@alice:example.org.evil", false},
		{"@*:example.org", "@alice:other.org", false},
		{"@team-*:example.org", "@team-a:example.org", true},
		{"@team-*:example.org", "@team-:example.org", true},
		{"@team-*:example.org", "@teamx:example.org", false},
		{"@alice:example.org", "@alice:example.org", true},
		{"@alice:example.org", "@alice:example.orgx", false},
		{"@*-ops-*:x", "@a-ops-b:x", true},
		{"@*-ops-*:x", "@a-op-b:x", false},
		{"@a*a:x", "@a:x", false},
		{"*", "@anything:x", true},
	}
	for _, tc := range cases {
		if got := Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v; want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}
