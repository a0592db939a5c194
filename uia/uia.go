package uia

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Errors returned by the engine. The gateway maps them to Matrix errors in one
// place (httperr).
var (
	// ErrUnknownSession: no such session, or it has expired or been used.
	ErrUnknownSession = errors.New("uia: unknown or expired session")
	// ErrSessionMismatch: the session was started for another request
	// (method, path) or another user.
	ErrSessionMismatch = errors.New("uia: session belongs to another request")
	// ErrStageNotAllowed: the stage is not the next stage of any flow.
	ErrStageNotAllowed = errors.New("uia: stage not allowed now")
	// ErrUnknownStage: the auth type is not one this engine can check.
	ErrUnknownStage = errors.New("uia: unknown auth type")
	// ErrBadAuth: the auth dict is not a JSON object of the expected shape.
	ErrBadAuth = errors.New("uia: malformed auth dict")
)

// Request is what a session is bound to: its kind (KindUIA when empty), and
// for a UIA session the request (method, path) and user.
type Request struct {
	Kind   storage.SessionKind
	Method string
	Path   string
	UserID string
}

// Auth is a parsed auth dict. Code is taken from "code", or from "token" (the
// MSC1998 spelling) when "code" is absent. Raw keeps the whole dict for stages
// that need more (a password stage reads identifier and password).
type Auth struct {
	Type    string
	Session string
	Code    string
	Raw     json.RawMessage
}

// ParseAuth parses an auth dict. It returns ErrBadAuth when raw is not an
// object or type, session, code or token are not strings.
func ParseAuth(raw json.RawMessage) (*Auth, error) {
	var d struct {
		Type    *string `json:"type"`
		Session *string `json:"session"`
		Code    *string `json:"code"`
		Token   *string `json:"token"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAuth, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: not an object", ErrBadAuth)
	}
	a := &Auth{Raw: append(json.RawMessage{}, raw...)}
	if d.Type != nil {
		a.Type = *d.Type
	}
	if d.Session != nil {
		a.Session = *d.Session
	}
	switch {
	case d.Code != nil:
		a.Code = *d.Code
	case d.Token != nil:
		a.Code = *d.Token
	}
	return a, nil
}

// Session is a UIA session with its progress.
type Session struct {
	storage.UIASession
}

// Done reports whether every stage of some flow is completed.
func (s *Session) Done() bool {
	for _, f := range s.Flows {
		if len(f) > 0 && isPrefix(f, s.Completed) && len(f) == len(s.Completed) {
			return true
		}
	}
	return false
}

// NextStages returns the stages that may be attempted now: the next stage of
// every flow whose beginning matches the completed stages.
func (s *Session) NextStages() []string {
	var out []string
	for _, f := range s.Flows {
		if len(f) > len(s.Completed) && isPrefix(f, s.Completed) && !slices.Contains(out, f[len(s.Completed)]) {
			out = append(out, f[len(s.Completed)])
		}
	}
	return out
}

// HasCompleted reports whether stage is among the completed stages.
func (s *Session) HasCompleted(stage string) bool { return slices.Contains(s.Completed, stage) }

func isPrefix(flow, completed []string) bool {
	if len(completed) > len(flow) {
		return false
	}
	for i, c := range completed {
		if flow[i] != c {
			return false
		}
	}
	return true
}

// Stage checks one auth type.
type Stage interface {
	// Type is the auth type, e.g. "m.login.2fa.totp".
	Type() string
	// Params returns the stage's entry in the 401 "params" (nil for none).
	Params() any
	// Authenticate checks a for session s; nil means the stage is completed.
	Authenticate(ctx context.Context, s *Session, a *Auth) error
}

// Engine runs UIA sessions over a SessionStore.
type Engine struct {
	store  storage.SessionStore
	stages map[string]Stage
	ttl    time.Duration
	now    func() time.Time
	rand   io.Reader
	// onStart hears of every session started.
	onStart func(storage.SessionKind)
}

// New returns an engine whose sessions live for ttl.
func New(store storage.SessionStore, ttl time.Duration, stages ...Stage) *Engine {
	e := &Engine{store: store, stages: map[string]Stage{}, ttl: ttl, now: time.Now, rand: rand.Reader}
	for _, st := range stages {
		e.stages[st.Type()] = st
	}
	return e
}

// OnStart sets a function called with the kind of every session started
// (for metrics); set it before the engine is used.
func (e *Engine) OnStart(f func(storage.SessionKind)) { e.onStart = f }

// SetClock injects the clock (tests).
func (e *Engine) SetClock(now func() time.Time) { e.now = now }

// NewSessionID returns a fresh random session ID (256 bits, base64url).
func (e *Engine) NewSessionID() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Start creates a session for req that needs one of flows. An empty id gets a
// random one; a given id (a homeserver's session ID) is reused. ttl 0 means
// the engine's default.
func (e *Engine) Start(ctx context.Context, req Request, flows [][]string, id string, data []byte, ttl time.Duration) (*Session, error) {
	if id == "" {
		var err error
		if id, err = e.NewSessionID(); err != nil {
			return nil, err
		}
	}
	if ttl <= 0 {
		ttl = e.ttl
	}
	params := map[string]any{}
	for _, f := range flows {
		for _, st := range f {
			if s, ok := e.stages[st]; ok && s.Params() != nil {
				params[st] = s.Params()
			}
		}
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	now := e.now()
	kind := req.Kind
	if kind == "" {
		kind = storage.KindUIA
	}
	s := storage.UIASession{ID: id, Kind: kind, UserID: req.UserID, Method: req.Method, Path: req.Path, Flows: flows, Params: pj,
		Completed: []string{}, Data: data, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := e.store.CreateSession(ctx, s); err != nil {
		return nil, err
	}
	if e.onStart != nil {
		e.onStart(kind)
	}
	return &Session{s}, nil
}

// LoadKind returns session id if it is of one of kinds (any other kind is
// as good as missing to the caller). Error: ErrUnknownSession when missing,
// expired or of another kind.
func (e *Engine) LoadKind(ctx context.Context, id string, kinds ...storage.SessionKind) (*Session, error) {
	if id == "" {
		return nil, ErrUnknownSession
	}
	s, err := e.store.Session(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUnknownSession
	}
	if err != nil {
		return nil, err
	}
	if !e.now().Before(s.ExpiresAt) || !slices.Contains(kinds, s.KindOr()) {
		return nil, ErrUnknownSession
	}
	return &Session{s}, nil
}

// Load returns session id for req. Errors: ErrUnknownSession (missing,
// expired or of another kind), ErrSessionMismatch (bound to another method,
// path or user).
func (e *Engine) Load(ctx context.Context, id string, req Request) (*Session, error) {
	kind := req.Kind
	if kind == "" {
		kind = storage.KindUIA
	}
	s, err := e.LoadKind(ctx, id, kind)
	if err != nil {
		return nil, err
	}
	if s.Method != req.Method || s.Path != req.Path || s.UserID != req.UserID {
		return nil, ErrSessionMismatch
	}
	return s, nil
}

// Attempt runs the stage a.Type for s. The stage must be the next stage of
// some flow (ErrStageNotAllowed) and registered (ErrUnknownStage). On success
// the stage is recorded atomically and s is updated; a concurrent completion
// of the same session makes this attempt fail with ErrStageNotAllowed.
func (e *Engine) Attempt(ctx context.Context, s *Session, a *Auth) error {
	st, ok := e.stages[a.Type]
	if !ok {
		return ErrUnknownStage
	}
	if !slices.Contains(s.NextStages(), a.Type) {
		return ErrStageNotAllowed
	}
	if err := st.Authenticate(ctx, s, a); err != nil {
		return err
	}
	return e.MarkCompleted(ctx, s, a.Type)
}

// MarkCompleted records stage as completed on s (for a stage checked
// elsewhere, such as by the homeserver). It must be a next stage.
func (e *Engine) MarkCompleted(ctx context.Context, s *Session, stage string) error {
	if !slices.Contains(s.NextStages(), stage) {
		return ErrStageNotAllowed
	}
	ok, err := e.store.CompleteStage(ctx, s.ID, s.Completed, stage)
	if err != nil {
		return err
	}
	if !ok {
		return ErrStageNotAllowed
	}
	s.Completed = append(s.Completed, stage)
	return nil
}

// StepCheck checks a stage's credentials and, in the same store transaction,
// makes step's change to the session (the stage completed, or the session
// taken); it reports whether the change happened and returns the taken
// session.
type StepCheck func(ctx context.Context, step storage.SessionStep) (bool, storage.UIASession, error)

// AttemptFinish runs stage for s like Attempt, with check doing the check
// and the recording at once; when the stage completes a flow, the session is
// consumed (as Finish) in that same transaction and returned, nil otherwise.
// Errors: ErrUnknownStage, ErrStageNotAllowed (not a next stage, or a
// concurrent request changed or consumed the session first), and check's.
func (e *Engine) AttemptFinish(ctx context.Context, s *Session, stage string, check StepCheck) (*Session, error) {
	if _, ok := e.stages[stage]; !ok {
		return nil, ErrUnknownStage
	}
	if !slices.Contains(s.NextStages(), stage) {
		return nil, ErrStageNotAllowed
	}
	after := &Session{s.UIASession}
	after.Completed = append(slices.Clone(s.Completed), stage)
	step := storage.SessionStep{ID: s.ID, Before: s.Completed, Stage: stage, Take: after.Done()}
	done, taken, err := check(ctx, step)
	if err != nil {
		return nil, err
	}
	if !done {
		return nil, ErrStageNotAllowed
	}
	s.Completed = after.Completed
	if !step.Take {
		return nil, nil
	}
	return &Session{taken}, nil
}

// Finish consumes the session so it can never authorise anything again. It
// returns ErrUnknownSession when another request consumed it first.
func (e *Engine) Finish(ctx context.Context, s *Session) (*Session, error) {
	taken, err := e.store.TakeSession(ctx, s.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUnknownSession
	}
	if err != nil {
		return nil, err
	}
	return &Session{taken}, nil
}

// Flow is one flow of a challenge.
type Flow struct {
	Stages []string `json:"stages"`
}

// Challenge is the 401 body of a UIA round. Flows, params, session and
// completed are always there (the contract: spec/protocol.md); errcode and
// error only for a failed stage.
type Challenge struct {
	Flows     []Flow         `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed"`
	ErrCode   string         `json:"errcode,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// Challenge is the 401 body for s. A non-nil failure adds its errcode and
// error, as the spec has it for a failed stage.
func (e *Engine) Challenge(s *Session, failure *mautrix.RespError) *Challenge {
	out := &Challenge{Flows: []Flow{}, Params: map[string]any{}, Session: s.ID, Completed: append([]string{}, s.Completed...)}
	for _, f := range s.Flows {
		out.Flows = append(out.Flows, Flow{Stages: append([]string{}, f...)})
	}
	var params map[string]any
	if err := json.Unmarshal(s.Params, &params); err == nil && params != nil {
		out.Params = params
	}
	if failure != nil {
		out.ErrCode, out.Error = failure.ErrCode, failure.Err
	}
	return out
}

// Step is the outcome of one UIA round.
type Step struct {
	// Session is the session in play (nil only when the request failed before one existed).
	Session *Session
	// Done says a flow is complete and the session has been consumed: the
	// caller performs the operation now, exactly once.
	Done bool
}

// Authorize runs one round of UIA for req, which needs one of flows. With no
// auth it starts a session (answer with Challenge). With auth it loads the
// session (or starts one when auth has a type but no session), runs the stage
// (none when auth has only a session) and, when a flow is complete, consumes
// the session and reports Done. A stage failure comes back with the session,
// so the caller can answer with the challenge and the error.
func (e *Engine) Authorize(ctx context.Context, req Request, flows [][]string, a *Auth) (Step, error) {
	var s *Session
	var err error
	switch {
	case a == nil || (a.Session == "" && a.Type == ""):
		s, err = e.Start(ctx, req, flows, "", nil, 0)
		return Step{Session: s}, err
	case a.Session == "":
		s, err = e.Start(ctx, req, flows, "", nil, 0)
	default:
		s, err = e.Load(ctx, a.Session, req)
		if err == nil && !slices.EqualFunc(s.Flows, flows, slices.Equal) {
			// What the request needs changed since the session began (2FA was
			// switched on, say): the old session cannot authorise it.
			err = ErrSessionMismatch
		}
	}
	if err != nil {
		return Step{}, err
	}
	if a.Type != "" {
		if err := e.Attempt(ctx, s, a); err != nil {
			return Step{Session: s}, err
		}
	}
	if !s.Done() {
		return Step{Session: s}, nil
	}
	if _, err := e.Finish(ctx, s); err != nil {
		return Step{}, err
	}
	return Step{Session: s, Done: true}, nil
}
