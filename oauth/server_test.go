package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// TestWriteError holds the error answers: a refusal as itself, an outage as
// temporarily_unavailable with the status the Matrix side uses, the unknown
// as server_error.
func TestWriteError(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := &Server{}
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{oauthErr("invalid_grant", "used"), 400, "invalid_grant"},
		{fmt.Errorf("loading: %w", storage.ErrUnavailable), 503, "temporarily_unavailable"},
		{fmt.Errorf("login: %w", homeserver.ErrUnreachable), 502, "temporarily_unavailable"},
		{errors.New("boom"), 500, "server_error"},
	} {
		w := httptest.NewRecorder()
		s.writeError(w, log, c.err)
		var body struct{ Error string }
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != c.status || body.Error != c.code {
			t.Errorf("%v: got %d %q, want %d %q", c.err, w.Code, body.Error, c.status, c.code)
		}
	}
}

// TestLoginHint: only an MSC4198 "mxid:" hint with a well-formed user ID
// fills the username field; anything else is ignored.
func TestLoginHint(t *testing.T) {
	for _, tc := range []struct{ hint, want string }{
		{"mxid:@alice:example.org", "@alice:example.org"},
		{"mxid:@alice:example.org:8448", "@alice:example.org:8448"},
		{"mxid:@alice:[::1]:8448", "@alice:[::1]:8448"},
		{"mxid:@=41lice.x_y/z:example.org", "@=41lice.x_y/z:example.org"},
		{"", ""},
		{"alice", ""},
		{"@alice:example.org", ""},
		{"email:alice@example.org", ""},
		{"mxid:alice", ""},
		{"mxid:@alice", ""},
		{"mxid:@al ice:example.org", ""},
		{"mxid:@alice:example.org\"><script>", ""},
		{"mxid:@älice:example.org", ""},
		{"mxid:@" + strings.Repeat("a", 300) + ":example.org", ""},
	} {
		if got := loginHint(tc.hint); got != tc.want {
			t.Errorf("loginHint(%q) = %q, want %q", tc.hint, got, tc.want)
		}
	}
}
