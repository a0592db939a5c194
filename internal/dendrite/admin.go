package dendrite

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// SharedSecret is the registration shared secret of the -ci configuration
// the harness generates (Dendrite's generate-config sets it for Complement).
const SharedSecret = "complement"

// RegisterAdmin registers localpart as a homeserver admin through the shared
// secret registration API (POST /_synapse/admin/v1/register, which Dendrite
// serves too, with "admin": true) and returns the logged-in user.
func (s *Server) RegisterAdmin(ctx context.Context, localpart, password string) (*User, error) {
	const path = "/_synapse/admin/v1/register"
	status, body, err := s.Do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, newHTTPError(http.MethodGet, path, status, body)
	}
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(body, &n); err != nil || n.Nonce == "" {
		return nil, fmt.Errorf("dendrite: GET %s: no nonce in %s", path, body)
	}
	mac := hmac.New(sha1.New, []byte(SharedSecret))
	mac.Write([]byte(strings.Join([]string{n.Nonce, localpart, password, "admin"}, "\x00")))
	req := map[string]any{"nonce": n.Nonce, "username": localpart, "password": password, "admin": true,
		"mac": hex.EncodeToString(mac.Sum(nil))}
	if status, body, err = s.Do(ctx, http.MethodPost, path, "", req); err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, newHTTPError(http.MethodPost, path, status, body)
	}
	return s.Login(ctx, localpart, password)
}
