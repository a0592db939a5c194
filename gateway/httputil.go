package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/flows"
)

// MaxBody is the body limit of every route the gateway intercepts.
const MaxBody = 64 << 10

// corsHeaders are the spec's CORS headers (client-server API, "Web Browser
// Clients"), as homeservers send them.
var corsHeaders = map[string]string{
	"Access-Control-Allow-Origin":  "*",
	"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
	"Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept, Authorization",
}

func setCORS(h http.Header) {
	for k, v := range corsHeaders {
		h.Set(k, v)
	}
}

// writeJSON writes v as JSON with the CORS headers.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	writeRawJSON(w, status, body)
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	setCORS(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

// writeError answers with the Matrix error for err (flows.MatrixError is the
// one mapping) and logs anything internal with its detail.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	re := flows.MatrixError(err)
	if re.StatusCode >= 500 {
		logger(r).WithError(err).Error("internal error")
	}
	writeMatrixError(w, re)
}

func writeMatrixError(w http.ResponseWriter, re mautrix.RespError) {
	for k, v := range re.ExtraHeader {
		w.Header().Set(k, v)
	}
	writeJSON(w, re.StatusCode, &re)
}

// bodyDeadline bounds how long r's body may take to arrive: BodyTimeout for a
// route the gateway reads itself, PassThroughBodyTimeout for one streamed to
// the homeserver (uploads). The deadline is lifted once the body has been
// read, so a long-poll's response is never cut. Requests without a body are
// left alone (the server's header and idle timeouts cover them).
func (g *Gateway) bodyDeadline(w http.ResponseWriter, r *http.Request, routed bool) {
	if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
		return
	}
	d := g.cfg.PassThroughBodyTimeout
	if routed {
		d = g.cfg.BodyTimeout
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return // not a real connection (tests)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the connection's read deadline when the whole body has
// arrived. On any other end (a timeout, a closed connection) the deadline
// stays: the server then cannot block discarding the unread rest.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// limited answers 429 when the client address has used up its budget of
// requests on the unauthenticated entry points (POST only; pages get a page).
func (g *Gateway) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if ok, wait := g.limiter.Allow(g.proxies.ClientAddr(r)); !ok {
				logger(r).WithField("client", g.proxies.ClientAddr(r)).Warn("rate limited")
				writeLimited(w, r, wait)
				return
			}
		}
		h(w, r)
	}
}

// setRetryAfter sets Retry-After to d in whole seconds, rounded up (at least 1).
func setRetryAfter(h http.Header, d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
}

// isPage reports whether the path is one of the gateway's HTML pages.
func isPage(p string) bool {
	return strings.HasPrefix(p, "/_matrix2fa/") || strings.HasSuffix(p, "/fallback/web") ||
		strings.Contains(p, "/login/sso/redirect")
}

// messageData is the message page's template data.
type messageData struct{ Paragraphs []string }

// writeLimited answers a rate-limited request: 429 M_LIMIT_EXCEEDED with
// retry_after_ms for the API, a page saying how long to wait for a page.
func writeLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	setRetryAfter(w.Header(), wait)
	if isPage(r.URL.Path) {
		renderPage(w, http.StatusTooManyRequests, "message.html", PageData{Title: "Too many attempts",
			Data: &messageData{[]string{"Too many attempts from your network. Try again in " + formatWait(wait) + "."}}})
		return
	}
	writeMatrixError(w, mautrix.MLimitExceeded.WithMessage("Too many requests; try again in %s", formatWait(wait)).
		WithExtraField("retry_after_ms", wait.Milliseconds()))
}

// readBody reads at most MaxBody bytes of the request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, flows.ErrTooLarge
	}
	if err != nil {
		return nil, flows.ErrNotJSON
	}
	return body, nil
}

// readObject reads a JSON object body; an empty body is an empty object.
func readObject(w http.ResponseWriter, r *http.Request) ([]byte, map[string]json.RawMessage, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	obj, err := parseObject(body)
	return body, obj, err
}

func parseObject(body []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	if !json.Valid(body) {
		return nil, flows.ErrNotJSON
	}
	if err := checkNames(body); err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, flows.ErrBadJSON
	}
	return obj, nil
}

// maxDepth bounds the nesting of an intercepted JSON body.
const maxDepth = 64

// checkNames refuses bodies whose member names another JSON decoder could
// read differently from the gateway. Homeservers (Go's encoding/json among
// them) match names case-insensitively, with Unicode folding: "Type", "AUTH"
// or "ſession" reach them as type, auth and session while the gateway, which
// looks names up exactly, would see no such key; a duplicate name is read as
// the first by some decoders and the last by others. So: no duplicate name
// anywhere, and at the top level and inside "auth" and "identifier" only
// plain lower-case ASCII names, which is all the spec uses there.
func checkNames(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkNames(dec, true, 0); err != nil {
		return err
	}
	return nil
}

func walkNames(dec *json.Decoder, strict bool, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deeply", flows.ErrBadJSON)
	}
	tok, err := dec.Token()
	if err != nil {
		return flows.ErrNotJSON
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return flows.ErrNotJSON
			}
			name, _ := kt.(string)
			if seen[name] {
				return fmt.Errorf("%w: duplicate member %q", flows.ErrBadJSON, name)
			}
			seen[name] = true
			if strict && !plainName(name) {
				return fmt.Errorf("%w: member names must be lower-case ASCII", flows.ErrBadJSON)
			}
			if err := walkNames(dec, strict && (name == "auth" || name == "identifier"), depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walkNames(dec, false, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return flows.ErrNotJSON
	}
	return nil
}

func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// stringField returns obj[key] as a string: ok=false when absent or null,
// ErrBadJSON when present with another type.
func stringField(obj map[string]json.RawMessage, key string) (string, bool, error) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, flows.ErrBadJSON
	}
	return s, true, nil
}

// postedForm reads a POST's urlencoded form (at most MaxBody bytes); any
// other method has none. On a bad body it answers the error itself and
// returns ok=false.
func postedForm(w http.ResponseWriter, r *http.Request) (form url.Values, ok bool) {
	if r.Method != http.MethodPost {
		return nil, true
	}
	body, err := readBody(w, r)
	if err == nil {
		if form, err = url.ParseQuery(string(body)); err != nil {
			err = flows.ErrBadJSON
		}
	}
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	return form, true
}

// requestToken returns the request's access token: from "Authorization:
// Bearer" (scheme case-insensitive, RFC 9110 §11.1) or the access_token query
// parameter. A token given more than once (both places, two headers, two
// parameters) is flows.ErrAmbiguousToken: homeservers pick differently. A
// non-Bearer Authorization header is no token; requests the gateway forwards
// then carry none either (homeserver.CheckedHeader).
func requestToken(r *http.Request) (string, error) {
	headers, params := r.Header.Values("Authorization"), r.URL.Query()["access_token"]
	if len(headers)+len(params) > 1 {
		return "", flows.ErrAmbiguousToken
	}
	if len(params) == 1 {
		return params[0], nil
	}
	if len(headers) == 1 {
		if scheme, t, ok := strings.Cut(headers[0], " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t), nil
		}
	}
	return "", nil
}

type ctxKey int

const logKey ctxKey = 0

func logger(r *http.Request) logrus.FieldLogger {
	if l, ok := r.Context().Value(logKey).(logrus.FieldLogger); ok {
		return l
	}
	return logrus.StandardLogger()
}

func withLogger(r *http.Request, l logrus.FieldLogger) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), logKey, l))
}

func requestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// statusRecorder remembers the status for the access log and passes Flush
// through, so streamed responses stay streamed.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
