package admin

import (
	"context"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/pages"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// APIPrefix is where the admin API is served; PagePath is the admin page.
const (
	APIPrefix = "/_matrix2fa/admin/v1/"
	PagePath  = "/_matrix2fa/admin/"
)

// Accounts is what the admin needs of the 2FA domain (account.Service).
type Accounts interface {
	Enabled(ctx context.Context, userID string) (bool, error)
	Status(ctx context.Context, userID string) (account.Status, error)
	AuditEvents(ctx context.Context, userID string, limit int) ([]storage.AuditEvent, error)
	AdminReset(ctx context.Context, userID, operator string) (bool, error)
	Unlock(ctx context.Context, userID, operator string) error
	VerifyTOTP(ctx context.Context, userID, code string) error
	VerifyRecovery(ctx context.Context, userID, code string) error
	Params() account.Params
}

// Homeserver is what the admin needs of the homeserver client.
type Homeserver interface {
	Prober
	WhoAmI(ctx context.Context, accessToken string) (homeserver.WhoAmI, error)
	PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error)
	Logout(ctx context.Context, accessToken string) error
}

// Store is what the admin needs of the store.
type Store interface {
	ListUsers(ctx context.Context, q storage.UserQuery) ([]storage.UserRow, error)
	CountUsers(ctx context.Context, now time.Time) (storage.UserCounts, error)
	QueryAudit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEvent, error)
	CreateSession(ctx context.Context, s storage.UIASession) error
	Session(ctx context.Context, id string) (storage.UIASession, error)
	TakeSession(ctx context.Context, id string) (storage.UIASession, error)
}

// Deps are the admin's dependencies.
type Deps struct {
	Config   Config
	Accounts Accounts
	HS       Homeserver
	Store    Store
	// Checker asks whether a user is a homeserver admin (default:
	// HomeserverChecker over HS).
	Checker Checker
	// MACKey keys the page's CSRF tokens.
	MACKey []byte
	// PublicBaseURL and Proxies decide whether cookies are Secure.
	PublicBaseURL string
	Proxies       ratelimit.Proxies
	Now           func() time.Time
}

// Admin serves the admin API and page.
type Admin struct {
	cfg     Config
	acc     Accounts
	hs      Homeserver
	store   Store
	checker Checker
	csrf    pages.CSRF
	baseURL string
	proxies ratelimit.Proxies
	now     func() time.Time
}

// New returns the admin API and page.
func New(d Deps) *Admin {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Checker == nil {
		d.Checker = HomeserverChecker{HS: d.HS}
	}
	return &Admin{cfg: d.Config, acc: d.Accounts, hs: d.HS, store: d.Store, checker: d.Checker,
		csrf: pages.NewCSRF(d.MACKey), baseURL: d.PublicBaseURL, proxies: d.Proxies, now: d.Now}
}

// secure reports whether cookies must be Secure for r.
func (a *Admin) secure(r *http.Request) bool { return pages.Secure(r, a.baseURL, a.proxies) }
