package gateway

import (
	"context"
	"errors"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/admin"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/held"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/oauth"
	"github.com/matrix-2fa/matrix-2fa/pages"
	"github.com/matrix-2fa/matrix-2fa/policy"
	"github.com/matrix-2fa/matrix-2fa/provider"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/trust"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

// Config is the gateway's part of the configuration.
type Config struct {
	// LoginTTL is how long a held login waits for its second factor.
	LoginTTL time.Duration
	// TokenTTL is the lifetime of a loginToken from the sign-in page.
	TokenTTL time.Duration
	// UIATTL is the lifetime of a UIA session.
	UIATTL time.Duration
	// SSOProviderID and SSOProviderName name the "Sign in with 2FA" provider.
	SSOProviderID   string
	SSOProviderName string
	// RedirectAllowlist lists URL prefixes the sign-in page may return to.
	RedirectAllowlist []string
	// ForbidBarePassword answers a correct bare password of an enrolled user
	// with 403 M_FORBIDDEN (pointing to "Sign in with 2FA") instead of the
	// 401 login challenge, for deployments whose clients cannot do UIA on /login.
	ForbidBarePassword bool
	// SweepInterval is how often expired held logins are logged out upstream.
	SweepInterval time.Duration
	// PasswordWithCode accepts the TOTP code typed right after the password
	// (on /login and in the homeserver's password stage) from clients that
	// know nothing else.
	PasswordWithCode bool
	// HidePasswordFlow leaves m.login.password out of GET /login, so clients
	// that can do SSO offer only "Sign in with 2FA".
	HidePasswordFlow bool
	// MaxHeld is how many held logins (password right, second factor
	// pending) a user may have at once; a new one retires the oldest.
	MaxHeld int
	// FallbackCompletesLogin lets the fallback page complete a held /login
	// (off by default: such a link is a phishing aid, see spec/protocol.md).
	FallbackCompletesLogin bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (rate limits, the sign-in origin shown on pages).
	TrustedProxies ratelimit.Proxies
	// RateEvery and RateBurst limit the unauthenticated entry points (POST
	// /login, the sign-in, fallback and self-service forms) per client
	// address: RateBurst at once, one more every RateEvery; 0 turns it off.
	RateEvery time.Duration
	RateBurst int
	// BodyTimeout bounds reading the body of a request the gateway reads
	// itself; PassThroughBodyTimeout that of a request streamed through.
	BodyTimeout            time.Duration
	PassThroughBodyTimeout time.Duration
	// ReadEmails reads users' verified e-mail addresses from the homeserver
	// when it can (for notices), also without e-mail codes.
	ReadEmails bool
	// PublicBaseURL is the URL clients reach the gateway at ("" when not
	// configured): an https one marks every cookie Secure.
	PublicBaseURL string
	// AdminAPI passes the homeserver's admin APIs (/_synapse/admin,
	// /_dendrite/admin) through; off, they are refused (403).
	AdminAPI bool
	// Admin configures the gateway's own admin API and page (off by default).
	Admin admin.Config
	// Provider configures the provider API (off without a secret).
	Provider provider.Config
	// OAuth configures the OAuth 2.0 API (off by default; its issuer is
	// PublicBaseURL).
	OAuth oauth.Config
	// Policy is the enforcement policy (off by default).
	Policy policy.Config
	// RememberTTL is how long "remember this browser" skips the code on the
	// sign-in page (0: not offered).
	RememberTTL time.Duration
	// MaxBotTokens is how many tokens for bots and scripts a user may make
	// on the account page (0: not offered).
	MaxBotTokens int
	// TrustedClients lets a token from the same client skip the 2FA stage
	// for a while after one (off with a zero window).
	TrustedClients trust.Config
	// VersionsCacheTTL is how long the homeserver's answer to an
	// unauthenticated GET /_matrix/client/versions is served from memory
	// (0: not cached; see versions.go).
	VersionsCacheTTL time.Duration
}

// Homeserver is what the gateway needs of the homeserver client
// (homeserver.Client).
type Homeserver interface {
	WhoAmI(ctx context.Context, accessToken string) (homeserver.WhoAmI, error)
	Do(ctx context.Context, method, pathAndQuery string, header http.Header, body []byte) (*homeserver.Response, error)
	Login(ctx context.Context, body []byte, header http.Header) (*homeserver.Response, error)
	Logout(ctx context.Context, accessToken string) error
	PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error)
	Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error)
	CheckPassword(ctx context.Context, userID id.UserID, password string) (bool, error)
	SetDeviceDisplayName(ctx context.Context, accessToken string, deviceID id.DeviceID, name string) error
	EmailAddresses(ctx context.Context, accessToken string) ([]string, error)
	Devices(ctx context.Context, accessToken string) ([]homeserver.Device, error)
	Device(ctx context.Context, accessToken, deviceID string) (homeserver.Device, error)
	DeleteDevice(ctx context.Context, accessToken string, userID id.UserID, password, deviceID string) error
	WithPassword(ctx context.Context, accessToken, method, path string, userID id.UserID, password string, body map[string]any) error
	CheckedHeader(r *http.Request, accessToken string) http.Header
	WithOrigin(ctx context.Context, r *http.Request) context.Context
	Proxy() http.Handler
}

// Accounts is what the gateway needs of the 2FA domain (account.Service).
type Accounts interface {
	pages.Accounts
	admin.Accounts
	EnabledFold(ctx context.Context, userID string) (bool, error)
	RecordRefused(ctx context.Context, userID, detail string)
	NewEmailCode(ctx context.Context, userID string) (string, error)
	VerifyEmail(ctx context.Context, userID, code string) error
	RememberEmails(ctx context.Context, userID string, addresses []string) error
	Emails(ctx context.Context, userID string) ([]string, error)
	ForgetBrowsers(ctx context.Context, userID, reason string) error
}

// Options are the gateway's dependencies.
type Options struct {
	Config     Config
	Homeserver Homeserver
	Accounts   Accounts
	Store      storage.Store
	Box        pages.Sealer
	Logger     logrus.FieldLogger
	Now        func() time.Time
	// Metrics records requests, held logins and UIA challenges (nil: none).
	Metrics *metrics.Metrics
	// Mailer sends e-mail codes; nil turns them off.
	Mailer CodeMailer
}

// Gateway is the HTTP front of matrix-2fa.
type Gateway struct {
	cfg    Config
	hs     Homeserver
	acc    Accounts
	store  storage.Store
	engine *uia.Engine
	held   *held.Keeper
	pages  *pages.Pages
	admin  *admin.Admin
	prov   *provider.Provider
	oauth  *oauth.Server
	policy *policy.Policy
	trust  *trust.Keeper
	log    logrus.FieldLogger
	now    func() time.Time
	proxy  http.Handler
	router *mux.Router
	// proxies and limiter: who the client is, and its request budget on the
	// unauthenticated entry points.
	proxies ratelimit.Proxies
	limiter *ratelimit.Limiter
	metrics *metrics.Metrics
	mailer  CodeMailer
	// debug: the logger writes debug lines (pass-through requests are
	// logged only then).
	debug bool
	// versions caches GET /_matrix/client/versions.
	versions versionsCache
	// serverName is the homeserver's server name, learnt from the first user
	// ID it reports (whoami, login); nil until then.
	serverName atomic.Pointer[string]
}

// learnServerName records the server name of a user ID the homeserver gave.
func (g *Gateway) learnServerName(userID string) {
	if g.serverName.Load() != nil {
		return
	}
	if _, server, ok := strings.Cut(userID, ":"); ok && server != "" {
		g.serverName.Store(&server)
	}
}

// New builds a gateway.
func New(o Options) *Gateway {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Config.SweepInterval <= 0 {
		o.Config.SweepInterval = 10 * time.Second
	}
	if o.Config.MaxHeld <= 0 {
		o.Config.MaxHeld = 3
	}
	if o.Config.BodyTimeout <= 0 {
		o.Config.BodyTimeout = 30 * time.Second
	}
	if o.Config.PassThroughBodyTimeout <= 0 {
		o.Config.PassThroughBodyTimeout = 10 * time.Minute
	}
	g := &Gateway{cfg: o.Config, hs: o.Homeserver, acc: o.Accounts, store: o.Store, log: o.Logger, now: o.Now,
		proxy: o.Homeserver.Proxy(), proxies: o.Config.TrustedProxies, limiter: ratelimit.New(o.Config.RateEvery, o.Config.RateBurst), metrics: o.Metrics, mailer: o.Mailer, debug: debugEnabled(o.Logger)}
	g.engine = uia.New(o.Store, o.Config.UIATTL, flows.TOTPStage{V: o.Accounts}, flows.RecoveryStage{V: o.Accounts},
		flows.EmailStage{V: o.Accounts, Send: g}, flows.PasswordStage{HS: o.Homeserver})
	g.engine.SetClock(o.Now)
	g.engine.OnStart(func(kind storage.SessionKind) {
		if kind == storage.KindUIA || kind == storage.KindHeldLogin {
			o.Metrics.UIAChallenge()
		}
	})
	g.held = held.New(held.Config{LoginTTL: o.Config.LoginTTL, TokenTTL: o.Config.TokenTTL, MaxPerUser: o.Config.MaxHeld,
		SweepInterval: o.Config.SweepInterval, Observe: o.Metrics.HeldLogin}, o.Homeserver, o.Store, o.Box, g.engine, o.Logger, o.Now)
	ocfg := o.Config.OAuth
	ocfg.Issuer, ocfg.AccountURI = oauth.Issuer(o.Config.PublicBaseURL), oauth.Issuer(o.Config.PublicBaseURL)+pages.SelfServicePath
	ocfg.AccountActions = pages.AccountActions
	g.oauth = oauth.New(ocfg, o.Store, o.Homeserver, o.Box, o.Logger, o.Now)
	g.policy = policy.New(o.Config.Policy, o.Store, o.Accounts, admin.HomeserverChecker{HS: o.Homeserver}, o.Now)
	g.pages = pages.New(pages.Deps{Config: pages.Config{SSOProviderID: o.Config.SSOProviderID, SSOProviderName: o.Config.SSOProviderName,
		RedirectAllowlist: o.Config.RedirectAllowlist, FallbackCompletesLogin: o.Config.FallbackCompletesLogin,
		PublicBaseURL: o.Config.PublicBaseURL, RememberTTL: o.Config.RememberTTL, MaxBotTokens: o.Config.MaxBotTokens},
		Engine: g.engine, Accounts: o.Accounts, HS: o.Homeserver, Held: g.held, Store: o.Store, Box: o.Box,
		Proxies: o.Config.TrustedProxies, Upstream: g.proxy, Codes: g, OAuth: g.oauth, Policy: g.policy, Remember: o.Store, Now: o.Now})
	g.admin = admin.New(admin.Deps{Config: o.Config.Admin, Accounts: o.Accounts, HS: o.Homeserver, Store: o.Store,
		MACKey: o.Box.MACKey("admin-csrf"), PublicBaseURL: o.Config.PublicBaseURL, Proxies: o.Config.TrustedProxies, Now: o.Now})
	g.prov = provider.New(o.Config.Provider, o.Accounts)
	g.trust = trust.New(o.Config.TrustedClients, o.Store, o.Box.MACKey("trusted-clients"), o.Now)
	g.router = g.routes()
	return g
}

// route is one entry of the route table: a path under each of prefixes.
type route struct {
	methods  []string
	prefixes []string
	path     string
	handler  http.HandlerFunc
}

var (
	get, post, getPost = []string{http.MethodGet}, []string{http.MethodPost}, []string{http.MethodGet, http.MethodPost}
	del                = []string{http.MethodDelete}
	noPrefix           = []string{""}
)

// table is every route the gateway serves itself; spec/openapi.yaml lists
// the same (TestRoutesMatchSpec).
func (g *Gateway) table() []route {
	p := g.pages
	t := []route{
		{get, Prefixes, "/account/two-factor", g.authed(g.handleStatus)},
		{post, Prefixes, "/account/two-factor/totp", g.authed(g.handleEnrol)},
		{del, Prefixes, "/account/two-factor/totp", g.authed(g.handleDisable)},
		{post, Prefixes, "/account/two-factor/totp/confirm", g.authed(g.handleConfirm)},
		{post, Prefixes, "/account/two-factor/recovery", g.authed(g.handleRegenerate)},
		{get, loginPrefixes, "/login", g.handleLoginFlows},
		{post, loginPrefixes, "/login", g.limited(g.handleLogin)},
		{getPost, Prefixes, "/login/sso/redirect", g.limited(p.SignIn)},
		{getPost, Prefixes, "/login/sso/redirect/{idpId}", g.limited(p.SignIn)},
		{getPost, Prefixes, "/auth/" + flows.StageTOTP + "/fallback/web", g.limited(p.Fallback(flows.StageTOTP))},
		{getPost, Prefixes, "/auth/" + flows.StageRecovery + "/fallback/web", g.limited(p.Fallback(flows.StageRecovery))},
		{getPost, Prefixes, "/auth/" + flows.StageEmail + "/fallback/web", g.limited(p.Fallback(flows.StageEmail))},
		{get, noPrefix, pages.SelfServicePath, p.SelfGet},
		{post, noPrefix, pages.SelfServicePath, g.limited(p.SelfPost)},
		{get, noPrefix, pages.StaticPrefix + "{file}", pages.Static().ServeHTTP},
		{get, noPrefix, admin.APIPrefix + "users", g.admin.ListUsers},
		{get, noPrefix, admin.APIPrefix + "users/{userId}", g.admin.User},
		{post, noPrefix, admin.APIPrefix + "users/{userId}/reset", g.admin.Reset},
		{post, noPrefix, admin.APIPrefix + "users/{userId}/unlock", g.admin.Unlock},
		{get, noPrefix, admin.APIPrefix + "audit", g.admin.Audit},
		{get, noPrefix, admin.APIPrefix + "counts", g.admin.Counts},
		{get, noPrefix, admin.PagePath, g.admin.PageGet},
		{post, noPrefix, admin.PagePath, g.limited(g.admin.PagePost)},
		{get, noPrefix, provider.Prefix + "users/{userId}", g.prov.Enabled},
		{post, noPrefix, provider.Prefix + "users/{userId}/verify", g.prov.Verify},
		{get, oauth.MetadataPrefixes, oauth.MetadataPath, g.oauthOnly(g.oauth.Metadata)},
		{getPost, noPrefix, oauth.AuthorizePath, g.oauthOnly(g.limited(p.Authorize))},
		{post, noPrefix, oauth.TokenPath, g.oauthOnly(g.limited(g.oauth.Token))},
		{post, noPrefix, oauth.RegisterPath, g.oauthOnly(g.limited(g.oauth.Register))},
		{post, noPrefix, oauth.RevokePath, g.oauthOnly(g.oauth.Revoke)},
		{get, noPrefix, "/health", g.handleHealth},
		{get, noPrefix, "/ready", g.handleReady},
	}
	for _, ep := range guardedEndpoints {
		t = append(t, route{[]string{ep.Method}, ep.Prefixes, ep.Path, g.handleGuarded(ep)})
	}
	return t
}

func (g *Gateway) routes() *mux.Router {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	for _, rt := range g.table() {
		for _, p := range rt.prefixes {
			r.HandleFunc(p+rt.path, rt.handler).Methods(slices.Clone(rt.methods)...) // mux upper-cases in place
		}
	}
	// Everything else, and other methods on our paths (CORS preflights
	// included), goes to the homeserver untouched.
	r.NotFoundHandler = g.proxy
	r.MethodNotAllowedHandler = g.proxy
	return r
}

// Router exposes the routes (for the spec test).
func (g *Gateway) Router() *mux.Router { return g.router }

// guarded matches paths of endpoints that must never reach the homeserver
// unguarded under a version prefix the gateway does not route, or in another
// letter case (homeservers route case-sensitively; a proxy might not), with
// anything after delete_devices (a newline too: s), under
// a version of one segment or two (unstable/<an MSC>) (the routes
// cover every prefix a homeserver serves them under: endpoints.go).
var guarded = regexp.MustCompile(`(?is)^/_matrix/client/(?:[^/]+|[^/]+/[^/]+)/(login|delete_devices.*|devices/[^/]*|account/password|account/deactivate|account/3pid|account/3pid/add|keys/device_signing/upload|login/get_token|login/token|account/two-factor(/.*)?)$`)

// Handler is the gateway's http.Handler: it decides where each request
// goes, streams pass-through requests to the homeserver with no more work
// than timing them, and gives the gateway's own routes a request ID, a
// logger, panic recovery and the client's address for the calls they make.
func (g *Gateway) Handler() http.Handler { return http.HandlerFunc(g.serve) }

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method == http.MethodOptions && g.oauth.Enabled() && strings.HasPrefix(r.URL.Path, oauth.Prefix) {
		oauth.Preflight(w) // the gateway's own OAuth endpoints answer their CORS preflights
		return
	}
	if g.policy.On() && g.policyBlocks(w, r) {
		return
	}
	h, r, routed, refused := g.route(r)
	if h == nil && refused == nil {
		g.passThrough(w, r, start)
		return
	}
	g.serveOwn(w, r, h, routed, refused, start)
}

// forwarder is a proxy that reports the status it wrote
// (homeserver.Forwarder): the pass-through path then needs no recorder.
type forwarder interface {
	Forward(w http.ResponseWriter, r *http.Request) int
}

// passThrough streams r to the homeserver: the hot path, with no more work
// than timing it (and forgetting the trust of a token logged out).
func (g *Gateway) passThrough(w http.ResponseWriter, r *http.Request, start time.Time) {
	g.bodyDeadline(w, r, false)
	loggedOut := g.logoutToken(r)
	status, cached := g.servedVersions(w, r)
	switch fw, ok := g.proxy.(forwarder); {
	case cached:
	case ok:
		status = fw.Forward(w, r)
	default:
		rec := &httpx.StatusRecorder{ResponseWriter: w}
		g.proxy.ServeHTTP(rec, r)
		status = rec.Status
	}
	if loggedOut != "" && status == http.StatusOK {
		g.forgetTrust(r, loggedOut)
	}
	took := time.Since(start)
	g.metrics.HTTPRequest(metrics.RoutePassthrough, status, took)
	if g.debug {
		g.log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path, "status": status,
			"duration_ms": took.Milliseconds(), "pass_through": true}).Debug("request")
	}
}

// serveOwn serves a request the gateway handles itself (h) or refuses, with a
// request ID, a logger, panic recovery and the client's address for the
// calls it makes upstream.
func (g *Gateway) serveOwn(w http.ResponseWriter, r *http.Request, h http.Handler, routed bool, refused error, start time.Time) {
	rec := &httpx.StatusRecorder{ResponseWriter: w}
	l := g.log.WithFields(logrus.Fields{"request_id": httpx.RequestID(), "method": r.Method, "path": r.URL.Path})
	// Calls the gateway makes upstream for this request carry the client's
	// address (the homeserver's rate limits then apply per client).
	r = httpx.WithLogger(r.WithContext(g.hs.WithOrigin(r.Context(), r)), l)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			l.WithField("panic", p).Error("handler panicked")
			if rec.Status == 0 {
				httpx.WriteError(rec, r, errors.New("panic"))
			}
		}
		took := time.Since(start)
		g.metrics.HTTPRequest(routeClass(r.URL.Path, routed), rec.Status, took)
		if g.debug {
			l.WithFields(logrus.Fields{"status": rec.Status, "duration_ms": took.Milliseconds()}).Debug("request")
		}
	}()
	if refused != nil {
		httpx.WriteError(rec, r, refused)
		return
	}
	g.bodyDeadline(rec, r, true)
	h.ServeHTTP(rec, r)
}

// route decides where r goes: h is the gateway's own handler for it (with
// r carrying its path variables; nil to pass it through), or refused says
// why it must not reach the homeserver at all. A non-canonical spelling
// (double or leading slashes anywhere, a trailing slash, percent-encoding) of
// a guarded path is routed as the canonical one, never passed through.
func (g *Gateway) route(r *http.Request) (h http.Handler, _ *http.Request, routed bool, refused error) {
	if !g.cfg.AdminAPI && isAdminAPI(r.URL.Path) {
		return nil, r, false, httperr.ErrAdminAPI
	}
	if !mayBeOurs(r.URL.Path) {
		return nil, r, false, nil
	}
	return g.routeAll(r)
}

// routeAll is route past the screen and the admin API check: the route table
// and the guarded pattern decide.
func (g *Gateway) routeAll(r *http.Request) (h http.Handler, _ *http.Request, routed bool, refused error) {
	if canon := path.Clean("/" + r.URL.Path); r.Method != http.MethodOptions && strings.HasPrefix(canon, "/_matrix/client/") {
		if canon != r.URL.EscapedPath() && guarded.MatchString(canon) {
			r.URL.Path, r.URL.RawPath = canon, ""
		}
	}
	var m mux.RouteMatch
	// With a NotFoundHandler set, Match reports a miss as ErrNotFound.
	matched := g.router.Match(r, &m)
	isGuarded := r.Method != http.MethodOptions && guarded.MatchString(r.URL.Path)
	if isGuarded && (!matched || m.MatchErr == mux.ErrNotFound || r.Method != strings.ToUpper(r.Method)) {
		// Under a prefix no homeserver serves, or a method in another case
		// (which some servers would take as the same method).
		return nil, r, false, httperr.ErrUnrecognized
	}
	if !matched || m.MatchErr != nil {
		return nil, r, false, nil
	}
	return m.Handler, mux.SetURLVars(r, m.Vars), true, nil
}

// ourWords are words every path the gateway serves or guards has (in any
// letter case, in every spelling: none spans a segment boundary a doubled
// slash or a dot segment could break); a path with none of them is passed
// through without routing. Every route and guarded path under /account has
// its own word ("two-factor", "password", "deactivate", "3pid"), so
// /account/whoami and the like skip the router (TestScreenNeverMissesARoute).
var ourWords = []string{"login", "two-factor", "password", "deactivate", "3pid", "devices", "device_signing", "/auth/",
	"auth_metadata", "/_matrix2fa", "/health", "/ready"}

// mayBeOurs reports whether p may be one of the gateway's routes or a guarded
// path (a cheap screen before the router and the guarded pattern).
func mayBeOurs(p string) bool {
	lower := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 0x80:
			return true // the router's case folding is Unicode's (ſ is s, K is k); ToLower's is not
		case c < 0x20 || c == 0x7f:
			return true // for the guarded pattern: Synapse's delete_devices takes any suffix, a newline too
		case c >= 'A' && c <= 'Z' || c == '%':
			lower = true
		}
	}
	if lower {
		p = strings.ToLower(p) // rare: upper case or escapes
	}
	for _, w := range ourWords {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}

// debugEnabled reports whether l writes debug lines.
func debugEnabled(l logrus.FieldLogger) bool {
	switch l := l.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

// routeClass is a request's route class for metrics (a few fixed values).
func routeClass(p string, routed bool) string {
	switch {
	case !routed:
		return metrics.RoutePassthrough
	case isPage(p):
		return metrics.RoutePage
	case strings.Contains(p, "/account/two-factor"):
		return metrics.RouteTwoFactor
	case strings.HasSuffix(p, "/login"):
		return metrics.RouteLogin
	case strings.HasPrefix(p, "/_matrix/client/"):
		return metrics.RouteGuarded
	}
	return metrics.RouteOther
}

// isAdminAPI reports whether p (decoded) is under a homeserver admin API.
func isAdminAPI(p string) bool {
	if !strings.Contains(p, "admin") {
		return false // the common case, without cleaning the path
	}
	c := path.Clean(p)
	for _, prefix := range []string{"/_synapse/admin", "/_dendrite/admin"} {
		if c == prefix || strings.HasPrefix(c, prefix+"/") {
			return true
		}
	}
	return false
}

// Run sweeps expired sessions until ctx ends: held logins, and the logins of
// unredeemed OAuth authorization codes, are logged out upstream so an
// abandoned or failed login leaves no usable token behind.
func (g *Gateway) Run(ctx context.Context) {
	if g.oauth.Enabled() {
		go func() {
			t := time.NewTicker(g.cfg.SweepInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					g.oauth.Sweep(ctx)
				}
			}
		}()
	}
	g.held.Run(ctx)
}

// Sweep sweeps expired sessions once.
func (g *Gateway) Sweep(ctx context.Context) {
	g.held.Sweep(ctx)
	if g.oauth.Enabled() {
		g.oauth.Sweep(ctx)
	}
}

// oauthOnly serves h while the OAuth 2.0 API is on; off, the request goes to
// the homeserver as if the gateway had no such route.
func (g *Gateway) oauthOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.oauth.Enabled() {
			g.proxy.ServeHTTP(w, r)
			return
		}
		h(w, r)
	}
}

// origin is where r comes from, as the gateway sees it.
func (g *Gateway) origin(r *http.Request) held.Origin {
	return held.Origin{Addr: g.proxies.ClientAddr(r), UA: r.UserAgent()}
}

func (g *Gateway) handleHealth(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyTimeout bounds each dependency check of /ready.
const readyTimeout = 2 * time.Second

// handleReady is GET /ready: 200 when the database and the homeserver both
// answer, else 503 saying which does not (a load balancer takes the replica
// out until they do; nothing else waits on it).
func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	out := map[string]string{"status": "ready", "database": "ok", "homeserver": "ok"}
	status := http.StatusOK
	if _, err := g.store.Meta(ctx, "key_check"); err != nil && !errors.Is(err, storage.ErrNotFound) {
		out["database"], status = "unavailable", http.StatusServiceUnavailable
		httpx.Logger(r).WithError(err).Warn("ready: database")
	}
	resp, err := g.hs.Do(ctx, http.MethodGet, "/_matrix/client/versions", nil, nil)
	if err != nil || resp.Status != http.StatusOK {
		out["homeserver"], status = "unavailable", http.StatusServiceUnavailable
		httpx.Logger(r).WithError(err).Warn("ready: homeserver")
	}
	if status != http.StatusOK {
		out["status"] = "not ready"
	}
	httpx.WriteJSON(w, status, out)
}
