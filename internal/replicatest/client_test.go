package replicatest

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

const (
	pLogin    = "/_matrix/client/v3/login"
	pLogout   = "/_matrix/client/v3/logout"
	pWhoAmI   = "/_matrix/client/v3/account/whoami"
	pVersions = "/_matrix/client/versions"
	pDevices  = "/_matrix/client/v3/devices"
	pRegister = "/_matrix/client/v3/register"
	pTwoFA    = "/_matrix/client/v3/account/two-factor"
	pTOTP     = pTwoFA + "/totp"
	pConfirm  = pTOTP + "/confirm"
	pRecovery = pTwoFA + "/recovery"
	pSignIn   = "/_matrix/client/v3/login/sso/redirect/matrix-2fa?redirectUrl=" + "http%3A%2F%2Fclient.example%2Fapp%2F"

	stageTOTP     = "m.login.2fa.totp"
	stageRecovery = "m.login.2fa.recovery"
)

// httpClient is shared by every test: enough idle connections for 100
// concurrent requests to one address.
var httpClient = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
		IdleConnTimeout: 30 * time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// result is one HTTP exchange: a status (0 when the transport failed, with
// err), the JSON body when there is one, and when it ran.
type result struct {
	Status     int
	Body       map[string]any
	Raw        []byte
	Header     http.Header
	Err        error
	Start, End time.Time
}

func (r result) str(k string) string { s, _ := r.Body[k].(string); return s }

func (r result) errcode() string { return r.str("errcode") }

// refused reports a connection that was refused: the request was never sent.
func (r result) refused() bool { return errors.Is(r.Err, syscall.ECONNREFUSED) }

func (r result) String() string {
	if r.Err != nil {
		return "transport error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Raw))
}

// do sends one JSON request (body nil: none) with an optional bearer token.
func do(ctx context.Context, c *http.Client, base, method, path, token string, body any) result {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(b)
	}
	r := result{Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		panic(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		r.Err, r.End = err, time.Now()
		return r
	}
	defer resp.Body.Close()
	r.Raw, r.Err = io.ReadAll(resp.Body)
	r.End = time.Now()
	r.Status, r.Header = resp.StatusCode, resp.Header
	_ = json.Unmarshal(r.Raw, &r.Body)
	return r
}

// form posts an HTML form (or GETs when fields is nil) with the client's cookies.
func form(ctx context.Context, c *http.Client, base, path string, fields url.Values) result {
	method, rd := http.MethodGet, io.Reader(nil)
	if fields != nil {
		method, rd = http.MethodPost, strings.NewReader(fields.Encode())
	}
	r := result{Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		panic(err)
	}
	if fields != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		r.Err, r.End = err, time.Now()
		return r
	}
	defer resp.Body.Close()
	r.Raw, r.Err = io.ReadAll(resp.Body)
	r.End = time.Now()
	r.Status, r.Header = resp.StatusCode, resp.Header
	return r
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Timeout: 60 * time.Second, Jar: jar, Transport: httpClient.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)"`)

func hidden(page []byte, name string) string {
	for _, m := range hiddenRe.FindAllSubmatch(page, -1) {
		if string(m[1]) == name {
			return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(string(m[2]))
		}
	}
	return ""
}

// user is a homeserver account and what the test knows of its 2FA: the
// secret, unused recovery codes and the newest TOTP step it has used.
type user struct {
	*dendrite.User
	secret   []byte
	recovery []string

	mu   sync.Mutex
	last int64 // newest step submitted (accepted or not): never submitted again
	busy bool
}

var params = account.Params{Algorithm: "SHA1", Digits: 6, Period: 30}

func step(t time.Time) int64 { return account.Step(t, params.Period) }

func codeAt(secret []byte, s int64) string {
	c, err := account.CodeAt(secret, s, params)
	if err != nil {
		panic(err)
	}
	return c
}

// nextStep reserves the user's next unused step the gateway accepts now
// (the current one or the next, with the default skew of one step), or
// reports that there is none until the clock moves on.
func (u *user) nextStep(now time.Time) (int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cur := step(now)
	s := max(u.last+1, cur)
	if s > cur+1 {
		return 0, false
	}
	u.last = s
	return s, true
}

// freshCode is nextStep's code; it fails the test when there is none.
func (u *user) freshCode(t testing.TB) (string, int64) {
	t.Helper()
	s, ok := u.nextStep(time.Now())
	if !ok {
		t.Fatalf("%s: no unused TOTP step until the clock moves on", u.UserID)
	}
	return codeAt(u.secret, s), s
}

// wrongCode is a code no step near now has.
func (u *user) wrongCode() string {
	cur := step(time.Now())
	for n := 0; ; n++ {
		c := fmt.Sprintf("%06d", (n*7919+123457)%1000000)
		if c != codeAt(u.secret, cur-1) && c != codeAt(u.secret, cur) && c != codeAt(u.secret, cur+1) && c != codeAt(u.secret, cur+2) {
			return c
		}
	}
}

func passwordAuth(u *dendrite.User, session string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session,
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password}
}

func stageAuth(typ, session, code string) map[string]any {
	return map[string]any{"auth": map[string]any{"type": typ, "session": session, "code": code}}
}

// register creates an account through base (the homeserver, or a gateway
// passing /register through) with the two-step m.login.dummy registration.
func register(ctx context.Context, base, localpart string) (*dendrite.User, result, error) {
	password := "pw-" + localpart + "-x7"
	body := map[string]any{"username": localpart, "password": password, "initial_device_display_name": "registration"}
	r := do(ctx, httpClient, base, "POST", pRegister, "", body)
	if r.Status == 401 && r.str("session") != "" {
		body["auth"] = map[string]any{"type": "m.login.dummy", "session": r.str("session")}
		r = do(ctx, httpClient, base, "POST", pRegister, "", body)
	}
	if r.Status != 200 || r.str("access_token") == "" {
		return nil, r, fmt.Errorf("register %s: %s", localpart, r)
	}
	return &dendrite.User{UserID: r.str("user_id"), Localpart: localpart, Password: password,
		AccessToken: r.str("access_token"), DeviceID: r.str("device_id")}, r, nil
}

// enrol turns 2FA on for du through the gateway at base: the enrolment with
// the password stage, then the confirmation with a first code. It returns
// the exchanges it made; the user is nil unless the confirmation succeeded.
func enrol(ctx context.Context, base string, du *dendrite.User) (*user, []result, error) {
	var rs []result
	r := do(ctx, httpClient, base, "POST", pTOTP, du.AccessToken, map[string]any{})
	rs = append(rs, r)
	if r.Status != 401 || r.str("session") == "" {
		return nil, rs, fmt.Errorf("enrol %s: %s; want 401 with a session", du.UserID, r)
	}
	r = do(ctx, httpClient, base, "POST", pTOTP, du.AccessToken, map[string]any{"auth": passwordAuth(du, r.str("session"))})
	rs = append(rs, r)
	if r.Status != 200 {
		return nil, rs, fmt.Errorf("enrol %s: %s; want 200", du.UserID, r)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(r.str("secret"))
	if err != nil {
		return nil, rs, fmt.Errorf("enrol %s: secret %q: %v", du.UserID, r.str("secret"), err)
	}
	u := &user{User: du, secret: secret}
	s, _ := u.nextStep(time.Now())
	r = do(ctx, httpClient, base, "POST", pConfirm, du.AccessToken, map[string]any{"code": codeAt(secret, s)})
	rs = append(rs, r)
	if r.Status != 200 {
		return nil, rs, fmt.Errorf("confirm %s: %s; want 200", du.UserID, r)
	}
	for _, c := range r.Body["recovery_codes"].([]any) {
		u.recovery = append(u.recovery, c.(string))
	}
	return u, rs, nil
}

// newUsers registers n users named prefix-i on the homeserver, enrolling
// them through base when enrolled is true; four at a time.
func newUsers(t testing.TB, hs *dendrite.Server, base, prefix string, n int, enrolled bool) []*user {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := make([]*user, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			du, _, err := register(ctx, hs.URL, fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				errs[i] = err
				return
			}
			if !enrolled {
				out[i] = &user{User: du}
				return
			}
			out[i], _, errs[i] = enrol(ctx, base, du)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// enrolledUser registers and enrols one user.
func enrolledUser(t testing.TB, hs *dendrite.Server, base, localpart string) *user {
	t.Helper()
	return newUsers(t, hs, base, localpart, 1, true)[0]
}

// passwordLogin is the first step of /login: 401 with a session for a user
// with 2FA, 200 for one without.
func passwordLogin(ctx context.Context, base string, u *dendrite.User, device string) result {
	return do(ctx, httpClient, base, "POST", pLogin, "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.Localpart}, "password": u.Password,
		"initial_device_display_name": device})
}

// device is one entry of a user's device list at the homeserver.
type device struct {
	ID   string `json:"device_id"`
	Name string `json:"display_name"`
}

// devices lists the user's devices straight from the homeserver.
func devices(t testing.TB, hs *dendrite.Server, u *dendrite.User) []device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := hs.Do(ctx, "GET", pDevices, u.AccessToken, nil)
	if err != nil || status != 200 {
		t.Fatalf("GET devices of %s: %d %s %v", u.UserID, status, body, err)
	}
	var out struct {
		Devices []device `json:"devices"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Devices
}

// uiaSession starts a UIA session on POST /account/two-factor/recovery.
func uiaSession(ctx context.Context, base string, u *user) (string, result) {
	r := do(ctx, httpClient, base, "POST", pRecovery, u.AccessToken, map[string]any{})
	if r.Status != 401 {
		return "", r
	}
	return r.str("session"), r
}
