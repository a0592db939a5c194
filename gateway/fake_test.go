package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// fakeServer is the fake homeserver's server name.
const fakeServer = "example.org"

// call is one request the fake homeserver received.
type call struct {
	Method string
	Path   string // path and query, as given
	Header http.Header
	Body   []byte
}

// fakeHS is the homeserver the fast tests isolate the gateway from: accounts
// with passwords, access tokens, login tokens, a UIA endpoint asking for
// m.login.password, and scripted answers. It records every call.
type fakeHS struct {
	mu sync.Mutex
	// passwords are the accounts: user ID → password.
	passwords map[string]string
	// tokens are the live access tokens (no device: an application service).
	tokens map[string]homeserver.WhoAmI
	// loginTokens are the homeserver's own m.login.token tokens → user ID.
	loginTokens map[string]string
	// loginAnswer, when set and returning non-nil, answers a /login instead
	// of the accounts.
	loginAnswer func(body map[string]any) *homeserver.Response
	// answers are scripted answers of Do by "METHOD path" (query left out).
	answers map[string]*homeserver.Response
	// uiaSessions are the UIA sessions the fake handed out.
	uiaSessions map[string]bool
	n           int
	checked     *homeserver.Client

	logins, dos, proxied []call
	logouts, whoamis     []string
	issued               []string // access tokens handed out, in order
	passwordChecks       []string
	displayNames         []string
}

var _ gateway.Homeserver = (*fakeHS)(nil)

func newFakeHS(t testing.TB) *fakeHS {
	// The real client builds the checked headers; it never dials here.
	c, err := homeserver.New("http://hs.invalid", homeserver.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeHS{passwords: map[string]string{}, tokens: map[string]homeserver.WhoAmI{}, loginTokens: map[string]string{},
		answers: map[string]*homeserver.Response{}, uiaSessions: map[string]bool{}, checked: c}
}

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// addUser adds an account and an access token with a device for it.
func (f *fakeHS) addUser(userID, password, token, device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwords[userID] = password
	f.tokens[token] = homeserver.WhoAmI{UserID: id.UserID(userID), DeviceID: id.DeviceID(device)}
}

// answer scripts the answer of Do for method and path.
func (f *fakeHS) answer(method, path string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = &homeserver.Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
}

func jsonResponse(status int, v any) *homeserver.Response {
	b, _ := json.Marshal(v)
	return &homeserver.Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
}

func matrixError(re mautrix.RespError, msg string) *homeserver.Response {
	return jsonResponse(re.StatusCode, map[string]string{"errcode": re.ErrCode, "error": msg})
}

// resolve finds the account a login names, folding the localpart's case as
// homeservers do.
func (f *fakeHS) resolve(user string) (string, bool) {
	if !strings.HasPrefix(user, "@") {
		user = "@" + user + ":" + fakeServer
	}
	for u := range f.passwords {
		if strings.EqualFold(u, user) {
			return u, true
		}
	}
	return "", false
}

// issue logs userID in on a new device (or device) and returns the answer.
func (f *fakeHS) issue(userID, device string) *homeserver.Response {
	f.n++
	tok := fmt.Sprintf("syt_%s_%d", strings.TrimPrefix(strings.Split(userID, ":")[0], "@"), f.n)
	if device == "" {
		device = fmt.Sprintf("DEV%d", f.n)
	}
	f.tokens[tok] = homeserver.WhoAmI{UserID: id.UserID(userID), DeviceID: id.DeviceID(device)}
	f.issued = append(f.issued, tok)
	return jsonResponse(200, map[string]string{"user_id": userID, "access_token": tok, "device_id": device, "home_server": fakeServer})
}

type loginBody struct {
	Type       string `json:"type"`
	Identifier struct {
		Type string `json:"type"`
		User string `json:"user"`
	} `json:"identifier"`
	Password string `json:"password"`
	Token    string `json:"token"`
	DeviceID string `json:"device_id"`
}

func (f *fakeHS) Login(ctx context.Context, body []byte, header http.Header) (*homeserver.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append(f.logins, call{Method: http.MethodPost, Path: "/_matrix/client/v3/login", Header: header.Clone(), Body: append([]byte(nil), body...)})
	var generic map[string]any
	json.Unmarshal(body, &generic)
	if f.loginAnswer != nil {
		if resp := f.loginAnswer(generic); resp != nil {
			return resp, nil
		}
	}
	var l loginBody
	if err := json.Unmarshal(body, &l); err != nil {
		return matrixError(mautrix.MBadJSON, "bad json"), nil
	}
	switch l.Type {
	case "m.login.password":
		if u, ok := f.resolve(l.Identifier.User); ok && l.Identifier.Type == "m.id.user" && f.passwords[u] == l.Password {
			return f.issue(u, l.DeviceID), nil
		}
		return matrixError(mautrix.MForbidden, "Invalid username or password"), nil
	case "m.login.token":
		if u, ok := f.loginTokens[l.Token]; ok {
			delete(f.loginTokens, l.Token)
			return f.issue(u, l.DeviceID), nil
		}
		return matrixError(mautrix.MForbidden, "Invalid login token"), nil
	case "m.login.application_service":
		tok := strings.TrimPrefix(header.Get("Authorization"), "Bearer ")
		if who, ok := f.tokens[tok]; ok && who.DeviceID == "" {
			u := l.Identifier.User
			if !strings.HasPrefix(u, "@") {
				u = "@" + u + ":" + fakeServer
			}
			return f.issue(u, l.DeviceID), nil
		}
		return matrixError(mautrix.MMissingToken, "Missing access token"), nil
	}
	return matrixError(mautrix.MUnknown, "Unknown login type"), nil
}

func (f *fakeHS) WhoAmI(ctx context.Context, accessToken string) (homeserver.WhoAmI, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.whoamis = append(f.whoamis, accessToken)
	if accessToken == "" {
		return homeserver.WhoAmI{}, mautrix.MMissingToken.WithMessage("Missing access token")
	}
	who, ok := f.tokens[accessToken]
	if !ok {
		return homeserver.WhoAmI{}, mautrix.MUnknownToken.WithMessage("Unknown access token")
	}
	return who, nil
}

// Do answers the scripted answer for method and path; GET /login with the
// password flow; anything else as a UIA endpoint that needs
// m.login.password of the access token's owner.
func (f *fakeHS) Do(ctx context.Context, method, pathAndQuery string, header http.Header, body []byte) (*homeserver.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dos = append(f.dos, call{Method: method, Path: pathAndQuery, Header: header.Clone(), Body: append([]byte(nil), body...)})
	p, _, _ := strings.Cut(pathAndQuery, "?")
	if a, ok := f.answers[method+" "+p]; ok {
		return &homeserver.Response{Status: a.Status, Header: a.Header.Clone(), Body: append([]byte(nil), a.Body...)}, nil
	}
	if method == http.MethodGet && strings.HasSuffix(p, "/login") {
		return jsonResponse(200, map[string]any{"flows": []any{map[string]any{"type": "m.login.password"}}}), nil
	}
	return f.uia(header, body), nil
}

// uia is the fake's UIA endpoint: [m.login.password], for the token's owner.
func (f *fakeHS) uia(header http.Header, body []byte) *homeserver.Response {
	var req struct {
		Auth *struct {
			Type       string `json:"type"`
			Session    string `json:"session"`
			Identifier struct {
				User string `json:"user"`
			} `json:"identifier"`
			Password string `json:"password"`
		} `json:"auth"`
	}
	json.Unmarshal(body, &req)
	challenge := func(session string, completed []string, errcode, msg string) *homeserver.Response {
		b := map[string]any{"flows": []any{map[string]any{"stages": []string{"m.login.password"}}}, "params": map[string]any{},
			"session": session, "completed": completed}
		if errcode != "" {
			b["errcode"], b["error"] = errcode, msg
		}
		return jsonResponse(401, b)
	}
	owner := f.tokens[strings.TrimPrefix(header.Get("Authorization"), "Bearer ")].UserID
	switch {
	case req.Auth == nil:
		f.n++
		s := fmt.Sprintf("hs-session-%d", f.n)
		f.uiaSessions[s] = true
		return challenge(s, []string{}, "", "")
	case !f.uiaSessions[req.Auth.Session]:
		return matrixError(mautrix.MUnknown, "Unknown session")
	case req.Auth.Type == "":
		return matrixError(mautrix.MBadJSON, "auth has no type") // as Dendrite
	case req.Auth.Type == "m.login.password" && owner != "" && req.Auth.Identifier.User == string(owner) && f.passwords[string(owner)] == req.Auth.Password:
		delete(f.uiaSessions, req.Auth.Session)
		return jsonResponse(200, map[string]any{})
	}
	return challenge(req.Auth.Session, []string{}, "M_FORBIDDEN", "Invalid password")
}

func (f *fakeHS) Logout(ctx context.Context, accessToken string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logouts = append(f.logouts, accessToken)
	delete(f.tokens, accessToken)
	return nil
}

func (f *fakeHS) PasswordLogin(ctx context.Context, user, password string, deviceID id.DeviceID, displayName string) (*mautrix.RespLogin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.resolve(user)
	if !ok || f.passwords[u] != password {
		return nil, mautrix.MForbidden.WithMessage("Invalid username or password")
	}
	var login mautrix.RespLogin
	if err := json.Unmarshal(f.issue(u, string(deviceID)).Body, &login); err != nil {
		return nil, err
	}
	return &login, nil
}

// Register: the fake homeserver does not allow registration.
func (f *fakeHS) Register(ctx context.Context, req homeserver.RegisterRequest) (*homeserver.RegisterResult, error) {
	return nil, mautrix.MForbidden.WithMessage("Registration is disabled").WithStatus(http.StatusForbidden)
}

func (f *fakeHS) CheckPassword(ctx context.Context, userID id.UserID, password string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwordChecks = append(f.passwordChecks, string(userID))
	return password != "" && f.passwords[string(userID)] == password, nil
}

func (f *fakeHS) Devices(ctx context.Context, accessToken string) ([]homeserver.Device, error) {
	return nil, errors.New("fakeHS: no devices")
}

func (f *fakeHS) Device(ctx context.Context, accessToken, deviceID string) (homeserver.Device, error) {
	return homeserver.Device{}, errors.New("fakeHS: no devices")
}

func (f *fakeHS) DeleteDevice(ctx context.Context, accessToken string, userID id.UserID, password, deviceID string) error {
	return errors.New("fakeHS: no devices")
}

func (f *fakeHS) WithPassword(ctx context.Context, accessToken, method, path string, userID id.UserID, password string, body map[string]any) error {
	return errors.New("fakeHS: no UIA")
}

func (f *fakeHS) SetDeviceDisplayName(ctx context.Context, accessToken string, deviceID id.DeviceID, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.displayNames = append(f.displayNames, string(deviceID)+"="+name)
	return nil
}

func (f *fakeHS) CheckedHeader(r *http.Request, accessToken string) http.Header {
	return f.checked.CheckedHeader(r, accessToken)
}

func (f *fakeHS) WithOrigin(ctx context.Context, r *http.Request) context.Context { return ctx }

// Proxy records what passes through and answers 200 {"proxied":true}.
func (f *fakeHS) Proxy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.proxied = append(f.proxied, call{Method: r.Method, Path: r.RequestURI, Header: r.Header.Clone(), Body: body})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Fake-Proxy", "yes")
		w.Write([]byte(`{"proxied":true}`))
	})
}

// locked runs fn with the fake locked (the gateway calls it from other
// goroutines).
func (f *fakeHS) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// reset forgets the calls recorded so far (tests sharing one gateway).
func (f *fakeHS) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins, f.dos, f.proxied, f.logouts, f.whoamis = nil, nil, nil, nil, nil
}

// counts returns how many logins, Do calls, logouts and pass-throughs the
// fake has seen.
func (f *fakeHS) counts() (logins, dos, logouts, proxied int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.logins), len(f.dos), len(f.logouts), len(f.proxied)
}

func (f *fakeHS) lastLogin(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logins) == 0 {
		t.Fatal("the homeserver got no login")
	}
	return f.logins[len(f.logins)-1]
}

func (f *fakeHS) lastDo(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dos) == 0 {
		t.Fatal("the homeserver got no request")
	}
	return f.dos[len(f.dos)-1]
}

// lastIssued is the newest access token the fake handed out.
func (f *fakeHS) lastIssued(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.issued) == 0 {
		t.Fatal("the homeserver issued no access token")
	}
	return f.issued[len(f.issued)-1]
}

func (f *fakeHS) loggedOut() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logouts...)
}

// Test users of the fast tests: alice has 2FA, bob has not; asToken is an
// application service's token (no device).
const (
	alice, alicePW, aliceTok = "@alice:example.org", "alice-pw", "alice-tok"
	bob, bobPW, bobTok       = "@bob:example.org", "bob-pw", "bob-tok"
	carol, carolPW, carolTok = "@carol:example.org", "carol-pw", "carol-tok"
	asToken                  = "as-tok"
)

// fast is a gateway in front of fakeHS, over the real account service on a
// real SQLite file, driven over loopback.
type fast struct {
	t        *testing.T
	hs       *fakeHS
	gw       *gateway.Gateway
	srv      *httptest.Server
	acc      *account.Service
	db       *sqlite.DB
	clock    *clock
	logs     *test.Hook
	secrets  map[string][]byte
	recovery map[string][]string
}

// newFast builds the gateway (cfg adjusts its configuration) with alice
// enrolled.
func newFast(t *testing.T, cfg ...func(*gateway.Config)) *fast {
	t.Helper()
	c := &clock{t: fastEpoch}
	gcfg := gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute,
		SSOProviderID: "matrix-2fa", SSOProviderName: "Sign in with 2FA", RedirectAllowlist: []string{ssoAllowed}}
	for _, f := range cfg {
		f(&gcfg)
	}
	acfg := account.DefaultConfig()
	acfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	db, box, acc := newCore(t, acfg, account.WithClock(c.Now), account.WithLogger(logger))
	hs := newFakeHS(t)
	hs.addUser(alice, alicePW, aliceTok, "ALICEDEV")
	hs.addUser(bob, bobPW, bobTok, "BOBDEV")
	hs.addUser(carol, carolPW, carolTok, "CAROLDEV")
	hs.tokens[asToken] = homeserver.WhoAmI{UserID: "@as_bot:example.org"}
	gw := gateway.New(gateway.Options{Config: gcfg, Homeserver: hs, Accounts: acc, Store: db, Box: box, Logger: logger, Now: c.Now})
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	e := &fast{t: t, hs: hs, gw: gw, srv: srv, acc: acc, db: db, clock: c, logs: hook,
		secrets: map[string][]byte{}, recovery: map[string][]string{}}
	e.restoreAlice(box)
	return e
}

// fastEpoch is where every fast gateway's clock starts.
var fastEpoch = time.Date(2031, 3, 14, 15, 9, 0, 0, time.UTC)

// aliceEnrolment is alice's enrolment, made once through the account service
// (Enrol, Confirm) and written into each gateway's database through the
// store: the QR codes Enrol renders are half of a gateway's setup time.
var aliceEnrolment struct {
	once     sync.Once
	ok       bool
	secret   []byte
	totp     storage.TOTP
	set      storage.RecoverySet
	recovery []string
}

// restoreAlice turns 2FA on for alice as aliceEnrolment has it: her secret
// sealed with this gateway's key, her recovery set, her last step; the clock
// moves one step on, as after enrol.
func (e *fast) restoreAlice(box *account.SecretBox) {
	e.t.Helper()
	a := &aliceEnrolment
	a.once.Do(func() {
		c := &clock{t: fastEpoch}
		db, _, acc := newCore(e.t, e.acc.Config(), account.WithClock(c.Now), account.WithLogger(quietLogger()))
		tmp := &fast{t: e.t, acc: acc, clock: c, secrets: map[string][]byte{}, recovery: map[string][]string{}}
		tmp.enrol(alice)
		var err error
		if a.totp, err = db.TOTP(context.Background(), alice); err != nil {
			e.t.Fatal(err)
		}
		if a.set, err = db.RecoverySet(context.Background(), alice); err != nil {
			e.t.Fatal(err)
		}
		a.secret, a.recovery, a.ok = tmp.secrets[alice], tmp.recovery[alice], true
	})
	if !a.ok {
		e.t.Fatal("alice's enrolment could not be made")
	}
	ctx, now := context.Background(), e.clock.Now()
	sealed, err := box.Seal(alice, a.secret)
	if err != nil {
		e.t.Fatal(err)
	}
	p := storage.Pending{UserID: alice, Secret: sealed, KeyID: box.KeyID(), Algorithm: a.totp.Algorithm, Digits: a.totp.Digits,
		Period: a.totp.Period, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.db.PutPending(ctx, p); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.ConfirmEnrolment(ctx, p, a.totp.LastStep, now, a.set); err != nil {
		e.t.Fatal(err)
	}
	e.secrets[alice], e.recovery[alice] = a.secret, append([]string(nil), a.recovery...)
	e.clock.Add(time.Duration(a.totp.Period) * time.Second)
}

// enrol turns 2FA on for userID through the account service.
func (e *fast) enrol(userID string) {
	e.t.Helper()
	en, err := e.acc.Enrol(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.secrets[userID], err = decodeB32(en.Secret); err != nil {
		e.t.Fatal(err)
	}
	codes, err := e.acc.Confirm(context.Background(), userID, e.code(userID))
	if err != nil {
		e.t.Fatal(err)
	}
	e.recovery[userID] = codes
}

// code is userID's TOTP code of the current step; the clock moves one step
// on, so the next code is fresh.
func (e *fast) code(userID string) string {
	e.t.Helper()
	p := e.acc.Params()
	c, err := account.CodeAt(e.secrets[userID], account.Step(e.clock.Now(), p.Period), p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Duration(p.Period) * time.Second)
	return c
}

// wrongCode is a code that is not userID's for any step the account
// service accepts now (the current one and its neighbours).
func (e *fast) wrongCode(userID string) string {
	e.t.Helper()
	p := e.acc.Params()
	step := account.Step(e.clock.Now(), p.Period)
	valid := map[string]bool{}
	for s := step - 2; s <= step+2; s++ {
		c, err := account.CodeAt(e.secrets[userID], s, p)
		if err != nil {
			e.t.Fatal(err)
		}
		valid[c] = true
	}
	for d := '0'; ; d++ {
		if c := strings.Repeat(string(d), p.Digits); !valid[c] {
			return c
		}
	}
}

// do sends a JSON request through the gateway (body: nil, string, []byte or
// a value to marshal).
func (e *fast) do(method, path, token string, body any) resp {
	e.t.Helper()
	return do(e.t, e.srv.URL, method, path, token, body)
}

// raw serves a request built by the caller (odd request targets, repeated
// headers) in-process, the target taken verbatim as a server would read it.
func (e *fast) raw(method, target string, header http.Header, body string) resp {
	e.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.gw.Handler().ServeHTTP(rec, req)
	out := resp{Status: rec.Code, Header: rec.Header(), Raw: rec.Body.Bytes()}
	json.Unmarshal(out.Raw, &out.Body)
	return out
}

// learnServerName lets the gateway learn the server name (from a whoami).
func (e *fast) learnServerName() {
	e.t.Helper()
	expect(e.t, e.do("GET", "/_matrix/client/v3/account/two-factor", bobTok, nil), 200, "")
}

// pages is a browser-like client of the gateway (cookies, no redirects).
func (e *fast) pages() *pgClient {
	jar, _ := cookiejar.New(nil)
	return &pgClient{t: e.t, base: e.srv.URL, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// sameJSON fails unless got and want are the same JSON value.
func sameJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %q is not JSON: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want %q is not JSON: %v", what, want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("%s:\n got  %s\n want %s", what, gb, wb)
	}
}

// noSecretIn fails if the body of r holds any of secrets.
func noSecretIn(t *testing.T, r resp, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(string(r.Raw), s) {
			t.Fatalf("response leaks %q: %s", s, r.Raw)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
}
