package oauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Paths of the gateway's own OAuth endpoints; the server metadata is under
// the Matrix client API (MetadataPath after a version prefix).
const (
	Prefix        = "/_matrix2fa/oauth2/"
	AuthorizePath = Prefix + "authorize"
	TokenPath     = Prefix + "token"
	RegisterPath  = Prefix + "register"
	RevokePath    = Prefix + "revoke"
	MetadataPath  = "/auth_metadata"
)

// MetadataPrefixes are the version prefixes the server metadata is served
// under: the spec's v1 and MSC2965's unstable one.
var MetadataPrefixes = []string{"/_matrix/client/v1", "/_matrix/client/unstable/org.matrix.msc2965"}

// Homeserver is what the server needs of the homeserver (homeserver.Client).
type Homeserver interface {
	WhoAmI(ctx context.Context, accessToken string) (homeserver.WhoAmI, error)
	Logout(ctx context.Context, accessToken string) error
	Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error)
	PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error)
}

// Sealer encrypts what the server keeps of a homeserver login
// (account.SecretBox).
type Sealer interface {
	Seal(owner string, plain []byte) ([]byte, error)
	Open(owner, keyID string, sealed []byte) ([]byte, error)
	KeyID() string
}

// Server is the OAuth 2.0 authorization server.
type Server struct {
	cfg   Config
	store storage.OAuthStore
	hs    Homeserver
	box   Sealer
	log   logrus.FieldLogger
	now   func() time.Time
	reg   regCache
}

// New returns a server; now is the clock.
func New(cfg Config, store storage.OAuthStore, hs Homeserver, box Sealer, log logrus.FieldLogger, now func() time.Time) *Server {
	cfg.Defaults()
	if now == nil {
		now = time.Now
	}
	return &Server{cfg: cfg, store: store, hs: hs, box: box, log: log, now: now}
}

// Enabled reports whether the OAuth 2.0 API is on.
func (s *Server) Enabled() bool { return s.cfg.Enabled }

// SignInTTL is how long the authorization page waits for a second factor.
func (s *Server) SignInTTL() time.Duration { return s.cfg.SignInTTL }

// Error is an OAuth 2.0 error response (RFC 6749 §5.2, RFC 7591 §3.2.2).
type Error struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
}

func (e *Error) Error() string { return "oauth: " + e.Code + ": " + e.Description }

func oauthErr(code, description string) *Error {
	return &Error{Code: code, Description: description, status: http.StatusBadRequest}
}

// CORS allows every origin on the OAuth endpoints, as the Matrix spec asks
// of every client API endpoint (browser clients call them from their origin).
func CORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
}

// Preflight answers a CORS preflight request to an OAuth endpoint.
func Preflight(w http.ResponseWriter) {
	CORS(w.Header())
	w.WriteHeader(http.StatusNoContent)
}

// writeJSON answers v with status, never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	CORS(h)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers err: an *Error as itself; the database or the
// homeserver out of reach as temporarily_unavailable (503, 502), anything
// else as a logged server_error.
func (s *Server) writeError(w http.ResponseWriter, l logrus.FieldLogger, err error) {
	var oe *Error
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		l.WithError(err).Error("oauth: database unavailable")
		oe = &Error{Code: "temporarily_unavailable", status: http.StatusServiceUnavailable}
	case errors.Is(err, homeserver.ErrUnreachable):
		l.WithError(err).Error("oauth: homeserver unreachable")
		oe = &Error{Code: "temporarily_unavailable", status: http.StatusBadGateway}
	case !errors.As(err, &oe):
		l.WithError(err).Error("oauth: internal error")
		oe = &Error{Code: "server_error", status: http.StatusInternalServerError}
	default:
		l.WithFields(logrus.Fields{"error_code": oe.Code, "detail": oe.Description}).Info("oauth: refused")
	}
	writeJSON(w, oe.status, oe)
}

// hash is how tokens and codes are stored: their SHA-256.
func hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func sealOwner(userID string) string { return "oauth-login:" + userID }

// seal encrypts a homeserver login for userID: key ID, a NUL, the ciphertext.
func (s *Server) seal(userID string, login []byte) ([]byte, error) {
	sealed, err := s.box.Seal(sealOwner(userID), login)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(s.box.KeyID()), 0), sealed...), nil
}

// openLogin decrypts a sealed homeserver login of userID.
func (s *Server) openLogin(userID string, data []byte) (*homeLogin, error) {
	keyID, sealed, ok := bytes.Cut(data, []byte{0})
	if !ok {
		return nil, errors.New("oauth: malformed sealed login")
	}
	plain, err := s.box.Open(sealOwner(userID), string(keyID), sealed)
	if err != nil {
		return nil, err
	}
	var l homeLogin
	if err := json.Unmarshal(plain, &l); err != nil || l.AccessToken == "" {
		return nil, errors.New("oauth: malformed sealed login")
	}
	return &l, nil
}

// homeLogin is what the server keeps of the homeserver's login response
// (sealed: the tokens never rest in the clear).
type homeLogin struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	AccessToken string `json:"access_token"`
	// RefreshToken is the homeserver's own refresh token ("" when it gave
	// none, as Dendrite), and ExpiresAt when AccessToken expires (zero: never).
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
}

// logout logs a kept homeserver login out (an unused code, a revoked grant).
func (s *Server) logout(ctx context.Context, userID string, sealed []byte, l logrus.FieldLogger) {
	login, err := s.openLogin(userID, sealed)
	if err == nil {
		err = s.hs.Logout(context.WithoutCancel(ctx), login.AccessToken)
	}
	if err != nil {
		l.WithError(err).WithField("user_id", userID).Error("oauth: logging a login out at the homeserver failed")
	}
}

// Sweep logs out the logins of expired, unredeemed authorization codes.
func (s *Server) Sweep(ctx context.Context) {
	for {
		expired, err := s.store.ExpiredOAuthCodes(ctx, s.now(), 100)
		if err != nil {
			s.log.WithError(err).Error("oauth: listing expired codes")
			return
		}
		for _, c := range expired {
			if taken, err := s.store.TakeOAuthCode(ctx, c.Hash); err == nil {
				s.logout(ctx, taken.UserID, taken.Login, s.log)
			}
		}
		if len(expired) < 100 {
			return
		}
	}
}
