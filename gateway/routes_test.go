package gateway_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

// TestRoutesMatchSpec holds the router to spec/openapi.yaml: every route the
// gateway serves itself is in the spec, and every route in the spec is served.
func TestRoutesMatchSpec(t *testing.T) {
	want := map[string]bool{}
	routes, err := spec.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		want[r.Method+" "+r.Path] = true
	}
	e := fuzzlessGateway(t)
	got := map[string]bool{}
	err = e.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			tmpl, err = route.GetPathRegexp()
			if err != nil {
				return nil
			}
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil
		}
		for _, m := range methods {
			got[m+" "+tmpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing, extra []string
	for r := range want {
		if !got[r] {
			missing = append(missing, r)
		}
	}
	for r := range got {
		if !want[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("in the spec but not served:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("served but not in the spec:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(got) < 40 {
		t.Errorf("only %d routes walked; the walk is broken", len(got))
	}
}
