package uia_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
	"github.com/matrix-2fa/matrix-2fa/uia"
)

var errWrong = errors.New("wrong code")

// codeStage accepts exactly the code "ok".
type codeStage struct{ name string }

func (c codeStage) Type() string { return c.name }
func (c codeStage) Params() any  { return map[string]int{"digits": 6} }
func (c codeStage) Authenticate(_ context.Context, _ *uia.Session, a *uia.Auth) error {
	if a.Code != "ok" {
		return errWrong
	}
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newEngine(t *testing.T) (*uia.Engine, *clock) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "u.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := uia.New(db, 10*time.Minute, codeStage{"a"}, codeStage{"b"}, codeStage{"c"})
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	e.SetClock(c.now)
	return e, c
}

var (
	req   = uia.Request{Method: "POST", Path: "/_matrix/client/v3/account/two-factor/recovery", UserID: "@alice:example.org"}
	flows = [][]string{{"a", "b"}, {"c"}}
)

func auth(typ, session, code string) *uia.Auth {
	return &uia.Auth{Type: typ, Session: session, Code: code}
}

func TestAuthorizeFlow(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	step, err := e.Authorize(ctx, req, flows, nil)
	if err != nil || step.Done || step.Session == nil {
		t.Fatalf("first round = %+v, %v", step, err)
	}
	ch := e.Challenge(step.Session, nil)
	if len(ch.Flows) != 2 || ch.Flows[0].Stages[1] != "b" || ch.Session == "" || len(ch.Completed) != 0 || ch.Params["a"] == nil {
		t.Fatalf("challenge = %+v", ch)
	}
	sid := step.Session.ID
	cases := []struct {
		name     string
		auth     *uia.Auth
		wantErr  error
		wantDone bool
		complete []string
	}{
		{"second stage first is out of order", auth("b", sid, "ok"), uia.ErrStageNotAllowed, false, nil},
		{"unknown type", auth("m.login.nope", sid, "ok"), uia.ErrUnknownStage, false, nil},
		{"wrong code", auth("a", sid, "bad"), errWrong, false, nil},
		{"session only reports state", auth("", sid, ""), nil, false, nil},
		{"first stage", auth("a", sid, "ok"), nil, false, []string{"a"}},
		{"first stage again", auth("a", sid, "ok"), uia.ErrStageNotAllowed, false, []string{"a"}},
		{"other flow now closed", auth("c", sid, "ok"), uia.ErrStageNotAllowed, false, []string{"a"}},
		{"second stage completes", auth("b", sid, "ok"), nil, true, []string{"a", "b"}},
		{"session is consumed", auth("", sid, ""), uia.ErrUnknownSession, false, nil},
	}
	for _, tc := range cases {
		step, err := e.Authorize(ctx, req, flows, tc.auth)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Fatalf("%s: err = %v; want %v", tc.name, err, tc.wantErr)
		}
		if step.Done != tc.wantDone {
			t.Fatalf("%s: done = %v", tc.name, step.Done)
		}
		if tc.complete != nil && (step.Session == nil || len(step.Session.Completed) != len(tc.complete)) {
			t.Fatalf("%s: completed = %+v; want %v", tc.name, step.Session, tc.complete)
		}
	}
}

func TestSessionBinding(t *testing.T) {
	e, c := newEngine(t)
	ctx := context.Background()
	step, _ := e.Authorize(ctx, req, flows, nil)
	sid := step.Session.ID
	other := func(f func(r *uia.Request)) uia.Request { r := req; f(&r); return r }
	cases := []struct {
		name string
		req  uia.Request
		sid  string
		want error
	}{
		{"another path", other(func(r *uia.Request) { r.Path = "/_matrix/client/v3/account/two-factor/totp" }), sid, uia.ErrSessionMismatch},
		{"another method", other(func(r *uia.Request) { r.Method = "DELETE" }), sid, uia.ErrSessionMismatch},
		{"another user", other(func(r *uia.Request) { r.UserID = "@mallory:example.org" }), sid, uia.ErrSessionMismatch},
		{"unknown session", req, "no-such-session", uia.ErrUnknownSession},
	}
	for _, tc := range cases {
		if _, err := e.Authorize(ctx, tc.req, flows, auth("c", tc.sid, "ok")); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
	c.t = c.t.Add(10 * time.Minute)
	if _, err := e.Authorize(ctx, req, flows, auth("c", sid, "ok")); !errors.Is(err, uia.ErrUnknownSession) {
		t.Errorf("expired session: %v; want ErrUnknownSession", err)
	}
}

func TestTypeWithoutSessionStartsOne(t *testing.T) {
	e, _ := newEngine(t)
	step, err := e.Authorize(context.Background(), req, flows, auth("c", "", "ok"))
	if err != nil || !step.Done {
		t.Fatalf("one-shot single-stage flow = %+v, %v", step, err)
	}
	step, err = e.Authorize(context.Background(), req, flows, auth("a", "", "ok"))
	if err != nil || step.Done || step.Session == nil || !step.Session.HasCompleted("a") {
		t.Fatalf("one-shot first stage = %+v, %v", step, err)
	}
}

func TestConcurrentFinish(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	step, _ := e.Authorize(ctx, req, flows, auth("a", "", "ok"))
	var done atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if st, err := e.Authorize(ctx, req, flows, auth("b", step.Session.ID, "ok")); err == nil && st.Done {
				done.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if done.Load() != 1 {
		t.Fatalf("%d concurrent completions authorised the operation; want exactly 1", done.Load())
	}
}

func TestParseAuth(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		want    uia.Auth
		wantErr bool
	}{
		{"full", `{"type":"m.login.2fa.totp","session":"S","code":"123456"}`, uia.Auth{Type: "m.login.2fa.totp", Session: "S", Code: "123456"}, false},
		{"token alias", `{"type":"m.login.2fa.totp","session":"S","token":"654321"}`, uia.Auth{Type: "m.login.2fa.totp", Session: "S", Code: "654321"}, false},
		{"code wins over token", `{"code":"1","token":"2"}`, uia.Auth{Code: "1"}, false},
		{"session only", `{"session":"S"}`, uia.Auth{Session: "S"}, false},
		{"not an object", `["x"]`, uia.Auth{}, true},
		{"null", `null`, uia.Auth{}, true},
		{"type not a string", `{"type":5}`, uia.Auth{}, true},
		{"code not a string", `{"code":123456}`, uia.Auth{}, true},
		{"garbage", `{`, uia.Auth{}, true},
	}
	for _, tc := range cases {
		a, err := uia.ParseAuth(json.RawMessage(tc.raw))
		if tc.wantErr {
			if !errors.Is(err, uia.ErrBadAuth) {
				t.Errorf("%s: err = %v; want ErrBadAuth", tc.name, err)
			}
			continue
		}
		if err != nil || a.Type != tc.want.Type || a.Session != tc.want.Session || a.Code != tc.want.Code {
			t.Errorf("%s: = %+v, %v; want %+v", tc.name, a, err, tc.want)
		}
	}
}

func FuzzParseAuth(f *testing.F) {
	for _, seed := range []string{`{"type":"m.login.2fa.totp","session":"S","code":"123456"}`, `{"session":"S"}`, `null`, `[]`, `{"code":1}`, `"x"`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := uia.ParseAuth(raw)
		if err != nil && !errors.Is(err, uia.ErrBadAuth) {
			t.Fatalf("error not ErrBadAuth: %v", err)
		}
		if err == nil && a == nil {
			t.Fatal("nil auth without error")
		}
	})
}

// TestFlowsChangedSinceStart: a session cannot authorise a request whose
// required flows changed after it began (2FA switched on in between).
func TestFlowsChangedSinceStart(t *testing.T) {
	e, _ := newEngine(t)
	ctx := context.Background()
	step, err := e.Authorize(ctx, req, [][]string{{"c"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Authorize(ctx, req, flows, auth("c", step.Session.ID, "ok")); !errors.Is(err, uia.ErrSessionMismatch) {
		t.Fatalf("stale session = %v; want ErrSessionMismatch", err)
	}
}

// TestChallengeHasAllFields: every 401 body has flows, params, session and
// completed, also when params and completed are empty; errcode and error only
// for a failed stage.
func TestChallengeHasAllFields(t *testing.T) {
	e, _ := newEngine(t)
	s, err := e.Start(context.Background(), uia.Request{Method: "POST", Path: "/x", UserID: "@a:b"}, [][]string{{"m.login.dummy"}}, "", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, failure := range map[string]*mautrix.RespError{"plain": nil, "failed": {ErrCode: "M_FORBIDDEN", Err: "no"}} {
		b, err := json.Marshal(e.Challenge(s, failure))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		json.Unmarshal(b, &got)
		for _, k := range []string{"flows", "params", "session", "completed"} {
			if v, ok := got[k]; !ok || string(v) == "null" {
				t.Errorf("%s: %s missing or null in %s", name, k, b)
			}
		}
		if _, has := got["errcode"]; has != (failure != nil) {
			t.Errorf("%s: errcode present = %v in %s", name, has, b)
		}
	}
}
