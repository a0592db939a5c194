package gateway

import "testing"

// TestPolicyGuards holds which raw paths the enforcement policy lets a
// blocked user reach: only the exact spelling of what enrolling needs.
func TestPolicyGuards(t *testing.T) {
	for _, c := range []struct {
		path    string
		guarded bool
	}{
		{"/_matrix/client/v3/account/whoami", false},
		{"/_matrix/client/r0/logout", false},
		{"/_matrix/client/v3/logout/all", false},
		{"/_matrix/client/v3/login", false},
		{"/_matrix/client/unstable/org.example/account/two-factor/totp", false},
		{"/_matrix/client/v3/account/two-factor", false},
		{"/_matrix2fa/", false},
		{"/.well-known/matrix/client", false},
		{"/_matrix/client/v3/sync", true},
		{"/_matrix/client/v3/sync/../logout", true},
		{"/_matrix/client/v3/rooms/!r/state/m.room.name/../../../../account/whoami", true},
		{"/_matrix/client/v3/account/two-factor/../../../rooms/!r/invite", true},
		{"/_matrix/client/v3/sync/..%2Flogout", true},
		{"/_matrix/client/v3/account/who%61mi", true},
		{"/_matrix/client/v3//logout", true},
		{"/_matrix/client/v3/logout/", true},
		{"/_matrix/client/V3/logout", true},
		{"/_matrix/client/v3/LOGOUT", true},
		{"/_matrix/client/x/y/logout", true},
		{"//_matrix/client/v3/sync", true},
		{"/_MATRIX/client/v3/sync", true},
		{"/_synapse/admin/v1/users", true},
		{"/x/../_matrix/client/v3/sync", true},
		{"/%5Fmatrix/client/v3/sync", true},
	} {
		if got := policyGuards(c.path); got != c.guarded {
			t.Errorf("policyGuards(%q) = %v, want %v", c.path, got, c.guarded)
		}
	}
}
