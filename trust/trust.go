package trust

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Operations a trusted client may be asked for again (Config.AlwaysAsk).
const (
	DeleteDevice      = "delete_device"       // DELETE /devices/{deviceId}
	DeleteDevices     = "delete_devices"      // POST /delete_devices
	ChangePassword    = "change_password"     // POST /account/password
	Deactivate        = "deactivate"          // POST /account/deactivate
	Add3PID           = "add_3pid"            // POST /account/3pid/add and /account/3pid
	CrossSigningReset = "cross_signing_reset" // POST /keys/device_signing/upload
	LoginToken        = "login_token"         // POST /login/get_token
	Enrol2FA          = "enrol_2fa"           // POST /account/two-factor/totp
	Disable2FA        = "disable_2fa"         // DELETE /account/two-factor/totp
	RegenerateCodes   = "regenerate_recovery_codes"
)

// Operations lists every operation name AlwaysAsk may hold.
var Operations = []string{DeleteDevice, DeleteDevices, ChangePassword, Deactivate, Add3PID,
	CrossSigningReset, LoginToken, Enrol2FA, Disable2FA, RegenerateCodes}

// Config is the trusted-client policy.
type Config struct {
	// Window is how long a client stays trusted after a 2FA stage; 0 turns
	// trusted clients off.
	Window time.Duration `yaml:"window"`
	// AlwaysAsk are the operations that ask for the 2FA stage regardless.
	AlwaysAsk []string `yaml:"always_ask"`
}

// DefaultConfig is 5 minutes, asking again for the operations that take
// over or strip an account, and for a login token (a new login).
func DefaultConfig() Config {
	return Config{Window: 5 * time.Minute,
		AlwaysAsk: []string{Disable2FA, RegenerateCodes, Enrol2FA, Deactivate, ChangePassword, CrossSigningReset, LoginToken}}
}

// Validate reports every problem of c (none: valid), each naming its
// option under trusted_clients.
func (c Config) Validate() []error {
	var errs []error
	if c.Window < 0 || c.Window > 24*time.Hour {
		errs = append(errs, fmt.Errorf("trusted_clients.window: must be between 0 (off) and 24h, not %s", c.Window))
	}
	for _, op := range c.AlwaysAsk {
		if !slices.Contains(Operations, op) {
			errs = append(errs, fmt.Errorf("trusted_clients.always_ask: unknown operation %q (one of %s)", op, strings.Join(Operations, ", ")))
		}
	}
	return errs
}

// Client is who sends a request, as the gateway sees it.
type Client struct {
	UA   string
	Addr string
}

// Store is what the keeper needs of storage.
type Store interface {
	PutTrustedClient(ctx context.Context, c storage.TrustedClient, now time.Time) error
	TrustedClientUntil(ctx context.Context, userID string, tokenHash, clientHash []byte, now time.Time) (time.Time, error)
	ForgetTrustedToken(ctx context.Context, tokenHash []byte) (int, error)
}

var _ Store = storage.Store(nil)

// Keeper grants, checks and forgets trust. Its zero window turns it off.
type Keeper struct {
	cfg   Config
	store Store
	key   []byte
	now   func() time.Time
}

// New returns a keeper; key keys the hashes of tokens and clients (every
// replica must have the same).
func New(cfg Config, store Store, key []byte, now func() time.Time) *Keeper {
	return &Keeper{cfg: cfg, store: store, key: key, now: now}
}

// Enabled reports whether clients are ever trusted.
func (k *Keeper) Enabled() bool { return k != nil && k.cfg.Window > 0 }

// AlwaysAsks reports whether op asks for the 2FA stage even of a trusted client.
func (k *Keeper) AlwaysAsks(op string) bool { return slices.Contains(k.cfg.AlwaysAsk, op) }

func (k *Keeper) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, k.key)
	for _, p := range parts {
		fmt.Fprintf(m, "%d:%s", len(p), p)
	}
	return m.Sum(nil)
}

func (k *Keeper) tokenHash(token string) []byte { return k.mac("token", token) }
func (k *Keeper) clientHash(c Client) []byte    { return k.mac("client", c.UA, c.Addr) }

// Trusted reports whether userID's token from c may skip the 2FA stage of op
// now. It is false when trust is off, op always asks, or there is no token;
// storage errors come back with false.
func (k *Keeper) Trusted(ctx context.Context, userID, token string, c Client, op string) (bool, error) {
	if !k.Enabled() || token == "" || userID == "" || k.AlwaysAsks(op) {
		return false, nil
	}
	_, err := k.store.TrustedClientUntil(ctx, userID, k.tokenHash(token), k.clientHash(c), k.now())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Grant trusts userID's token from c for the window from now (after a
// completed 2FA stage). It does nothing when trust is off or there is no token.
func (k *Keeper) Grant(ctx context.Context, userID, token string, c Client) error {
	if !k.Enabled() || token == "" || userID == "" {
		return nil
	}
	now := k.now()
	return k.store.PutTrustedClient(ctx, storage.TrustedClient{TokenHash: k.tokenHash(token),
		ClientHash: k.clientHash(c), UserID: userID, Until: now.Add(k.cfg.Window)}, now)
}

// Forget ends every trust of token (its logout) and reports how many ended.
func (k *Keeper) Forget(ctx context.Context, token string) (int, error) {
	if !k.Enabled() || token == "" {
		return 0, nil
	}
	return k.store.ForgetTrustedToken(ctx, k.tokenHash(token))
}
