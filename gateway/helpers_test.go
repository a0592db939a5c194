package gateway_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

// clock is the gateway's injected clock: tests step it by whole TOTP periods
// so every code is for a fresh step, without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a gateway in front of a real Dendrite, over HTTP on loopback.
type env struct {
	t     *testing.T
	hs    *dendrite.Server
	gate  *gateway.Gateway
	srv   *httptest.Server
	acc   *account.Service
	db    *sqlite.DB
	clock *clock
	// opts rebuilds the gateway (withMailer).
	opts gateway.Options
}

type envOption func(*gateway.Config, *account.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	hs := tesths.Dendrite(t)
	return newEnvWith(t, hs, opts...)
}

func newEnvWith(t *testing.T, hs *dendrite.Server, opts ...envOption) *env {
	t.Helper()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	return newEnvLogged(t, hs, quiet, opts...)
}

// newEnvLogged is newEnvWith with every component logging to quiet.
func newEnvLogged(t *testing.T, hs *dendrite.Server, quiet *logrus.Logger, opts ...envOption) *env {
	t.Helper()
	c := &clock{t: time.Now().Truncate(30 * time.Second)}
	gcfg := gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute,
		SSOProviderID: "matrix-2fa", SSOProviderName: "Sign in with 2FA"}
	acfg := account.DefaultConfig()
	acfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	for _, o := range opts {
		o(&gcfg, &acfg)
	}
	db, box, acc := newCore(t, acfg, account.WithClock(c.Now), account.WithLogger(quiet))
	client, err := homeserver.New(hs.URL, homeserver.Options{Logger: quiet, WhoAmITTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	o := gateway.Options{Config: gcfg, Homeserver: client, Accounts: acc, Store: db, Box: box, Logger: quiet, Now: c.Now}
	gw := gateway.New(o)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, hs: hs, gate: gw, srv: srv, acc: acc, db: db, clock: c, opts: o}
}

// withMailer serves a gateway like e's that sends e-mail codes with m, at
// e.srv's address from now on.
func (e *env) withMailer(m gateway.CodeMailer) {
	e.opts.Mailer = m
	e.gate = gateway.New(e.opts)
	e.srv.Config.Handler = e.gate.Handler()
}

// resp is a decoded JSON response.
type resp struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

func (r resp) str(key string) string { s, _ := r.Body[key].(string); return s }

func (r resp) strings(key string) []string {
	var out []string
	list, _ := r.Body[key].([]any)
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// flows returns the stages of every flow of a UIA body.
func (r resp) flows() [][]string {
	var out [][]string
	list, _ := r.Body["flows"].([]any)
	for _, f := range list {
		m, _ := f.(map[string]any)
		st, _ := m["stages"].([]any)
		var stages []string
		for _, s := range st {
			stages = append(stages, s.(string))
		}
		out = append(out, stages)
	}
	return out
}

func do(t *testing.T, base, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, req)
}

// send sends req as it is and decodes the answer.
func send(t *testing.T, req *http.Request) resp {
	t.Helper()
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer hr.Body.Close()
	raw, _ := io.ReadAll(hr.Body)
	out := resp{Status: hr.StatusCode, Header: hr.Header, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

// gw sends a request through the gateway.
func (e *env) gw(method, path, token string, body any) resp {
	e.t.Helper()
	return do(e.t, e.srv.URL, method, path, token, body)
}

// direct sends a request to the homeserver itself.
func (e *env) direct(method, path, token string, body any) resp {
	e.t.Helper()
	return do(e.t, e.hs.URL, method, path, token, body)
}

func expect(t *testing.T, r resp, status int, errcode string) {
	t.Helper()
	if r.Status != status || (errcode != "" && r.str("errcode") != errcode) || (errcode == "" && r.str("errcode") != "" && status != 401) {
		t.Fatalf("got %d %s; want %d %s", r.Status, r.Raw, status, errcode)
	}
}

func passwordAuth(u *dendrite.User, session string) map[string]any {
	a := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}
	if session != "" {
		a["session"] = session
	}
	return a
}

// enrolled is a user with 2FA on, and what the test knows of it.
type enrolled struct {
	*dendrite.User
	secret   []byte
	uri      string
	recovery []string
	enrolRaw resp
}

// code returns the TOTP code of the current step and moves the clock one
// step on, so the next code is always fresh.
func (e *env) code(u *enrolled) string {
	e.t.Helper()
	p := e.acc.Params()
	c, err := account.CodeAt(u.secret, account.Step(e.clock.Now(), p.Period), p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Duration(p.Period) * time.Second)
	return c
}

// enrol registers a user and turns 2FA on through the gateway's endpoints.
func (e *env) enrol(localpart string) *enrolled {
	e.t.Helper()
	return e.enrolUser(tesths.RegisterUser(e.t, e.hs, localpart))
}

// enrolUser turns 2FA on for u through the gateway's endpoints.
func (e *env) enrolUser(u *dendrite.User) *enrolled {
	e.t.Helper()
	const path = "/_matrix/client/v3/account/two-factor/totp"
	ch := e.gw("POST", path, u.AccessToken, map[string]any{})
	expect(e.t, ch, 401, "")
	r := e.gw("POST", path, u.AccessToken, map[string]any{"auth": passwordAuth(u, ch.str("session"))})
	expect(e.t, r, 200, "")
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(r.str("secret"))
	if err != nil {
		e.t.Fatalf("secret %q: %v", r.str("secret"), err)
	}
	en := &enrolled{User: u, secret: secret, uri: r.str("uri"), enrolRaw: r}
	c := e.gw("POST", path+"/confirm", u.AccessToken, map[string]any{"code": e.code(en)})
	expect(e.t, c, 200, "")
	en.recovery = c.strings("recovery_codes")
	if len(en.recovery) != e.acc.RecoveryCodes() {
		e.t.Fatalf("confirm gave %d recovery codes", len(en.recovery))
	}
	return en
}

type (
	gatewayConfig = gateway.Config
	accountConfig = account.Config
)

func base32NoPad(b []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

func decodeB32(s string) ([]byte, error) {
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
}

// newCore is a real SQLite store in a temporary directory, a fresh key
// checked against it, and the account service over both.
func newCore(tb testing.TB, cfg account.Config, opts ...account.Option) (*sqlite.DB, *account.SecretBox, *account.Service) {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "2fa.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	box, err := account.NewSecretBox(account.NewKey())
	if err != nil {
		tb.Fatal(err)
	}
	if err := account.CheckKey(ctx, db, box); err != nil {
		tb.Fatal(err)
	}
	acc, err := account.NewService(db, box, cfg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return db, box, acc
}

// deviceIDs lists the devices of token's owner, asked of Dendrite directly, sorted.
func (e *env) deviceIDs(token string) []string {
	e.t.Helper()
	r := e.direct("GET", "/_matrix/client/v3/devices", token, nil)
	if r.Status != 200 {
		e.t.Fatalf("GET devices directly: %d %s", r.Status, r.Raw)
	}
	var ids []string
	list, _ := r.Body["devices"].([]any)
	for _, d := range list {
		m, _ := d.(map[string]any)
		id, _ := m["device_id"].(string)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// newDevice logs u in directly at Dendrite and returns the new device.
func (e *env) newDevice(u *enrolled) string {
	e.t.Helper()
	d, err := e.hs.Login(context.Background(), u.Localpart, u.Password)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.DeviceID
}

// wrongCode returns a TOTP code that is certainly not accepted now: it
// differs from the codes of every step in a wide window around the clock.
func (e *env) wrongCode(u *enrolled) string {
	e.t.Helper()
	p := e.acc.Params()
	now := account.Step(e.clock.Now(), p.Period)
	valid := map[string]bool{}
	for s := now - 4; s <= now+4; s++ {
		c, err := account.CodeAt(u.secret, s, p)
		if err != nil {
			e.t.Fatal(err)
		}
		valid[c] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%0*d", p.Digits, i*111111%1000000)
		if !valid[c] {
			return c
		}
	}
}
