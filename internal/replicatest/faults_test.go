package replicatest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// The fault phases: steady load between faults, how long each dependency stays down.
const (
	faultSteady = 4 * time.Second
	faultHold   = 3 * time.Second
)

// faultsMix is mixed traffic that touches both dependencies.
var faultsMix = mix{
	{"versions", 3, opVersions},
	{"whoami", 4, opWhoAmI},
	{"status", 3, opStatus},
	{"plain-login", 3, opPlainLogin},
	{"2fa-login", 4, opLogin2FA},
	{"password+code", 2, opPasswordCode},
	{"uia", 2, opUIA},
	{"sign-in", 1, opSignIn},
	{"enrol", 2, opEnrol},
	{"abandon", 2, opAbandon},
}

// TestFaults stops and restarts the homeserver, then PostgreSQL (a cluster
// of its own: the shared one serves the other tests), under load through
// nginx in front of three replicas: every replica's /ready turns 503 naming
// the dependency, then 200 again without any gateway restarted; outside the
// fault windows every answer is the expected one, inside them the only
// failures are the documented 502 and 503 with M_UNKNOWN, never a 500; no
// confirmed enrolment or accepted code is lost or doubled, and every held
// login is logged out in the end.
func TestFaults(t *testing.T) {
	t.Parallel()
	pg := pgtest.OwnServer(t)
	hs := tesths.Dendrite(t)
	c := newCluster(t, hs, clusterOptions{replicas: 3, database: pg.FreshDatabase(t), nginx: true})
	pids := make([]int, len(c.gws))
	for i, g := range c.gws {
		pids[i] = g.cmd.Process.Pid
	}
	l := newLoad(hs, c.lb, "faults", newUsers(t, hs, c.lb, "faults-2fa", 12, true), newUsers(t, hs, c.lb, "faults-plain", 4, false), 8)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx, 3, faultsMix) }()
	defer func() { cancel(); <-done }()

	time.Sleep(faultSteady)
	hsDown := outage(t, c, "homeserver", func() { c.haltHomeserver(t) }, func() { c.resumeHomeserver(t) })
	time.Sleep(faultSteady)
	dbDown := outage(t, c, "database", func() { pg.Stop(t) }, func() { pg.Start(t) })
	time.Sleep(faultSteady)
	cancel()
	<-done

	faults := []window{hsDown, dbDown}
	inside := func(e exchange) bool { return spansWindow(e, hsDown) || spansWindow(e, dbDown) }
	st := l.stats()
	n, _ := l.failures(inside, 0)
	t.Logf("%d requests, %d unexpected answers, %d of them during the outages (homeserver %s, database %s); operations: %s",
		st.requests, st.errors, n, hsDown.to.Sub(hsDown.from).Round(time.Millisecond),
		dbDown.to.Sub(dbDown.from).Round(time.Millisecond), l.ops())
	if n, shown := l.failures(func(e exchange) bool { return !inside(e) }, 10); n > 0 {
		t.Errorf("%d unexpected answers outside the outages, e.g.:\n%s", n, strings.Join(shown, "\n"))
	}
	if n, shown := l.failures(func(e exchange) bool { return e.body == bare500 }, 10); n > 0 {
		t.Errorf("%d bare 500s from a gateway (an error it does not know), e.g.:\n%s", n, strings.Join(shown, "\n"))
	}
	// The gateway's own answers during an outage are 502 (homeserver) and
	// 503 (database) with M_UNKNOWN, HTML pages for the sign-in page; while
	// the homeserver shuts down, its own answers (500s from a closing
	// database) pass through unchanged.
	documented := func(e exchange) bool {
		return (e.status == 502 || e.status == 503) && (e.errcode == "M_UNKNOWN" || e.op == "sign-in") ||
			e.status >= 500 && e.body != bare500 && spansWindow(e, hsDown) ||
			// Known gateway issue, shown on its own by TestPasswordCodeHomeserverFails:
			// a homeserver failing between the two tries of password + code
			// gets the first try's 403.
			e.op == "password+code" && e.status == 403 && spansWindow(e, hsDown)
	}
	if n, shown := l.failures(func(e exchange) bool { return inside(e) && !documented(e) }, 10); n > 0 {
		t.Errorf("%d answers during the outages other than the documented ones, e.g.:\n%s", n, strings.Join(shown, "\n"))
	}
	for i, g := range c.gws {
		if !g.running() || g.cmd.Process.Pid != pids[i] {
			t.Errorf("%s was restarted or died", g.name)
		}
	}
	l.checkCodesOnce(t)
	l.checkEnrolments(t, c.lb)
	l.checkHeldLoggedOut(t, faults)
}

// bare500 is the gateway's answer to an error it does not know.
const bare500 = `{"errcode":"M_UNKNOWN","error":"Internal server error"}`

// spansWindow reports whether e was in flight during w.
func spansWindow(e exchange, w window) bool { return !e.start.After(w.to) && !e.end.Before(w.from) }

// outage takes a dependency down with stop, waits until every replica's
// /ready says so (503, down unavailable), keeps it down a moment, brings it
// back with start and waits until every replica is ready again by itself.
// The window spans from the stop to the last replica ready.
func outage(t *testing.T, c *cluster, down string, stop, start func()) window {
	t.Helper()
	w := window{from: time.Now()}
	stop()
	c.awaitAll(t, 503, down, 15*time.Second)
	t.Logf("%s down: every replica's /ready says 503 after %s", down, time.Since(w.from).Round(time.Millisecond))
	time.Sleep(faultHold)
	back := time.Now()
	start()
	c.awaitAll(t, 200, "", 30*time.Second)
	w.to = time.Now()
	t.Logf("%s back: every replica ready %s after the restart began", down, w.to.Sub(back).Round(time.Millisecond))
	return w
}
