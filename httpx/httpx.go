package httpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/storage"
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

func SetCORS(h http.Header) {
	for k, v := range corsHeaders {
		h.Set(k, v)
	}
}

// WriteJSON writes v as JSON with the CORS headers.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	WriteRawJSON(w, status, body)
}

func WriteRawJSON(w http.ResponseWriter, status int, body []byte) {
	SetCORS(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

// WriteError answers with the Matrix error for err (httperr.Matrix is the
// one mapping) and logs anything internal with its detail.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	re := httperr.Matrix(err)
	switch {
	case errors.Is(err, homeserver.ErrUnreachable) || errors.Is(err, storage.ErrUnavailable):
		Logger(r).WithError(err).Warn("dependency unavailable") // an outage, answered 502/503
	case re.StatusCode >= 500:
		Logger(r).WithError(err).Error("internal error")
	}
	WriteMatrixError(w, re)
}

func WriteMatrixError(w http.ResponseWriter, re mautrix.RespError) {
	for k, v := range re.ExtraHeader {
		w.Header().Set(k, v)
	}
	WriteJSON(w, re.StatusCode, &re)
}

// ReadBody reads at most MaxBody bytes of the request body.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, httperr.ErrTooLarge
	}
	if err != nil {
		return nil, httperr.ErrNotJSON
	}
	return body, nil
}

// ReadObject reads a JSON object body; an empty body is an empty object.
func ReadObject(w http.ResponseWriter, r *http.Request) ([]byte, map[string]json.RawMessage, error) {
	body, err := ReadBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	obj, err := ParseObject(body)
	return body, obj, err
}

func ParseObject(body []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	if !json.Valid(body) {
		return nil, httperr.ErrNotJSON
	}
	if err := checkNames(body); err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, httperr.ErrBadJSON
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
		return fmt.Errorf("%w: nested too deeply", httperr.ErrBadJSON)
	}
	tok, err := dec.Token()
	if err != nil {
		return httperr.ErrNotJSON
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
				return httperr.ErrNotJSON
			}
			name, _ := kt.(string)
			if seen[name] {
				return fmt.Errorf("%w: duplicate member %q", httperr.ErrBadJSON, name)
			}
			seen[name] = true
			if strict && !plainName(name) {
				return fmt.Errorf("%w: member names must be lower-case ASCII", httperr.ErrBadJSON)
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
		return httperr.ErrNotJSON
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

// StringField returns obj[key] as a string: ok=false when absent or null,
// ErrBadJSON when present with another type.
func StringField(obj map[string]json.RawMessage, key string) (string, bool, error) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, httperr.ErrBadJSON
	}
	return s, true, nil
}

// PostedForm reads a POST's urlencoded form (at most MaxBody bytes); any
// other method has none. On a bad body it answers the error itself and
// returns ok=false.
func PostedForm(w http.ResponseWriter, r *http.Request) (form url.Values, ok bool) {
	if r.Method != http.MethodPost {
		return nil, true
	}
	body, err := ReadBody(w, r)
	if err == nil {
		if form, err = url.ParseQuery(string(body)); err != nil {
			err = httperr.ErrBadJSON
		}
	}
	if err != nil {
		WriteError(w, r, err)
		return nil, false
	}
	return form, true
}

// RequestToken returns the request's access token: from "Authorization:
// Bearer" (scheme case-insensitive, RFC 9110 §11.1) or the access_token query
// parameter. A token given more than once (both places, two headers, two
// parameters) is httperr.ErrAmbiguousToken: homeservers pick differently. A
// non-Bearer Authorization header is no token; requests the gateway forwards
// then carry none either (homeserver.CheckedHeader).
func RequestToken(r *http.Request) (string, error) {
	headers, params := r.Header.Values("Authorization"), r.URL.Query()["access_token"]
	if len(headers)+len(params) > 1 {
		return "", httperr.ErrAmbiguousToken
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

func Logger(r *http.Request) logrus.FieldLogger {
	if l, ok := r.Context().Value(logKey).(logrus.FieldLogger); ok {
		return l
	}
	return logrus.StandardLogger()
}

func WithLogger(r *http.Request, l logrus.FieldLogger) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), logKey, l))
}

// RequestID returns a fresh ID for a request's log lines.
func RequestID() string { return RandomToken(8) }

// StatusRecorder remembers the status for the access log and passes Flush
// through, so streamed responses stay streamed.
type StatusRecorder struct {
	http.ResponseWriter
	// Status is the status written (0 until then).
	Status int
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// CopyResponse writes a homeserver response unchanged.
func CopyResponse(w http.ResponseWriter, resp *homeserver.Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// SetRetryAfter sets Retry-After to d in whole seconds, rounded up (at least 1).
func SetRetryAfter(h http.Header, d time.Duration) { h.Set("Retry-After", httperr.RetryAfter(d)) }

// RandomToken returns n random bytes, base64url without padding.
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
