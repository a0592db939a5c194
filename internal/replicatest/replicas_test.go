package replicatest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// soakDuration bounds the soak: every test run has it.
const soakDuration = 2 * time.Minute

// TestReplicas runs three gateway replicas on one PostgreSQL database behind
// a real nginx (round robin) in front of one Dendrite: what one replica
// consumes or counts, the others see.
func TestReplicas(t *testing.T) {
	hs := tesths.Dendrite(t)
	c := newCluster(t, hs, clusterOptions{replicas: 3, database: pgtest.FreshDatabase(t), nginx: true})
	t.Cleanup(func() {
		// After every subtest, the parallel ones included.
		if errs := c.errorLogs(t); len(errs) > 0 {
			t.Errorf("%d error lines in the gateways' logs, e.g.:\n%s", len(errs), strings.Join(errs[:min(5, len(errs))], "\n"))
		}
	})

	t.Run("one TOTP code, 100 submissions", func(t *testing.T) {
		u := enrolledUser(t, hs, c.lb, "contend-totp")
		sessions := uiaSessions(t, c.lb, u, 100)
		code, _ := u.freshCode(t)
		results := concurrently(100, func(i int) result {
			return do(context.Background(), httpClient, c.lb, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, sessions[i], code))
		})
		oneWinner(t, results, 401, "M_FORBIDDEN")
	})

	t.Run("one recovery code, 100 submissions", func(t *testing.T) {
		u := enrolledUser(t, hs, c.lb, "contend-recovery")
		sessions := uiaSessions(t, c.lb, u, 100)
		results := concurrently(100, func(i int) result {
			return do(context.Background(), httpClient, c.lb, "POST", pRecovery, u.AccessToken, stageAuth(stageRecovery, sessions[i], u.recovery[0]))
		})
		oneWinner(t, results, 401, "M_FORBIDDEN")
	})

	t.Run("one login token, 100 redemptions", func(t *testing.T) {
		u := enrolledUser(t, hs, c.lb, "contend-token")
		token := signInToken(t, c.lb, u)
		before := len(devices(t, hs, u.User))
		results := concurrently(100, func(int) result {
			return do(context.Background(), httpClient, c.lb, "POST", pLogin, "", map[string]any{"type": "m.login.token", "token": token})
		})
		// The losers' token is not the gateway's any more: the homeserver refuses it.
		oneWinner(t, results, 403, "M_FORBIDDEN")
		// The sign-in made the login (and its device); redeeming it makes none.
		if after := len(devices(t, hs, u.User)); after != before {
			t.Errorf("the user has %d devices after the redemptions, %d before", after, before)
		}
	})

	t.Run("lockout counts across replicas", func(t *testing.T) {
		lockoutInTurn(t, c, enrolledUser(t, hs, c.lb, "lockout-turn"))
		lockoutAtOnce(t, c, enrolledUser(t, hs, c.lb, "lockout-once"))
	})

	t.Run("a session started on one replica completes on another", func(t *testing.T) {
		sessionsMove(t, c, enrolledUser(t, hs, c.lb, "moving"))
	})

	// The two slow ones, side by side.
	t.Run("a held login expires and is logged out once", func(t *testing.T) {
		t.Parallel()
		heldExpiresOnce(t, c, enrolledUser(t, hs, c.lb, "expiring"))
	})
	t.Run("soak", func(t *testing.T) {
		t.Parallel()
		soak(t, c)
	})
}

// concurrently runs fn(0..n-1) at once (released together) and returns the results.
func concurrently(n int, fn func(i int) result) []result {
	out := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// uiaSessions starts n UIA sessions on POST /account/two-factor/recovery,
// through the balancer: one code is then contested by n sessions.
func uiaSessions(t *testing.T, base string, u *user, n int) []string {
	t.Helper()
	out := make([]string, n)
	var mu sync.Mutex
	var bad []string
	sem := make(chan struct{}, 10)
	concurrently(n, func(i int) result {
		sem <- struct{}{}
		defer func() { <-sem }()
		s, r := uiaSession(context.Background(), base, u)
		if s == "" {
			mu.Lock()
			bad = append(bad, r.String())
			mu.Unlock()
		}
		out[i] = s
		return r
	})
	if len(bad) > 0 {
		t.Fatalf("%d of %d sessions did not start, e.g. %s", len(bad), n, bad[0])
	}
	return out
}

// oneWinner checks that exactly one result is a 200 and the others are
// loseStatus/loseCode or the lockout's 429, and that every replica answered
// some of them.
func oneWinner(t *testing.T, results []result, loseStatus int, loseCode string) {
	t.Helper()
	wins := 0
	counts := map[string]int{}
	replicas := map[string]int{}
	for _, r := range results {
		replicas[r.Header.Get("X-Upstream")]++
		switch {
		case r.Status == 200:
			wins++
			counts["200"]++
		case r.Status == loseStatus && r.errcode() == loseCode, r.Status == 429 && r.errcode() == "M_LIMIT_EXCEEDED":
			counts[fmt.Sprintf("%d %s", r.Status, r.errcode())]++
		default:
			t.Errorf("unexpected answer: %s", r)
		}
	}
	t.Logf("%d submissions: %v; answered by %v", len(results), counts, replicas)
	if wins != 1 {
		t.Errorf("%d of %d concurrent submissions succeeded; want exactly 1", wins, len(results))
	}
	if len(replicas) < 3 {
		t.Errorf("only %d replicas answered (%v): the balancer did not spread the submissions", len(replicas), replicas)
	}
}

// signInToken signs u in on the sign-in page through the balancer (a code)
// and returns the login token it redirects with.
func signInToken(t *testing.T, base string, u *user) string {
	t.Helper()
	ctx := context.Background()
	b := browser()
	page := form(ctx, b, base, pSignIn, nil)
	if page.Status != 200 || hidden(page.Raw, "csrf") == "" {
		t.Fatalf("sign-in page: %s", page)
	}
	code, _ := u.freshCode(t)
	r := form(ctx, b, base, pSignIn, url.Values{"csrf": {hidden(page.Raw, "csrf")}, "username": {u.Localpart},
		"password": {u.Password}, "code": {code}})
	loc, err := url.Parse(r.Header.Get("Location"))
	if r.Status != 302 || err != nil || loc.Query().Get("loginToken") == "" {
		t.Fatalf("sign-in form: %s (Location %q)", r, r.Header.Get("Location"))
	}
	t.Logf("sign-in page from %s, form to %s", page.Header.Get("X-Upstream"), r.Header.Get("X-Upstream"))
	return loc.Query().Get("loginToken")
}

// lockoutInTurn sends wrong codes one after another, each to the next
// replica: the limit-th failure is the last one checked, whichever replica
// saw the others, and then even a right code is refused unchecked.
func lockoutInTurn(t *testing.T, c *cluster, u *user) {
	t.Helper()
	ctx := context.Background()
	session, r := uiaSession(ctx, c.gws[0].base, u)
	if session == "" {
		t.Fatalf("UIA session: %s", r)
	}
	for i := 1; i <= lockoutLimit+1; i++ {
		g := c.gws[i%len(c.gws)]
		r := do(ctx, httpClient, g.base, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, session, u.wrongCode()))
		want, code := 401, "M_FORBIDDEN"
		if i > lockoutLimit {
			want, code = 429, "M_LIMIT_EXCEEDED"
		}
		if r.Status != want || r.errcode() != code {
			t.Fatalf("wrong code %d (to %s): %s; want %d %s", i, g.name, r, want, code)
		}
	}
	right, _ := u.freshCode(t)
	r = do(ctx, httpClient, c.gws[0].base, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, session, right))
	if r.Status != 429 || r.errcode() != "M_LIMIT_EXCEEDED" {
		t.Fatalf("right code while locked: %s; want 429 M_LIMIT_EXCEEDED", r)
	}
}

// lockoutAtOnce sends 30 wrong codes at once, ten to each replica: exactly
// the limit are checked (401), the rest get 429.
func lockoutAtOnce(t *testing.T, c *cluster, u *user) {
	t.Helper()
	const n = 30
	sessions := make([]string, n)
	for i := range n {
		s, r := uiaSession(context.Background(), c.gws[i%len(c.gws)].base, u)
		if s == "" {
			t.Fatalf("UIA session: %s", r)
		}
		sessions[i] = s
	}
	wrong := u.wrongCode()
	results := concurrently(n, func(i int) result {
		return do(context.Background(), httpClient, c.gws[i%len(c.gws)].base, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, sessions[i], wrong))
	})
	checked, locked := 0, 0
	for _, r := range results {
		switch {
		case r.Status == 401 && r.errcode() == "M_FORBIDDEN":
			checked++
		case r.Status == 429 && r.errcode() == "M_LIMIT_EXCEEDED":
			locked++
		default:
			t.Errorf("unexpected answer: %s", r)
		}
	}
	if checked != lockoutLimit || locked != n-lockoutLimit {
		t.Errorf("%d wrong codes at once over %d replicas: %d checked, %d locked out; want %d and %d",
			n, len(c.gws), checked, locked, lockoutLimit, n-lockoutLimit)
	}
}

// sessionsMove starts sessions on one replica and finishes them on others: a
// UIA session, a held login, and a guarded homeserver operation over three.
func sessionsMove(t *testing.T, c *cluster, u *user) {
	t.Helper()
	ctx := context.Background()
	g0, g1, g2 := c.gws[0].base, c.gws[1].base, c.gws[2].base

	session, r := uiaSession(ctx, g0, u)
	if session == "" {
		t.Fatalf("UIA session on replica0: %s", r)
	}
	code, _ := u.freshCode(t)
	r = do(ctx, httpClient, g1, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, session, code))
	if r.Status != 200 || len(asStrings(r.Body["recovery_codes"])) != 10 {
		t.Fatalf("TOTP stage on replica1 of a session from replica0: %s", r)
	}
	u.recovery = asStrings(r.Body["recovery_codes"])

	r = passwordLogin(ctx, g2, u.User, "moved")
	if r.Status != 401 || r.str("session") == "" {
		t.Fatalf("password login on replica2: %s", r)
	}
	r = do(ctx, httpClient, g0, "POST", pLogin, "", stageAuth(stageRecovery, r.str("session"), u.recovery[0]))
	if r.Status != 200 || r.str("user_id") != u.UserID {
		t.Fatalf("recovery stage on replica0 of a login held by replica2: %s", r)
	}
	moved, movedToken := r.str("device_id"), r.str("access_token")
	if w := do(ctx, httpClient, g1, "GET", pWhoAmI, movedToken, nil); w.Status != 200 || w.str("device_id") != moved {
		t.Fatalf("whoami on replica1 with the released login: %s", w)
	}

	// The TOTP stage on replica1 made u's token, from this client, trusted
	// on every replica: replica2 asks only for the homeserver's own stage.
	path := pDevices + "/" + url.PathEscape(moved)
	r = do(ctx, httpClient, g2, "DELETE", path, u.AccessToken, map[string]any{})
	if r.Status != 401 || r.str("session") == "" || strings.Contains(string(r.Raw), "m.login.2fa") {
		t.Fatalf("DELETE device on replica2 by the trusted client: %s; want the homeserver's challenge alone", r)
	}

	// Sign the new device out with its own token (not trusted): the 2FA
	// stage in front of the homeserver's password stage, one round per replica.
	r = do(ctx, httpClient, g1, "DELETE", path, movedToken, map[string]any{})
	if r.Status != 401 || r.str("session") == "" {
		t.Fatalf("DELETE device on replica1: %s", r)
	}
	session = r.str("session")
	r = do(ctx, httpClient, g2, "DELETE", path, movedToken, stageAuth(stageRecovery, session, u.recovery[1]))
	if r.Status != 401 || !slices.Contains(asStrings(r.Body["completed"]), stageRecovery) {
		t.Fatalf("recovery stage on replica2: %s; want 401 with it completed", r)
	}
	r = do(ctx, httpClient, g0, "DELETE", path, movedToken, map[string]any{"auth": passwordAuth(u.User, session)})
	if r.Status != 200 {
		t.Fatalf("password stage on replica0: %s", r)
	}
	for _, d := range devices(t, c.hs, u.User) {
		if d.ID == moved {
			t.Fatalf("device %s still there after the operation completed", moved)
		}
	}
}

// heldExpiresOnce holds a login on one replica and leaves it: it is logged
// out at the homeserver once the TTL is over (within a sweep), by exactly one
// of the three sweepers, and cannot be completed on any replica after.
func heldExpiresOnce(t *testing.T, c *cluster, u *user) {
	t.Helper()
	ctx := context.Background()
	r := passwordLogin(ctx, c.gws[1].base, u.User, "expire-me")
	if r.Status != 401 || r.str("session") == "" {
		t.Fatalf("password login: %s", r)
	}
	session, heldAt := r.str("session"), r.End
	present := func() bool {
		return slices.ContainsFunc(devices(t, c.hs, u.User), func(d device) bool { return d.Name == "expire-me" })
	}
	if !present() {
		t.Fatal("the held login has no device at the homeserver")
	}
	var gone time.Time
	for deadline := heldAt.Add(heldTTL + sweepInterval + 15*time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if !present() {
			gone = time.Now()
			break
		}
	}
	if gone.IsZero() {
		t.Fatalf("the held login was still logged in %s after it was held (TTL %s, sweep every %s)",
			time.Since(heldAt).Round(time.Second), heldTTL, sweepInterval)
	}
	if early := gone.Sub(heldAt); early < heldTTL-time.Second {
		t.Fatalf("the held login was logged out after %s, before its TTL of %s", early, heldTTL)
	}
	t.Logf("logged out %s after it was held", gone.Sub(heldAt).Round(100*time.Millisecond))
	time.Sleep(sweepInterval + time.Second) // every replica has swept since

	code, _ := u.freshCode(t)
	r = do(ctx, httpClient, c.gws[2].base, "POST", pLogin, "", stageAuth(stageTOTP, session, code))
	if r.Status != 400 || r.errcode() != "M_INVALID_PARAM" {
		t.Errorf("completing the expired login on replica2: %s; want 400 M_INVALID_PARAM", r)
	}
	var lines []string
	for _, g := range c.gws {
		for _, l := range g.logLines(t) {
			if l.str("user_id") == u.UserID && strings.HasPrefix(l.str("msg"), "held login") {
				lines = append(lines, g.name+": "+l.str("level")+" "+l.str("msg"))
			}
		}
	}
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "info held login expired; logged out at the homeserver") {
		t.Errorf("the replicas logged about the held login:\n%s\nwant one info line: held login expired; logged out at the homeserver",
			strings.Join(lines, "\n"))
	}
}

// soakMix is the soak's traffic: pass-through, logins with and without 2FA,
// UIA with codes, the sign-in page, enrolments, abandoned logins.
var soakMix = mix{
	{"versions", 15, opVersions},
	{"whoami", 20, opWhoAmI},
	{"status", 10, opStatus},
	{"plain-login", 10, opPlainLogin},
	{"2fa-login", 12, opLogin2FA},
	{"password+code", 5, opPasswordCode},
	{"uia", 4, opUIA},
	{"sign-in", 3, opSignIn},
	{"enrol", 3, opEnrol},
	{"abandon", 2, opAbandon},
}

// soak runs mixed traffic through the balancer for soakDuration and expects
// no unexpected answer at all; it prints its figures.
func soak(t *testing.T, c *cluster) {
	twoFA := newUsers(t, c.hs, c.lb, "soak-2fa", 24, true)
	plain := newUsers(t, c.hs, c.lb, "soak-plain", 6, false)
	l := newLoad(c.hs, c.lb, "soak", twoFA, plain, 30)
	ctx, cancel := context.WithTimeout(context.Background(), soakDuration)
	defer cancel()
	start := time.Now()
	const workers = 6
	l.run(ctx, workers, soakMix)
	took := time.Since(start)
	st := l.stats()
	line := fmt.Sprintf("soak: %d replicas behind nginx on one PostgreSQL, %d workers, %s: %d requests (%.0f/s), %d errors, p50 %s, p99 %s, max %s",
		len(c.gws), workers, took.Round(time.Second), st.requests, float64(st.requests)/took.Seconds(), st.errors,
		st.p50.Round(100*time.Microsecond), st.p99.Round(100*time.Microsecond), st.max.Round(time.Millisecond))
	t.Log(line)
	t.Logf("soak operations: %s", l.ops())
	fmt.Println(line)
	if n, shown := l.failures(func(exchange) bool { return true }, 10); n > 0 {
		t.Errorf("%d unexpected answers in the soak, e.g.:\n%s", n, strings.Join(shown, "\n"))
	}
	l.checkCodesOnce(t)
	l.checkEnrolments(t, c.lb)
}
