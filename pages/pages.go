package pages

import (
	"context"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/held"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Accounts is what the pages need of the 2FA domain (account.Service).
type Accounts interface {
	Enabled(ctx context.Context, userID string) (bool, error)
	Params() account.Params
	VerifyTOTP(ctx context.Context, userID, code string) error
	VerifyRecovery(ctx context.Context, userID, code string) error
	VerifyEmail(ctx context.Context, userID, code string) error
	Status(ctx context.Context, userID string) (account.Status, error)
	Enrol(ctx context.Context, userID string) (account.Enrolment, error)
	Confirm(ctx context.Context, userID, code string) ([]string, error)
	Regenerate(ctx context.Context, userID string) ([]string, error)
	Disable(ctx context.Context, userID string) error
	// Record appends an audit event (bot tokens made and revoked).
	Record(ctx context.Context, userID, kind, detail string)
	// ForgetBrowsers forgets every remembered browser of userID.
	ForgetBrowsers(ctx context.Context, userID, reason string) error
}

// Homeserver is what the pages need of the homeserver.
type Homeserver interface {
	PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error)
	Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error)
	CheckPassword(ctx context.Context, userID id.UserID, password string) (bool, error)
	Logout(ctx context.Context, accessToken string) error
	Devices(ctx context.Context, accessToken string) ([]homeserver.Device, error)
	Device(ctx context.Context, accessToken, deviceID string) (homeserver.Device, error)
	DeleteDevice(ctx context.Context, accessToken string, userID id.UserID, password, deviceID string) error
	WithPassword(ctx context.Context, accessToken, method, path string, userID id.UserID, password string, body map[string]any) error
}

// Sealer encrypts what the pages keep for a user, and derives keys.
type Sealer interface {
	held.Sealer
	MACKey(purpose string) []byte
}

// Sessions is what the self-service page needs of the session store.
type Sessions interface {
	Session(ctx context.Context, id string) (storage.UIASession, error)
	CreateSession(ctx context.Context, s storage.UIASession) error
	SetSessionData(ctx context.Context, id string, data []byte) error
	TakeSession(ctx context.Context, id string) (storage.UIASession, error)
}

// Codes is what the pages need for e-mail codes (the gateway).
type Codes interface {
	flows.CodeSender
	// Factors are the 2FA stages userID may use.
	Factors(ctx context.Context, userID string) []string
	// RememberEmails reads and remembers the addresses of token's owner.
	RememberEmails(ctx context.Context, userID, token string)
}

// Policy is what the pages need of the enforcement policy (policy.Policy):
// the sign-in and OAuth pages walk a user under it through enrolment, and
// the self-service page says how long is left and refuses to disable 2FA
// while it applies.
type Policy interface {
	On() bool
	Evaluate(ctx context.Context, userID string) (policy.State, error)
}

// Config is the pages' part of the configuration.
type Config struct {
	// SSOProviderID and SSOProviderName name the "Sign in with 2FA" provider.
	SSOProviderID, SSOProviderName string
	// RedirectAllowlist lists URL prefixes the sign-in page may return to.
	RedirectAllowlist []string
	// FallbackCompletesLogin lets the fallback page complete a held /login.
	FallbackCompletesLogin bool
	// PublicBaseURL is the URL clients reach the gateway at ("" when not
	// configured); an https one makes every cookie Secure.
	PublicBaseURL string
	// RememberTTL is how long "remember this browser" skips the code on the
	// sign-in and OAuth authorization pages (0: not offered).
	RememberTTL time.Duration
	// MaxBotTokens is how many tokens for bots and scripts a user may hold
	// (0: not offered).
	MaxBotTokens int
}

// Deps are the pages' dependencies.
type Deps struct {
	Config   Config
	Engine   *uia.Engine
	Accounts Accounts
	HS       Homeserver
	Held     *held.Keeper
	Store    Sessions
	Box      Sealer
	Proxies  ratelimit.Proxies
	// Upstream serves what is not the pages' (another identity provider's
	// sign-in): the homeserver, unchanged.
	Upstream http.Handler
	// Codes mails e-mail codes (the gateway).
	Codes Codes
	// OAuth is the OAuth server the authorization page works for (nil: no page).
	OAuth OAuth
	// Policy is the enforcement policy (nil: none).
	Policy Policy
	// Remember keeps remembered browsers and bot tokens.
	Remember Remembered
	Now      func() time.Time
}

// Remembered is what the pages need of the store for remembered browsers and
// bot tokens (storage.RememberStore).
type Remembered interface {
	PutBrowser(ctx context.Context, b storage.RememberedBrowser) error
	Browser(ctx context.Context, userID string, hash []byte, now time.Time) (storage.RememberedBrowser, error)
	Browsers(ctx context.Context, userID string, now time.Time) ([]storage.RememberedBrowser, error)
	DeleteBrowser(ctx context.Context, userID string, hash []byte) (bool, error)
	DeleteBrowsers(ctx context.Context, userID string) (int, error)
	PutBotToken(ctx context.Context, t storage.BotToken, limit int) error
	BotTokens(ctx context.Context, userID string) ([]storage.BotToken, error)
	TakeBotToken(ctx context.Context, userID, id string) (storage.BotToken, error)
}

// Pages serves the HTML pages: the UIA fallback pages, "Sign in with 2FA"
// and the self-service page.
type Pages struct {
	cfg      Config
	engine   *uia.Engine
	acc      Accounts
	hs       Homeserver
	held     *held.Keeper
	store    Sessions
	box      Sealer
	csrf     csrf
	proxies  ratelimit.Proxies
	upstream http.Handler
	codes    Codes
	oauth    OAuth
	policy   Policy
	remember Remembered
	now      func() time.Time
}

// New returns the pages.
func New(d Deps) *Pages {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Policy == nil || !d.Policy.On() {
		d.Policy = nil
	}
	return &Pages{cfg: d.Config, engine: d.Engine, acc: d.Accounts, hs: d.HS, held: d.Held, store: d.Store, box: d.Box,
		csrf: csrf{key: d.Box.MACKey("csrf")}, proxies: d.Proxies, upstream: d.Upstream, codes: d.Codes, oauth: d.OAuth, policy: d.Policy,
		remember: d.Remember, now: d.Now}
}

// origin is where r comes from, as the gateway sees it.
func (p *Pages) origin(r *http.Request) held.Origin {
	return held.Origin{Addr: p.proxies.ClientAddr(r), UA: r.UserAgent()}
}
