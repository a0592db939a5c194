package provider

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
)

// Prefix is where the provider API is served.
const Prefix = "/_matrix2fa/provider/v1/"

// Config is the provider API's part of the configuration.
type Config struct {
	// SecretSHA256 is the hex SHA-256 of the shared secret; "" turns the API
	// off (404).
	SecretSHA256 string `yaml:"secret_sha256"`
}

// Validate returns every problem with c.
func (c Config) Validate() []error {
	if c.SecretSHA256 == "" {
		return nil
	}
	if b, err := hex.DecodeString(c.SecretSHA256); err != nil || len(b) != sha256.Size {
		return []error{fmt.Errorf("provider.secret_sha256: must be 64 hex digits (printf %%s \"$SECRET\" | sha256sum)")}
	}
	return nil
}

// Accounts is what the provider API needs of the 2FA domain.
type Accounts interface {
	flows.Verifier
	Enabled(ctx context.Context, userID string) (bool, error)
	EnabledFold(ctx context.Context, userID string) (bool, error)
}

// Provider serves the provider API.
type Provider struct {
	secret []byte // SHA-256 of the shared secret, nil when off
	acc    Accounts
}

// New returns the provider API.
func New(cfg Config, acc Accounts) *Provider {
	p := &Provider{acc: acc}
	if b, err := hex.DecodeString(cfg.SecretSHA256); err == nil && len(b) == sha256.Size {
		p.secret = b
	}
	return p
}

// authorize checks the shared secret (Authorization: Bearer) in constant
// time and returns the path's user ID.
func (p *Provider) authorize(r *http.Request) (string, error) {
	if p.secret == nil {
		return "", httperr.ErrAdminOff
	}
	scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	if !strings.EqualFold(scheme, "Bearer") || len(r.Header.Values("Authorization")) != 1 || subtle.ConstantTimeCompare(got[:], p.secret) != 1 {
		httpx.Logger(r).Warn("provider API: missing or wrong shared secret")
		return "", httperr.ErrBadSecret
	}
	u, err := url.PathUnescape(mux.Vars(r)["userId"])
	if err != nil {
		return "", httperr.ErrBadParam
	}
	if local, _, err := id.UserID(u).ParseAndValidateRelaxed(); err != nil || local == "" || len(u) > 255 {
		return "", httperr.ErrBadParam
	}
	return u, nil
}

// Enabled is GET users/{userId}: {"enabled": bool}. It answers as a
// homeserver resolves a login's user: true when any user whose ID equals
// the given one up to letter case has 2FA (homeservers fold the localpart),
// so a caller asking about the name as typed never falls open.
func (p *Provider) Enabled(w http.ResponseWriter, r *http.Request) {
	userID, err := p.authorize(r)
	if err == nil {
		var on bool
		if on, err = p.acc.EnabledFold(r.Context(), userID); err == nil {
			httpx.WriteJSON(w, http.StatusOK, map[string]bool{"enabled": on})
			return
		}
	}
	httpx.WriteError(w, r, err)
}

// canonical refuses a user ID that is not itself enrolled while a case
// variant of it is: the code must be checked for the user the homeserver
// logged in, by its exact ID (httperr.ErrNotCanonical).
func (p *Provider) canonical(r *http.Request, userID string) error {
	exact, err := p.acc.Enabled(r.Context(), userID)
	if err != nil || exact {
		return err
	}
	if folded, err := p.acc.EnabledFold(r.Context(), userID); err != nil || folded {
		if err == nil {
			err = httperr.ErrNotCanonical
		}
		return err
	}
	return nil
}

// Verify is POST users/{userId}/verify {"code": "…"}: a TOTP or recovery
// code, consumed when valid (200 {"valid": true}); a wrong or used code is
// 403 M_FORBIDDEN and counts toward the lockout; a locked user is 429.
func (p *Provider) Verify(w http.ResponseWriter, r *http.Request) {
	userID, err := p.authorize(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	r = httpx.WithLogger(r, httpx.Logger(r).WithField("user_id", userID))
	body, err := httpx.ReadBody(w, r)
	var req struct {
		Code string `json:"code"`
	}
	if err == nil {
		if _, err = httpx.ParseObject(body); err == nil && json.Unmarshal(body, &req) != nil {
			err = httperr.ErrBadJSON
		}
	}
	if err == nil {
		err = p.canonical(r, userID)
	}
	if err == nil {
		err = flows.VerifyEither(r.Context(), p.acc, userID, req.Code)
	}
	if err != nil {
		if errors.Is(err, account.ErrInvalidCode) {
			httpx.Logger(r).WithError(err).Info("provider API: code refused")
		}
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r).Info("provider API: code accepted")
	httpx.WriteJSON(w, http.StatusOK, map[string]bool{"valid": true})
}
