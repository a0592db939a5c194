package homeserver

import (
	"io"
	"net/http/httptest"
	"testing"

	"github.com/sirupsen/logrus"
)

// reads hands out its parts, one per Read, the last with io.EOF when eofWithLast.
type reads struct {
	parts       []string
	eofWithLast bool
}

func (r *reads) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts = r.parts[1:]
	if len(r.parts) == 0 && r.eofWithLast {
		return n, io.EOF
	}
	return n, nil
}

// flushCounter counts flushes.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

// TestCopyBodyFlushes: an unbounded body is flushed after every write but
// the one that ends it; a bounded one never.
func TestCopyBodyFlushes(t *testing.T) {
	c := &Client{log: logrus.New()}
	for _, tc := range []struct {
		name        string
		parts       []string
		eofWithLast bool
		flush       bool
		want        int
	}{
		{"whole body with EOF", []string{"abc"}, true, true, 0},
		{"whole body, EOF after", []string{"abc"}, false, true, 1},
		{"streamed, EOF with the last", []string{"a", "b", "c"}, true, true, 2},
		{"streamed, EOF after", []string{"a", "b", "c"}, false, true, 3},
		{"bounded", []string{"a", "b", "c"}, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
			if err := c.copyBody(w, &reads{parts: tc.parts, eofWithLast: tc.eofWithLast}, tc.flush); err != nil {
				t.Fatal(err)
			}
			if w.flushes != tc.want || w.Body.Len() != len(tc.parts[0])*len(tc.parts) {
				t.Errorf("%d flushes, body %q; want %d flushes", w.flushes, w.Body.String(), tc.want)
			}
		})
	}
}
