package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
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
