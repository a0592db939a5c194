package gateway_test

// Red team of the one-transaction TOTP check through the gateway's entry
// points (fake homeserver, real SQLite file): one code sent at once to a held
// /login, a guarded endpoint's stage, an own endpoint's stage, the fallback
// page and the sign-in page; races on one held login; a client that hangs up
// right after sending its code; the database locked during the check. Each
// test fails if its attack succeeds.
//
// Failing test (finding) at the time of writing:
//   - TestRedTeamTOTPGatewayLockedDBIs503: the SQLite file's write lock held
//     by another process (CLI, backup) during a held login's code check
//     answers 500 M_UNKNOWN, not 503.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/storage/postgres"
)

// codeNow is alice's code of the current step, the clock left where it is.
func (e *fast) codeNow(offset int) string {
	e.t.Helper()
	p := e.acc.Params()
	c, err := account.CodeAt(e.secrets[alice], account.Step(e.clock.Now(), p.Period)+int64(offset), p)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// rtPost sends a form as c without failing the test (goroutine-safe).
func (c *pgClient) rtPost(path string, fields ...string) (int, string, http.Header, error) {
	form := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Add(fields[i], fields[i+1])
	}
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(raw), res.Header, nil
}

// rtJSON sends a JSON request without failing the test (goroutine-safe).
func rtJSON(base, method, path, token string, body any) (int, map[string]any, error) {
	j, _ := json.Marshal(body)
	req, err := http.NewRequest(method, base+path, strings.NewReader(string(j)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	json.Unmarshal(raw, &out)
	return res.StatusCode, out, nil
}

// TestRedTeamTOTPGatewayMixedReplay: 20 requests carrying one code at once,
// spread over five entry points (held /login, guarded endpoint stage, own
// endpoint stage, fallback page of a guarded session, sign-in page), each
// with its own session: exactly one is let through, none is a 5xx. Then the
// same code, sequentially, through each entry point: refused everywhere.
func TestRedTeamTOTPGatewayMixedReplay(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	const ownPath = "/_matrix/client/v3/account/two-factor/recovery"
	type attempt struct {
		name string
		send func(code string) (ok bool, status int, err error)
	}
	makeAttempt := func(kind int) attempt {
		switch kind {
		case 0: // held /login
			r := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
			wantChallenge(t, r, passwordThen2FA, []string{"m.login.password"})
			s := r.str("session")
			return attempt{"held login", func(code string) (bool, int, error) {
				st, _, err := rtJSON(e.srv.URL, "POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
				return st == 200, st, err
			}}
		case 1: // guarded endpoint stage
			r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
			s := r.str("session")
			return attempt{"guarded", func(code string) (bool, int, error) {
				st, b, err := rtJSON(e.srv.URL, "POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"},
					"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
				done, _ := b["completed"].([]any)
				return st == 401 && len(done) == 1 && b["errcode"] == nil, st, err
			}}
		case 2: // own endpoint stage
			r := e.do("POST", ownPath, aliceTok, obj{})
			s := r.str("session")
			return attempt{"own endpoint", func(code string) (bool, int, error) {
				st, _, err := rtJSON(e.srv.URL, "POST", ownPath, aliceTok, obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
				return st == 200, st, err
			}}
		case 3: // fallback page of a guarded session
			r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
			s := r.str("session")
			c := e.pages()
			page := totpFallback + "?session=" + url.QueryEscape(s)
			get := c.get(page)
			pgWant(t, get, 200, `name="code"`)
			csrf := get.hidden("csrf")
			return attempt{"fallback", func(code string) (bool, int, error) {
				st, body, _, err := c.rtPost(page, "csrf", csrf, "code", code)
				return st == 200 && !strings.Contains(body, `name="code"`), st, err
			}}
		default: // sign-in page
			c, page := e.pages(), ssoPage(ssoAllowed)
			p := c.ssoCredentials(page, "alice", alicePW)
			pgWant(t, p, 200, `name="code"`)
			return attempt{"sign-in page", func(code string) (bool, int, error) {
				st, _, h, err := c.rtPost(page, "csrf", p.hidden("csrf"), "step", "code", "session", p.hidden("session"),
					"confirm", p.hidden("confirm"), "code", code)
				return st == 302 && strings.Contains(h.Get("Location"), "loginToken="), st, err
			}}
		}
	}
	for round := range 3 {
		var attempts []attempt
		for i := range 20 {
			attempts = append(attempts, makeAttempt(i%5))
		}
		code := e.codeNow(0)
		var mu sync.Mutex
		var winners []string
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, a := range attempts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, st, err := a.send(code)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || st >= 500 {
					t.Errorf("%s: %d %v", a.name, st, err)
				}
				if ok {
					winners = append(winners, a.name)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: one code let through %d times: %v", round, len(winners), winners)
		}
		// the same code again, sequentially, through every entry point
		for k := range 5 {
			a := makeAttempt(k)
			if ok, st, err := a.send(code); ok || err != nil || st >= 500 {
				t.Fatalf("round %d: replay through %s: ok %v, %d %v", round, a.name, ok, st, err)
			}
		}
		e.db.ClearFailures(context.Background(), alice)
		e.clock.Add(30 * time.Second)
	}
}

// TestRedTeamTOTPGatewayHeldRace: 20 requests on one held login at once,
// with the codes of two accepted steps: one login is released, once; no
// answer is a 5xx; no answer but one carries the token.
func TestRedTeamTOTPGatewayHeldRace(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	for round := range 3 {
		held := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
		s := held.str("session")
		codes := []string{e.codeNow(0), e.codeNow(1)}
		var mu sync.Mutex
		statuses := map[string]int{}
		released := 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st, b, err := rtJSON(e.srv.URL, "POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": codes[i%2]}})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				statuses[fmt.Sprintf("%d %v", st, b["errcode"])]++
				if b["access_token"] != nil {
					released++
				}
			}()
		}
		close(start)
		wg.Wait()
		t.Logf("round %d: %v", round, statuses)
		if released != 1 {
			t.Fatalf("round %d: the held login was released %d times: %v", round, released, statuses)
		}
		for k := range statuses {
			if strings.HasPrefix(k, "5") {
				t.Fatalf("round %d: a 5xx in the race: %v", round, statuses)
			}
		}
		e.db.ClearFailures(context.Background(), alice)
		e.clock.Add(90 * time.Second)
	}
}

// TestRedTeamTOTPGatewayHangUp: a client sends a held login's code and
// closes the connection at once, 30 times: the code's step and the session
// move together (never the session released with the step unused, which a
// replay of the code would exploit); the code never works a second time.
// A released-but-undelivered login is counted (its homeserver token then
// lives on, logged out by no one).
func TestRedTeamTOTPGatewayHangUp(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	u, _ := url.Parse(e.srv.URL)
	orphans := 0
	for i := range 30 {
		held := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
		s := held.str("session")
		tok := e.hs.lastIssued(t)
		before, err := e.db.TOTP(context.Background(), alice)
		if err != nil {
			t.Fatal(err)
		}
		code := e.codeNow(0)
		body, _ := json.Marshal(obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", loginPath, u.Host, len(body), body)
		if i%3 == 0 {
			bufio.NewReader(conn).Peek(1) //nolint:errcheck // the answer starts: close at once
		} else {
			time.Sleep(time.Duration(i*50) * time.Microsecond)
		}
		conn.Close()
		time.Sleep(50 * time.Millisecond) // let the handler finish
		after, _ := e.db.TOTP(context.Background(), alice)
		_, serr := e.db.Session(context.Background(), s)
		advanced, gone := after.LastStep != before.LastStep, serr != nil
		if advanced != gone {
			t.Fatalf("hang-up %d: step advanced %v, session gone %v", i, advanced, gone)
		}
		// the same code can never work again, on a fresh held login
		h2 := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
		r2 := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": h2.str("session"), "code": code}})
		if advanced && r2.Status == 200 {
			t.Fatalf("hang-up %d: the code worked a second time", i)
		}
		if gone {
			logged := false
			for _, lo := range e.hs.loggedOut() {
				logged = logged || lo == tok
			}
			if !logged {
				orphans++
			}
		}
		e.db.ClearFailures(context.Background(), alice)
		e.clock.Add(30 * time.Second)
	}
	t.Logf("%d of 30 hang-ups released a held login nobody received (its homeserver token not logged out)", orphans)
}

// TestRedTeamTOTPGatewayLockedDBIs503: another process holds the SQLite
// write lock while a held login's code is checked: the answer is a Matrix
// 503 (database unavailable), never a 500; the code still works afterwards.
func TestRedTeamTOTPGatewayLockedDBIs503(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 10 s busy timeout")
	}
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	mine := t.TempDir()
	paths, _ := filepath.Glob(filepath.Join(filepath.Dir(mine), "*", "2fa.db"))
	if len(paths) != 1 {
		t.Fatalf("database files %v", paths)
	}
	held := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
	s := held.str("session")
	other, err := sql.Open("sqlite3", "file:"+paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	code := e.codeNow(0)
	r := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
	conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
	r2 := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
	if r2.Status != 200 {
		t.Errorf("after the lock: %d %s; want the login released", r2.Status, r.Raw)
	}
	if r.Status != 503 {
		t.Fatalf("database locked during the check: %d %s; want 503", r.Status, r.Raw)
	}
}

// rtReplicas is n gateways on one PostgreSQL database (replicas behind a
// load balancer), in front of one fake homeserver, alice enrolled.
type rtReplicas struct {
	t      *testing.T
	hs     *fakeHS
	urls   []string
	stores []*postgres.DB
	clock  *clock
	acc    *account.Service
	secret []byte
}

func newReplicas(t *testing.T, n int) *rtReplicas {
	t.Helper()
	dbURL := pgtest.FreshDatabase(t)
	c := &clock{t: fastEpoch}
	box, err := account.NewSecretBox(account.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	hs := newFakeHS(t)
	hs.addUser(alice, alicePW, aliceTok, "ALICEDEV")
	acfg := account.DefaultConfig()
	acfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	gcfg := gateway.Config{LoginTTL: 5 * time.Minute, TokenTTL: 2 * time.Minute, UIATTL: 15 * time.Minute,
		SSOProviderID: "matrix-2fa", SSOProviderName: "Sign in with 2FA", RedirectAllowlist: []string{ssoAllowed}}
	r := &rtReplicas{t: t, hs: hs, clock: c}
	for i := range n {
		db, err := postgres.Open(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := account.CheckKey(context.Background(), db, box); err != nil {
			t.Fatal(err)
		}
		acc, err := account.NewService(db, box, acfg, account.WithClock(c.Now), account.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		gw := gateway.New(gateway.Options{Config: gcfg, Homeserver: hs, Accounts: acc, Store: db, Box: box, Logger: quietLogger(), Now: c.Now})
		srv := httptest.NewServer(gw.Handler())
		t.Cleanup(srv.Close)
		r.urls, r.stores = append(r.urls, srv.URL), append(r.stores, db)
		if i == 0 {
			r.acc = acc
		}
	}
	en, err := r.acc.Enrol(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if r.secret, err = decodeB32(en.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := r.acc.Confirm(context.Background(), alice, r.codeNow(0)); err != nil {
		t.Fatal(err)
	}
	c.Add(30 * time.Second)
	return r
}

func (r *rtReplicas) codeNow(offset int) string {
	r.t.Helper()
	p := r.acc.Params()
	c, err := account.CodeAt(r.secret, account.Step(r.clock.Now(), p.Period)+int64(offset), p)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rtReplicas) wrongCode() string {
	valid := map[string]bool{}
	for o := -3; o <= 3; o++ {
		valid[r.codeNow(o)] = true
	}
	for d := '0'; ; d++ {
		if c := strings.Repeat(string(d), 6); !valid[c] {
			return c
		}
	}
}

// TestRedTeamTOTPReplicasReplay: two gateway replicas on one PostgreSQL
// database; one code sent 20 times at once, alternately to each replica,
// on held logins (one shared, others each its own) and guarded endpoint
// stages: exactly one request gets through; no 5xx.
func TestRedTeamTOTPReplicasReplay(t *testing.T) {
	r := newReplicas(t, 2)
	for round := range 3 {
		type send func() (bool, int, error)
		var sends []send
		shared := ""
		for i := range 20 {
			base := r.urls[i%2]
			switch i % 4 {
			case 0, 1: // a held login, created on the other replica
				st, b, err := rtJSON(r.urls[(i+1)%2], "POST", loginPath, "", passwordLogin("alice", alicePW))
				if err != nil || st != 401 {
					t.Fatalf("held login: %d %v", st, err)
				}
				s, _ := b["session"].(string)
				if i%4 == 0 {
					if shared == "" {
						shared = s
					}
					s = shared
				}
				sends = append(sends, func() (bool, int, error) {
					code := r.codeNow(0)
					st, b, err := rtJSON(base, "POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
					return st == 200 && b["access_token"] != nil, st, err
				})
			default: // a guarded endpoint's stage
				st, b, err := rtJSON(r.urls[(i+1)%2], "POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
				if err != nil || st != 401 {
					t.Fatalf("guarded: %d %v", st, err)
				}
				s, _ := b["session"].(string)
				sends = append(sends, func() (bool, int, error) {
					st, b, err := rtJSON(base, "POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"},
						"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": r.codeNow(0)}})
					done, _ := b["completed"].([]any)
					return st == 401 && len(done) == 1 && b["errcode"] == nil, st, err
				})
			}
		}
		var mu sync.Mutex
		wins := 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range sends {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, st, err := s()
				mu.Lock()
				defer mu.Unlock()
				if err != nil || st >= 500 {
					t.Errorf("%d %v", st, err)
				}
				if ok {
					wins++
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: one code got through %d times across two replicas", round, wins)
		}
		r.stores[0].ClearFailures(context.Background(), alice)
		r.clock.Add(30 * time.Second)
	}
}

// TestRedTeamTOTPReplicasLockout: 30 wrong codes at once on guarded
// endpoint sessions (held logins are bounded per user), alternately to two
// replicas: exactly LockoutLimit (5) are checked (401
// M_FORBIDDEN), the rest refused as locked (429); then the right code is
// refused too, on either replica.
func TestRedTeamTOTPReplicasLockout(t *testing.T) {
	r := newReplicas(t, 2)
	var sessions []string
	for i := range 30 {
		st, b, err := rtJSON(r.urls[i%2], "POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
		if err != nil || st != 401 {
			t.Fatalf("guarded: %d %v", st, err)
		}
		s, _ := b["session"].(string)
		sessions = append(sessions, s)
	}
	wrong := r.wrongCode()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, b, err := rtJSON(r.urls[(i+1)%2], "POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"},
				"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": wrong}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
			}
			counts[fmt.Sprintf("%d %v", st, b["errcode"])]++
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("%v", counts)
	if counts["401 M_FORBIDDEN"] != 5 || counts["429 M_LIMIT_EXCEEDED"] != 25 {
		t.Fatalf("30 concurrent wrong codes on two replicas: %v; want 5 checked, 25 locked", counts)
	}
	for i := range 2 {
		st, b, _ := rtJSON(r.urls[i], "POST", loginPath, "", passwordLogin("alice", alicePW))
		s, _ := b["session"].(string)
		st, b, _ = rtJSON(r.urls[i], "POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": r.codeNow(0)}})
		if st != 429 {
			t.Fatalf("replica %d: a locked user's right code: %d %v", i, st, b)
		}
	}
}

// TestRedTeamTOTPNothingSecretLogged: right, wrong, replayed and locked-out
// codes through /login and a guarded endpoint: no log entry (message or
// field, at debug level) holds a code, the secret or the held token.
func TestRedTeamTOTPNothingSecretLogged(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	var sent []string
	held := func(code string) {
		h := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
		e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": h.str("session"), "code": code}})
		sent = append(sent, code)
	}
	guarded := func(code string) {
		r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
		e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}, "auth": obj{"type": "m.login.2fa.totp", "session": r.str("session"), "code": code}})
		sent = append(sent, code)
	}
	right := e.codeNow(0)
	held(right)
	guarded(right) // replay
	held(right)    // replay
	for range 5 {
		guarded(e.wrongCode(alice))
	}
	held(e.codeNow(1)) // locked out, right code
	token := e.hs.lastIssued(t)
	secrets := append(sent, base32NoPad(e.secrets[alice]), token)
	for _, en := range e.logs.AllEntries() {
		line := en.Message
		for k, v := range en.Data {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log entry holds %q: %s", s, line)
			}
		}
	}
}

// TestRedTeamTOTPDisableReplay: a code used on a held /login, replayed on
// DELETE /account/two-factor/totp (after the password stage), is refused
// and 2FA stays on; the next code turns it off, once.
func TestRedTeamTOTPDisableReplay(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	const path = "/_matrix/client/v3/account/two-factor/totp"
	code := e.codeNow(0)
	h := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
	expect(t, e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": h.str("session"), "code": code}}), 200, "")
	ch := e.do("DELETE", path, aliceTok, obj{})
	s := ch.str("session")
	r := e.do("DELETE", path, aliceTok, obj{"auth": obj{"type": "m.login.password", "session": s, "identifier": userID("alice"), "password": alicePW}})
	wantChallenge(t, r, passwordThen2FA, []string{"m.login.password"})
	r = e.do("DELETE", path, aliceTok, obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": code}})
	if r.Status == 200 {
		t.Fatal("2FA turned off with a replayed code")
	}
	if on, err := e.acc.Enabled(context.Background(), alice); err != nil || !on {
		t.Fatalf("2FA on: %v %v", on, err)
	}
	r = e.do("DELETE", path, aliceTok, obj{"auth": obj{"type": "m.login.2fa.totp", "session": s, "code": e.codeNow(1)}})
	expect(t, r, 200, "")
	if on, _ := e.acc.Enabled(context.Background(), alice); on {
		t.Fatal("2FA still on after the next code")
	}
}

// TestRedTeamTOTPLockedSameAnswer: once alice is locked out, her right code
// and a wrong one get byte-identical answers on a held /login and on a
// guarded endpoint, and neither moves her last step; the held logins both
// die (logged out at the homeserver).
func TestRedTeamTOTPLockedSameAnswer(t *testing.T) {
	e := newFast(t)
	e.clock.Add(30 * time.Second)
	for range 5 {
		r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
		e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}, "auth": obj{"type": "m.login.2fa.totp", "session": r.str("session"), "code": e.wrongCode(alice)}})
	}
	before, _ := e.db.TOTP(context.Background(), alice)
	answer := func(code string, heldLogin bool) string {
		if heldLogin {
			h := e.do("POST", loginPath, "", passwordLogin("alice", alicePW))
			r := e.do("POST", loginPath, "", obj{"auth": obj{"type": "m.login.2fa.totp", "session": h.str("session"), "code": code}})
			return fmt.Sprintf("%d %s %s", r.Status, r.Header.Get("Retry-After"), r.Raw)
		}
		g := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}})
		r := e.do("POST", deleteDevices, aliceTok, obj{"devices": []string{"D1"}, "auth": obj{"type": "m.login.2fa.totp", "session": g.str("session"), "code": code}})
		return fmt.Sprintf("%d %s %s", r.Status, r.Header.Get("Retry-After"), r.Raw)
	}
	for _, heldLogin := range []bool{true, false} {
		right, wrong := answer(e.codeNow(0), heldLogin), answer(e.wrongCode(alice), heldLogin)
		if right != wrong || !strings.HasPrefix(right, "429 ") {
			t.Fatalf("held %v: locked answers differ or are not 429:\n right %s\n wrong %s", heldLogin, right, wrong)
		}
	}
	if after, _ := e.db.TOTP(context.Background(), alice); after.LastStep != before.LastStep {
		t.Fatal("a locked user's right code moved the step")
	}
}
