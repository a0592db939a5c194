package replicatest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/pgtest"
	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// The crash load: how long, when the crash comes, how many workers.
const (
	crashLoad    = 20 * time.Second
	crashAfter   = 8 * time.Second
	crashWorkers = 4
)

// crashMix is logins with codes (two held logins raced for one code, logins
// kept), logins left to expire, plain logins and a few enrolments.
var crashMix = mix{
	{"race", 6, opRace},
	{"2fa-login", 3, opLogin2FAKeep},
	{"abandon", 3, opAbandon},
	{"plain-login", 2, opPlainLogin},
	{"whoami", 2, opWhoAmI},
	{"enrol", 2, opEnrol},
}

// crashScenario is one crash: a cluster under the crash load and what
// crashes it.
type crashScenario struct {
	name  string
	c     *cluster
	l     *load
	crash func() (window, error)
	w     window
	err   error
}

// TestCrash runs two crashes side by side in the middle of a load of logins
// with codes: one of three replicas on PostgreSQL behind nginx killed with
// SIGKILL (the survivors go on serving without an error), and the only
// gateway on SQLite killed and started again on the same data (it serves
// again, its sweeper logs the held logins out). For both: no code is
// accepted twice, every confirmed enrolment is there, every held login is
// logged out after its TTL.
func TestCrash(t *testing.T) {
	t.Parallel()
	replicas := newCluster(t, tesths.Dendrite(t), clusterOptions{replicas: 3, database: pgtest.FreshDatabase(t), nginx: true})
	victim := replicas.gws[1]
	single := newCluster(t, tesths.Dendrite(t), clusterOptions{replicas: 1})
	scenarios := []*crashScenario{
		{name: "replica on PostgreSQL", c: replicas, crash: func() (window, error) {
			w := window{from: time.Now()}
			victim.kill9()
			w.to = time.Now()
			return w, nil
		}},
		{name: "only gateway on SQLite", c: single, crash: func() (window, error) {
			w := window{from: time.Now()}
			single.gws[0].kill9()
			err := single.gws[0].restart()
			w.to = time.Now()
			return w, err
		}},
	}
	for i, s := range scenarios {
		prefix := []string{"crash", "sqlite"}[i]
		s.l = newLoad(s.c.hs, s.c.lb, prefix, newUsers(t, s.c.hs, s.c.lb, prefix+"-2fa", 16, true),
			newUsers(t, s.c.hs, s.c.lb, prefix+"-plain", 4, false), 6)
	}
	var wg sync.WaitGroup
	for _, s := range scenarios {
		wg.Add(1)
		go func() { defer wg.Done(); s.w, s.err = crashDuring(s.l, s.crash) }()
	}
	wg.Wait()
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			if s.err != nil {
				t.Fatal(s.err)
			}
			t.Logf("crashed at %s, over after %s", s.w.from.Format("15:04:05.000"), s.w.to.Sub(s.w.from).Round(time.Millisecond))
			checkAfterCrash(t, s.l, s.w)
			for _, g := range s.c.gws {
				if g != victim && !g.running() {
					t.Errorf("%s is not running", g.name)
				}
			}
			s.l.checkEnrolments(t, s.c.lb)
			s.l.checkHeldLoggedOut(t, []window{s.w})
		})
	}
}

// crashDuring runs the crash load and calls crash crashAfter into it; it
// returns the crash's window.
func crashDuring(l *load, crash func() (window, error)) (window, error) {
	ctx, cancel := context.WithTimeout(context.Background(), crashLoad)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx, crashWorkers, crashMix) }()
	select {
	case <-time.After(crashAfter):
	case <-done:
		return window{}, errors.New("the load ended before the crash")
	}
	w, err := crash()
	<-done
	return w, err
}

// checkAfterCrash checks the load's answers: every unexpected one was in
// flight during the crash, none came after it, and no code got in twice.
func checkAfterCrash(t *testing.T, l *load, crash window) {
	t.Helper()
	st := l.stats()
	inCrash, _ := l.failures(func(e exchange) bool { return !e.start.After(crash.to) && !e.end.Before(crash.from) }, 0)
	t.Logf("%d requests, %d unexpected answers (%.2f%%), all %d of them in flight during the crash; operations: %s",
		st.requests, st.errors, 100*float64(st.errors)/float64(max(st.requests, 1)), inCrash, l.ops())
	if n, shown := l.failures(func(e exchange) bool { return e.start.After(crash.to) || e.end.Before(crash.from) }, 10); n > 0 {
		t.Errorf("%d unexpected answers outside the crash, e.g.:\n%s", n, strings.Join(shown, "\n"))
	}
	served := 0
	l.mu.Lock()
	for _, e := range l.exchanges {
		if e.ok && e.start.After(crash.to) {
			served++
		}
	}
	l.mu.Unlock()
	if served < 20 {
		t.Errorf("only %d requests served after the crash", served)
	}
	l.checkCodesOnce(t)
}
