package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

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
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, flows.ErrBadJSON
	}
	return obj, nil
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

// accessToken returns the request's access token (header or query).
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		// The scheme is case-insensitive (RFC 9110 §11.1).
		if scheme, t, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
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
