package replicatest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// exchange is one recorded HTTP request of a load: which operation it was
// part of, what came back and whether that was what the operation expected.
type exchange struct {
	op, step   string
	status     int
	errcode    string
	body       string // the start of an unexpected answer
	transport  string
	start, end time.Time
	ok         bool
}

func (e exchange) String() string {
	what := fmt.Sprintf("%d %s", e.status, e.body)
	if e.transport != "" {
		what = "transport: " + e.transport
	}
	return fmt.Sprintf("%s/%s at %s: %s", e.op, e.step, e.start.Format("15:04:05.000"), what)
}

// outcome is what became of one homeserver login the load started.
type outcome int

const (
	notSent  outcome = iota // refused connection: nothing reached a gateway
	held                    // 401 with a session: the gateway holds the login
	released                // 200 with the login: the client has it
	refused                 // a 4xx before any login was made
	unknown                 // cut off (gateway killed, 5xx): anything may have happened
)

// loginRecord is one login attempt, named by its device's display name.
type loginRecord struct {
	user     *user
	outcome  outcome
	deviceID string
	kept     bool // released and left logged in
	// start and end span the request that decided the outcome.
	start, end time.Time
}

// window is a span of time in which a fault (a crash, an outage) happened.
type window struct{ from, to time.Time }

// cutOff reports whether r ended without an answer from a gateway: a
// transport error other than a refused connection, or a 5xx that is not a
// gateway's Matrix error (nginx's own 502 for a replica that died under it).
func cutOff(r result) bool {
	return (r.Err != nil && !r.refused()) || (r.Status >= 500 && r.errcode() == "")
}

// stepKey is one TOTP code: a user's time step.
type stepKey struct {
	user string
	step int64
}

// load runs operations against base and records every exchange and every
// invariant-relevant fact (logins, accepted codes, confirmed enrolments).
type load struct {
	hs     *dendrite.Server
	base   string
	prefix string // device names and new localparts start with it

	pool  *userPool // users with 2FA
	plain []*user   // users without

	seq       atomic.Int64
	enrolLeft atomic.Int64 // enrolments still allowed

	mu        sync.Mutex
	exchanges []exchange
	logins    map[string]*loginRecord // by device display name
	accepted  map[stepKey]int         // 200s per code
	confirmed []*user                 // enrolments whose confirmation got 200
	opCounts  map[string]int
}

func newLoad(hs *dendrite.Server, base, prefix string, twoFA, plain []*user, enrolments int) *load {
	l := &load{hs: hs, base: base, prefix: prefix, pool: &userPool{users: twoFA}, plain: plain,
		logins: map[string]*loginRecord{}, accepted: map[stepKey]int{}, opCounts: map[string]int{}}
	l.enrolLeft.Store(int64(enrolments))
	return l
}

// record notes one exchange; ok says it was what the operation expected.
func (l *load) record(op, step string, r result, ok bool) bool {
	e := exchange{op: op, step: step, status: r.Status, errcode: r.errcode(), start: r.Start, end: r.End, ok: ok && r.Err == nil}
	if r.Err != nil {
		e.transport = r.Err.Error()
	}
	if !e.ok {
		e.body = strings.TrimSpace(string(r.Raw[:min(len(r.Raw), 160)]))
	}
	l.mu.Lock()
	l.exchanges = append(l.exchanges, e)
	l.mu.Unlock()
	return e.ok
}

// userPool hands out users with 2FA one at a time, each with a TOTP step it
// has never submitted.
type userPool struct {
	mu    sync.Mutex
	users []*user
}

// take returns an idle user with an unused step the gateway accepts now.
func (p *userPool) take() (*user, int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, i := range rand.Perm(len(p.users)) {
		u := p.users[i]
		if u.busy {
			continue
		}
		if s, ok := u.nextStep(now); ok {
			u.busy = true
			return u, s, true
		}
	}
	return nil, 0, false
}

// any returns an idle user (no step), marked busy.
func (p *userPool) any() (*user, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, i := range rand.Perm(len(p.users)) {
		if u := p.users[i]; !u.busy {
			u.busy = true
			return u, true
		}
	}
	return nil, false
}

func (p *userPool) put(u *user) { p.mu.Lock(); u.busy = false; p.mu.Unlock() }

func (p *userPool) add(u *user) { p.mu.Lock(); p.users = append(p.users, u); p.mu.Unlock() }

// opFunc is one operation; it returns false when there was nothing it could
// do (no code available), so the worker picks another.
type opFunc func(ctx context.Context, l *load) bool

// mix is a weighted set of operations.
type mix []struct {
	name   string
	weight int
	fn     opFunc
}

// run runs workers that pick operations from m until ctx ends.
func (l *load) run(ctx context.Context, workers int, m mix) {
	total := 0
	for _, o := range m {
		total += o.weight
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := rand.IntN(total)
				for _, o := range m {
					if n -= o.weight; n < 0 {
						if o.fn(ctx, l) {
							l.mu.Lock()
							l.opCounts[o.name]++
							l.mu.Unlock()
						} else {
							time.Sleep(5 * time.Millisecond)
						}
						break
					}
				}
			}
		}()
	}
	wg.Wait()
}

// reqCtx is a context for one request that outlives the load's end by a
// little, so an operation started is finished rather than cut off.
func reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
}

func (l *load) deviceName(kind string) string {
	return fmt.Sprintf("%s-%s-%d", l.prefix, kind, l.seq.Add(1))
}

// noteLogin records the login attempt behind device name from r, a /login
// first step (or the only one).
func (l *load) noteLogin(name string, u *user, r result) *loginRecord {
	rec := &loginRecord{user: u, start: r.Start, end: r.End}
	switch {
	case r.Err != nil && r.refused():
		rec.outcome = notSent
	case r.Status == 401 && r.str("session") != "":
		rec.outcome = held
	case r.Status == 200:
		rec.outcome, rec.deviceID = released, r.str("device_id")
	case r.Status >= 400 && r.Status < 500:
		rec.outcome = refused
	default: // cut off, or a gateway's 502/503 while the homeserver may have logged it in
		rec.outcome = unknown
	}
	l.mu.Lock()
	l.logins[name] = rec
	l.mu.Unlock()
	return rec
}

// secondStep records the outcome of the code step of a held login: released
// on 200, unknown when r was cut off (the gateway may have released the
// login to a client that never got it), else still held.
func (l *load) secondStep(rec *loginRecord, r result, keep bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case r.Status == 200:
		rec.outcome, rec.deviceID, rec.kept = released, r.str("device_id"), keep
	case cutOff(r):
		rec.outcome = unknown
	default:
		return
	}
	rec.start, rec.end = r.Start, r.End
}

func (l *load) accept(u *user, s int64) {
	l.mu.Lock()
	l.accepted[stepKey{u.UserID, s}]++
	l.mu.Unlock()
}

// logout ends a login the load got (pass-through).
func (l *load) logout(ctx context.Context, op, token string) {
	r := do(ctx, httpClient, l.base, "POST", pLogout, token, map[string]any{})
	l.record(op, "logout", r, r.Status == 200)
}

// opVersions is a pass-through GET.
func opVersions(ctx context.Context, l *load) bool {
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	r := do(rctx, httpClient, l.base, "GET", pVersions, "", nil)
	l.record("versions", "get", r, r.Status == 200)
	return true
}

// opWhoAmI is a pass-through GET with a token.
func opWhoAmI(ctx context.Context, l *load) bool {
	u := l.plain[rand.IntN(len(l.plain))]
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	r := do(rctx, httpClient, l.base, "GET", pWhoAmI, u.AccessToken, nil)
	l.record("whoami", "get", r, r.Status == 200 && r.str("user_id") == u.UserID)
	return true
}

// opStatus reads a user's 2FA status (the gateway's own endpoint).
func opStatus(ctx context.Context, l *load) bool {
	u, ok := l.pool.any()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	r := do(rctx, httpClient, l.base, "GET", pTwoFA, u.AccessToken, nil)
	totp, _ := r.Body["totp"].(map[string]any)
	l.record("status", "get", r, r.Status == 200 && totp["enabled"] == true)
	return true
}

// opPlainLogin logs a user without 2FA in and out.
func opPlainLogin(ctx context.Context, l *load) bool {
	u := l.plain[rand.IntN(len(l.plain))]
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	name := l.deviceName("plain")
	r := passwordLogin(rctx, l.base, u.User, name)
	l.noteLogin(name, u, r)
	if l.record("plain-login", "password", r, r.Status == 200) {
		l.logout(rctx, "plain-login", r.str("access_token"))
	}
	return true
}

// opAbandon starts a login of a user with 2FA and never finishes it: the
// gateway must log it out when it expires.
func opAbandon(ctx context.Context, l *load) bool {
	u, ok := l.pool.any()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	name := l.deviceName("abandon")
	r := passwordLogin(rctx, l.base, u.User, name)
	l.noteLogin(name, u, r)
	l.record("abandon", "password", r, r.Status == 401 && r.str("session") != "")
	return true
}

// login2FA is the two-step /login with a fresh code; keep says whether the
// login stays (else it is logged out).
func login2FA(ctx context.Context, l *load, keep bool) bool {
	u, s, ok := l.pool.take()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	name := l.deviceName("2fa")
	r := passwordLogin(rctx, l.base, u.User, name)
	rec := l.noteLogin(name, u, r)
	if !l.record("2fa-login", "password", r, r.Status == 401 && r.str("session") != "") {
		return true
	}
	r = do(rctx, httpClient, l.base, "POST", pLogin, "", stageAuth(stageTOTP, r.str("session"), codeAt(u.secret, s)))
	if r.Status == 200 {
		l.accept(u, s)
	}
	l.secondStep(rec, r, keep)
	if l.record("2fa-login", "code", r, r.Status == 200 && r.str("user_id") == u.UserID) && !keep {
		l.logout(rctx, "2fa-login", r.str("access_token"))
	}
	return true
}

func opLogin2FA(ctx context.Context, l *load) bool     { return login2FA(ctx, l, false) }
func opLogin2FAKeep(ctx context.Context, l *load) bool { return login2FA(ctx, l, true) }

// opRace holds two logins of one user and sends the same code to both at
// once, each through the balancer: at most one may get in.
func opRace(ctx context.Context, l *load) bool {
	u, s, ok := l.pool.take()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	var sessions []string
	var recs []*loginRecord
	for range 2 {
		name := l.deviceName("race")
		r := passwordLogin(rctx, l.base, u.User, name)
		recs = append(recs, l.noteLogin(name, u, r))
		if !l.record("race", "password", r, r.Status == 401 && r.str("session") != "") {
			return true
		}
		sessions = append(sessions, r.str("session"))
	}
	code := codeAt(u.secret, s)
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = do(rctx, httpClient, l.base, "POST", pLogin, "", stageAuth(stageTOTP, sessions[i], code))
		}()
	}
	wg.Wait()
	wins := 0
	for i, r := range results {
		if r.Status == 200 {
			wins++
			l.accept(u, s)
		}
		l.secondStep(recs[i], r, true)
	}
	// The loser's 401 is right when the other got in, or may have got in
	// before its answer was cut off by a crash.
	partnerIn := wins == 1 || slices.ContainsFunc(results, cutOff)
	for _, r := range results {
		good := (r.Status == 200 && wins == 1) || (r.Status == 401 && r.errcode() == "M_FORBIDDEN" && partnerIn)
		l.record("race", "code", r, good)
	}
	return true
}

// opPasswordCode logs in with the code typed after the password, in one request.
func opPasswordCode(ctx context.Context, l *load) bool {
	u, s, ok := l.pool.take()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	name := l.deviceName("pwcode")
	withCode := *u.User
	withCode.Password += codeAt(u.secret, s)
	r := passwordLogin(rctx, l.base, &withCode, name)
	l.noteLogin(name, u, r)
	if r.Status == 200 {
		l.accept(u, s)
	}
	if l.record("password+code", "login", r, r.Status == 200 && r.str("user_id") == u.UserID) {
		l.logout(rctx, "password+code", r.str("access_token"))
	}
	return true
}

// opUIA regenerates a user's recovery codes: a UIA session, then its TOTP stage.
func opUIA(ctx context.Context, l *load) bool {
	u, s, ok := l.pool.take()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	session, r := uiaSession(rctx, l.base, u)
	if !l.record("uia", "start", r, session != "") {
		return true
	}
	r = do(rctx, httpClient, l.base, "POST", pRecovery, u.AccessToken, stageAuth(stageTOTP, session, codeAt(u.secret, s)))
	if r.Status == 200 {
		l.accept(u, s)
	}
	l.record("uia", "code", r, r.Status == 200 && len(asStrings(r.Body["recovery_codes"])) == 10)
	return true
}

// opSignIn signs in on the "Sign in with 2FA" page (page and form may reach
// different replicas: the cookie and CSRF token must hold across them) and
// redeems the login token.
func opSignIn(ctx context.Context, l *load) bool {
	u, s, ok := l.pool.take()
	if !ok {
		return false
	}
	defer l.pool.put(u)
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	b := browser()
	page := form(rctx, b, l.base, pSignIn, nil)
	if !l.record("sign-in", "page", page, page.Status == 200 && hidden(page.Raw, "csrf") != "") {
		return true
	}
	r := form(rctx, b, l.base, pSignIn, url.Values{"csrf": {hidden(page.Raw, "csrf")}, "username": {u.Localpart},
		"password": {u.Password}, "code": {codeAt(u.secret, s)}})
	loc, _ := url.Parse(r.Header.Get("Location"))
	token := ""
	if loc != nil {
		token = loc.Query().Get("loginToken")
	}
	if r.Status == 302 && token != "" {
		l.accept(u, s)
	}
	if !l.record("sign-in", "form", r, r.Status == 302 && token != "" && strings.HasPrefix(loc.String(), allowedTarget)) {
		return true
	}
	r = do(rctx, httpClient, l.base, "POST", pLogin, "", map[string]any{"type": "m.login.token", "token": token})
	if l.record("sign-in", "token", r, r.Status == 200 && r.str("user_id") == u.UserID) {
		l.logout(rctx, "sign-in", r.str("access_token"))
	}
	return true
}

// opEnrol registers a user (through the gateway: /register passes through)
// and enrols it; a confirmed user joins the pool.
func opEnrol(ctx context.Context, l *load) bool {
	if l.enrolLeft.Add(-1) < 0 {
		return false
	}
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	localpart := fmt.Sprintf("%s-enrol-%d", l.prefix, l.seq.Add(1))
	du, r, err := register(rctx, l.base, localpart)
	l.record("enrol", "register", r, err == nil)
	if err != nil {
		return true
	}
	u, rs, err := enrol(rctx, l.base, du)
	for i, r := range rs {
		l.record("enrol", []string{"start", "password", "confirm"}[i], r, err == nil || i < len(rs)-1)
	}
	if err == nil {
		l.mu.Lock()
		l.confirmed = append(l.confirmed, u)
		l.mu.Unlock()
		l.pool.add(u)
	}
	return true
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// stats summarises the exchanges: how many, how many unexpected, latency.
type stats struct {
	requests, errors int
	p50, p99, max    time.Duration
}

func (l *load) stats() stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st stats
	lat := make([]time.Duration, 0, len(l.exchanges))
	for _, e := range l.exchanges {
		st.requests++
		if !e.ok {
			st.errors++
		}
		lat = append(lat, e.end.Sub(e.start))
	}
	if len(lat) == 0 {
		return st
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st.p50, st.p99, st.max = lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	return st
}

// failures are the unexpected exchanges, at most n of them described.
func (l *load) failures(keep func(exchange) bool, n int) (count int, shown []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.exchanges {
		if !e.ok && keep(e) {
			count++
			if len(shown) < n {
				shown = append(shown, e.String())
			}
		}
	}
	return count, shown
}

// ops describes how often each operation ran.
func (l *load) ops() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var names []string
	for n := range l.opCounts {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", n, l.opCounts[n])
	}
	return b.String()
}

// checkCodesOnce fails the test for any code (user, step) accepted twice.
func (l *load) checkCodesOnce(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.accepted {
		if n > 1 {
			t.Errorf("the code of %s for step %d was accepted %d times", k.user, k.step, n)
		}
	}
	t.Logf("%d codes accepted, each once", len(l.accepted))
}

// checkEnrolments fails the test for a confirmed enrolment whose user has
// 2FA off (asked through base).
func (l *load) checkEnrolments(t testing.TB, base string) {
	t.Helper()
	l.mu.Lock()
	confirmed := slices.Clone(l.confirmed)
	l.mu.Unlock()
	for _, u := range confirmed {
		r := do(context.Background(), httpClient, base, "GET", pTwoFA, u.AccessToken, nil)
		totp, _ := r.Body["totp"].(map[string]any)
		if r.Status != 200 || totp["enabled"] != true {
			t.Errorf("%s confirmed its enrolment (200) but its status is %s", u.UserID, r)
		}
	}
	t.Logf("%d confirmed enrolments, all with 2FA on", len(confirmed))
}

// checkHeldLoggedOut waits until no login the gateway held (and never
// released) has a device at the homeserver any more, and fails the test for
// those that stay past the held-login TTL and a sweep. A login cut off by a
// crash or an outage (unknown) may have left a device only if it was in
// flight during one of the fault windows; those are reported, not failed.
func (l *load) checkHeldLoggedOut(t testing.TB, faults []window) {
	t.Helper()
	l.mu.Lock()
	logins := make(map[string]loginRecord, len(l.logins))
	users := map[*user]bool{}
	var lastHeld time.Time
	for name, rec := range l.logins {
		logins[name] = *rec
		users[rec.user] = true
		if rec.outcome == held && rec.end.After(lastHeld) {
			lastHeld = rec.end
		}
	}
	l.mu.Unlock()
	deadline := lastHeld.Add(heldTTL + sweepInterval + 10*time.Second)
	for {
		stale, inFlight, strays := l.leftovers(t, logins, users, faults)
		if len(stale)+len(strays) == 0 || time.Now().After(deadline) {
			for _, s := range stale {
				t.Errorf("held login %s was never logged out (%s past the TTL)", s, time.Since(lastHeld.Add(heldTTL)).Round(time.Second))
			}
			for _, s := range strays {
				t.Errorf("device %s at the homeserver: %s", s, "not explained by any login the load made")
			}
			if len(inFlight) > 0 {
				t.Logf("%d logins cut off during a fault left a device that no gateway holds (%s): their answer, "+
					"with the access token, was lost on the way to the client", len(inFlight), strings.Join(inFlight, ", "))
			}
			counts := map[outcome]int{}
			for _, rec := range logins {
				counts[rec.outcome]++
			}
			t.Logf("logins: %d held then left, %d released, %d refused, %d not sent, %d cut off",
				counts[held], counts[released], counts[refused], counts[notSent], counts[unknown])
			return
		}
		time.Sleep(time.Second)
	}
}

// leftovers compares the homeserver's devices with the logins: stale are
// held logins still there, inFlight cut-off logins during a fault,
// strays anything else unexplained (a released login gone, an unknown device).
func (l *load) leftovers(t testing.TB, logins map[string]loginRecord, users map[*user]bool, faults []window) (stale, inFlight, strays []string) {
	t.Helper()
	for u := range users {
		present := map[string]bool{}
		for _, d := range devices(t, l.hs, u.User) {
			present[d.Name] = true
			rec, ok := logins[d.Name]
			switch {
			case d.Name == "registration" || d.ID == u.DeviceID:
			case !ok:
				strays = append(strays, fmt.Sprintf("%s %q of %s", d.ID, d.Name, u.UserID))
			case rec.outcome == held:
				stale = append(stale, fmt.Sprintf("%q of %s", d.Name, u.UserID))
			case rec.outcome != released && spans(rec, faults):
				// Cut off, or refused by a homeserver that failed after
				// making the device (a 500 from a closing database).
				inFlight = append(inFlight, d.Name)
			case rec.outcome != released:
				strays = append(strays, fmt.Sprintf("%s %q of %s (outcome %d)", d.ID, d.Name, u.UserID, rec.outcome))
			}
		}
		for name, rec := range logins {
			if rec.user == u && rec.outcome == released && rec.kept && !present[name] {
				strays = append(strays, fmt.Sprintf("released login %q of %s was logged out", name, u.UserID))
			}
		}
	}
	return stale, inFlight, strays
}

// spans reports whether the request that decided the login's outcome
// overlapped one of the fault windows.
func spans(rec loginRecord, faults []window) bool {
	for _, w := range faults {
		if !rec.start.After(w.to) && !rec.end.Before(w.from) {
			return true
		}
	}
	return false
}
