package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"
)

// ssoRoutes registers the "Sign in with 2FA" page (to be written).
func (g *Gateway) ssoRoutes(r *mux.Router) {}

// redeemLoginToken exchanges a loginToken issued by the sign-in page for its
// held login; it returns false for tokens it did not issue (they go to the
// homeserver).
func (g *Gateway) redeemLoginToken(w http.ResponseWriter, r *http.Request, token string, body map[string]json.RawMessage) bool {
	return false
}
