package spec

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// loadDoc parses an OpenAPI document into generic maps with string keys.
func loadDoc(data []byte) (map[string]any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	doc, ok := normalize(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("document is a %T, not a mapping", v)
	}
	return doc, nil
}

// normalize turns every map with non-string keys (such as unquoted status
// codes) into a map with string keys.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalize(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = normalize(e)
		}
		return t
	}
	return v
}

// validateDocument reports why data is not an OpenAPI 3.x document with an
// info title and version and at least one path.
func validateDocument(data []byte) error {
	doc, err := loadDoc(data)
	if err != nil {
		return err
	}
	version, _ := doc["openapi"].(string)
	if !strings.HasPrefix(version, "3.") {
		return fmt.Errorf("openapi is %q, want 3.x", version)
	}
	info, _ := doc["info"].(map[string]any)
	for _, key := range []string{"title", "version"} {
		if s, _ := info[key].(string); s == "" {
			return fmt.Errorf("info.%s is missing", key)
		}
	}
	if paths, _ := doc["paths"].(map[string]any); len(paths) == 0 {
		return fmt.Errorf("paths is empty")
	}
	return nil
}

// operation is one OpenAPI operation with the path it is declared under.
type operation struct {
	method, path string
	op           map[string]any
}

// operations lists every operation of doc, in a stable order.
func operations(doc map[string]any) []operation {
	paths, _ := doc["paths"].(map[string]any)
	var ops []operation
	for path, v := range paths {
		item, _ := v.(map[string]any)
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				ops = append(ops, operation{strings.ToUpper(m), path, op})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].path != ops[j].path {
			return ops[i].path < ops[j].path
		}
		return ops[i].method < ops[j].method
	})
	return ops
}

// resolvePointer follows a local reference such as "#/components/schemas/X".
func resolvePointer(doc map[string]any, ref string) (any, bool) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// deref returns v, or what its $ref points to when it is a reference object.
func deref(doc map[string]any, v any) any {
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return v
		}
		if v, ok = resolvePointer(doc, ref); !ok {
			return nil
		}
	}
	return v
}

// refProblems lists every $ref in doc that is not local or does not resolve.
// Only component references are allowed.
func refProblems(doc map[string]any) []string {
	var problems []string
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch t := v.(type) {
		case map[string]any:
			if ref, ok := t["$ref"]; ok {
				s, _ := ref.(string)
				if !strings.HasPrefix(s, "#/components/") {
					problems = append(problems, fmt.Sprintf("%s: $ref %v does not point into #/components/", at, ref))
				} else if _, ok := resolvePointer(doc, s); !ok {
					problems = append(problems, fmt.Sprintf("%s: $ref %s does not resolve", at, s))
				}
			}
			for k, e := range t {
				walk(at+"/"+k, e)
			}
		case []any:
			for i, e := range t {
				walk(fmt.Sprintf("%s/%d", at, i), e)
			}
		}
	}
	walk("#", doc)
	sort.Strings(problems)
	return problems
}

// responseProblems lists every operation without a response.
func responseProblems(doc map[string]any) []string {
	var problems []string
	for _, o := range operations(doc) {
		if rs, _ := o.op["responses"].(map[string]any); len(rs) == 0 {
			problems = append(problems, fmt.Sprintf("%s %s has no responses", o.method, o.path))
		}
	}
	return problems
}

// hasAuth reports whether the operation requires a credential: its security,
// or the document's when it has none, holds a non-empty requirement.
func hasAuth(doc, op map[string]any) bool {
	sec, ok := op["security"]
	if !ok {
		sec = doc["security"]
	}
	reqs, _ := sec.([]any)
	for _, r := range reqs {
		if m, _ := r.(map[string]any); len(m) > 0 {
			return true
		}
	}
	return false
}

// matrixErrorRef is the component every Matrix error body schema refers to.
const matrixErrorRef = "#/components/schemas/MatrixError"

// usesMatrixError reports whether schema is, or is composed from, MatrixError.
func usesMatrixError(doc map[string]any, schema any, depth int) bool {
	m, ok := schema.(map[string]any)
	if !ok || depth > 10 {
		return false
	}
	if ref, _ := m["$ref"].(string); ref != "" {
		if ref == matrixErrorRef {
			return true
		}
		target, ok := resolvePointer(doc, ref)
		return ok && usesMatrixError(doc, target, depth+1)
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := m[key].([]any)
		for _, s := range list {
			if usesMatrixError(doc, s, depth+1) {
				return true
			}
		}
	}
	return false
}

// matrixErrorProblems lists every operation under /_matrix/client that has a
// request body or requires a credential but documents no 4xx response whose
// JSON schema is the Matrix error body.
func matrixErrorProblems(doc map[string]any) []string {
	var problems []string
	for _, o := range operations(doc) {
		if !strings.HasPrefix(o.path, clientPrefix) {
			continue
		}
		_, hasBody := o.op["requestBody"]
		if !hasBody && !hasAuth(doc, o.op) {
			continue
		}
		found := false
		rs, _ := o.op["responses"].(map[string]any)
		for code, r := range rs {
			if len(code) != 3 || code[0] != '4' { // 4xx and 4XX
				continue
			}
			resp, _ := deref(doc, r).(map[string]any)
			content, _ := resp["content"].(map[string]any)
			media, _ := content["application/json"].(map[string]any)
			if usesMatrixError(doc, media["schema"], 0) {
				found = true
				break
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("%s %s documents no 4xx response with the Matrix error schema", o.method, o.path))
		}
	}
	return problems
}

func TestOpenAPIDocument(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"embedded document", OpenAPI(), false},
		{"swagger 2", []byte("swagger: '2.0'\ninfo: {title: x, version: '1'}\npaths: {/a: {}}\n"), true},
		{"no version", []byte("info: {title: x, version: '1'}\npaths: {/a: {}}\n"), true},
		{"no title", []byte("openapi: 3.1.0\ninfo: {version: '1'}\npaths: {/a: {}}\n"), true},
		{"no paths", []byte("openapi: 3.1.0\ninfo: {title: x, version: '1'}\n"), true},
		{"not YAML", []byte("openapi: [3.1.0\n"), true},
		{"not a mapping", []byte("- openapi\n"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateDocument(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("validateDocument() error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestOpenAPIIsACopy(t *testing.T) {
	a := OpenAPI()
	a[0] = 'X'
	if b := OpenAPI(); b[0] == 'X' {
		t.Fatal("OpenAPI() returns the embedded slice itself; a caller can change it")
	}
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		want         bool
	}{
		// Account endpoints.
		{"GET", "/_matrix/client/r0/account/two-factor", true},
		{"GET", "/_matrix/client/v3/account/two-factor", true},
		{"POST", "/_matrix/client/r0/account/two-factor/totp", true},
		{"POST", "/_matrix/client/v3/account/two-factor/totp", true},
		{"DELETE", "/_matrix/client/r0/account/two-factor/totp", true},
		{"DELETE", "/_matrix/client/v3/account/two-factor/totp", true},
		{"POST", "/_matrix/client/r0/account/two-factor/totp/confirm", true},
		{"POST", "/_matrix/client/v3/account/two-factor/totp/confirm", true},
		{"POST", "/_matrix/client/r0/account/two-factor/recovery", true},
		{"POST", "/_matrix/client/v3/account/two-factor/recovery", true},
		// Login.
		{"GET", "/_matrix/client/r0/login", true},
		{"GET", "/_matrix/client/v3/login", true},
		{"POST", "/_matrix/client/r0/login", true},
		{"POST", "/_matrix/client/v3/login", true},
		// The SSO-shaped sign-in page.
		{"GET", "/_matrix/client/r0/login/sso/redirect", true},
		{"GET", "/_matrix/client/v3/login/sso/redirect", true},
		{"POST", "/_matrix/client/r0/login/sso/redirect", true},
		{"POST", "/_matrix/client/v3/login/sso/redirect", true},
		{"GET", "/_matrix/client/r0/login/sso/redirect/{idpId}", true},
		{"GET", "/_matrix/client/v3/login/sso/redirect/{idpId}", true},
		{"POST", "/_matrix/client/r0/login/sso/redirect/{idpId}", true},
		{"POST", "/_matrix/client/v3/login/sso/redirect/{idpId}", true},
		// Fallback pages.
		{"GET", "/_matrix/client/r0/auth/m.login.2fa.totp/fallback/web", true},
		{"GET", "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web", true},
		{"POST", "/_matrix/client/r0/auth/m.login.2fa.totp/fallback/web", true},
		{"POST", "/_matrix/client/v3/auth/m.login.2fa.totp/fallback/web", true},
		{"GET", "/_matrix/client/r0/auth/m.login.2fa.recovery/fallback/web", true},
		{"GET", "/_matrix/client/v3/auth/m.login.2fa.recovery/fallback/web", true},
		{"POST", "/_matrix/client/r0/auth/m.login.2fa.recovery/fallback/web", true},
		{"POST", "/_matrix/client/v3/auth/m.login.2fa.recovery/fallback/web", true},
		// Homeserver UIA endpoints.
		{"POST", "/_matrix/client/r0/delete_devices", true},
		{"POST", "/_matrix/client/v3/delete_devices", true},
		{"DELETE", "/_matrix/client/r0/devices/{deviceId}", true},
		{"DELETE", "/_matrix/client/v3/devices/{deviceId}", true},
		{"POST", "/_matrix/client/r0/account/password", true},
		{"POST", "/_matrix/client/v3/account/password", true},
		{"POST", "/_matrix/client/r0/account/deactivate", true},
		{"POST", "/_matrix/client/v3/account/deactivate", true},
		{"POST", "/_matrix/client/r0/account/3pid/add", true},
		{"POST", "/_matrix/client/v3/account/3pid/add", true},
		{"POST", "/_matrix/client/r0/keys/device_signing/upload", true},
		{"POST", "/_matrix/client/v3/keys/device_signing/upload", true},
		{"POST", "/_matrix/client/v1/login/get_token", true},
		// Every prefix a homeserver serves a guarded endpoint under.
		{"GET", "/_matrix/client/unstable/login", true},
		{"POST", "/_matrix/client/unstable/login", true},
		{"GET", "/_matrix/client/api/v1/login", true},
		{"POST", "/_matrix/client/api/v1/login", true},
		{"POST", "/_matrix/client/unstable/delete_devices", true},
		{"DELETE", "/_matrix/client/unstable/devices/{deviceId}", true},
		{"POST", "/_matrix/client/unstable/account/password", true},
		{"POST", "/_matrix/client/unstable/account/deactivate", true},
		{"POST", "/_matrix/client/unstable/account/3pid/add", true},
		{"POST", "/_matrix/client/r0/account/3pid", true},
		{"POST", "/_matrix/client/v3/account/3pid", true},
		{"POST", "/_matrix/client/unstable/account/3pid", true},
		{"POST", "/_matrix/client/unstable/keys/device_signing/upload", true},
		{"POST", "/_matrix/client/unstable/org.matrix.msc3882/login/get_token", true},
		{"POST", "/_matrix/client/unstable/org.matrix.msc3882/login/token", true},
		// Outside the Matrix API.
		{"GET", "/_matrix/client/r0/auth/m.login.2fa.email/fallback/web", true},
		{"POST", "/_matrix/client/r0/auth/m.login.2fa.email/fallback/web", true},
		{"GET", "/_matrix/client/v3/auth/m.login.2fa.email/fallback/web", true},
		{"POST", "/_matrix/client/v3/auth/m.login.2fa.email/fallback/web", true},
		{"GET", "/health", true},
		{"GET", "/ready", true},
		{"GET", "/_matrix2fa/", true},
		{"POST", "/_matrix2fa/", true},
		{"GET", "/_matrix2fa/static/{file}", true},
		{"GET", "/_matrix2fa/admin/", true},
		{"POST", "/_matrix2fa/admin/", true},
		{"GET", "/_matrix2fa/admin/v1/users", true},
		{"GET", "/_matrix2fa/admin/v1/users/{userId}", true},
		{"POST", "/_matrix2fa/admin/v1/users/{userId}/reset", true},
		{"POST", "/_matrix2fa/admin/v1/users/{userId}/unlock", true},
		{"GET", "/_matrix2fa/admin/v1/audit", true},
		{"GET", "/_matrix2fa/admin/v1/counts", true},
		{"GET", "/_matrix2fa/provider/v1/users/{userId}", true},
		{"POST", "/_matrix2fa/provider/v1/users/{userId}/verify", true},
		// The OAuth 2.0 API.
		{"GET", "/_matrix/client/v1/auth_metadata", true},
		{"GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", true},
		{"GET", "/_matrix2fa/oauth2/authorize", true},
		{"POST", "/_matrix2fa/oauth2/authorize", true},
		{"POST", "/_matrix2fa/oauth2/token", true},
		{"POST", "/_matrix2fa/oauth2/register", true},
		{"POST", "/_matrix2fa/oauth2/revoke", true},

		// Not served by the gateway itself.
		{"POST", "/_matrix/client/r0/login/get_token", false},
		{"POST", "/_matrix/client/v3/login/get_token", false},
		{"POST", "/_matrix/client/v1/account/two-factor/totp", false},
		{"GET", "/_matrix/client/v1/login", false},
		{"POST", "/_matrix/client/unstable/account/two-factor/totp", false},
		{"POST", "/_matrix/client/api/v1/delete_devices", false},
		{"GET", "/_matrix/client/r0/devices/{deviceId}", false},
		{"PUT", "/_matrix/client/v3/devices/{deviceId}", false},
		{"GET", "/_matrix/client/v3/sync", false},
		{"POST", "/_matrix/client/v3/register", false},
		{"GET", "/_matrix/client/v3/auth/m.login.password/fallback/web", false},
		{"GET", "/_matrix/client/r0/health", false},
		{"OPTIONS", "/_matrix/client/v3/login", false},
		{"get", "/health", false},
	}

	routes, err := Routes()
	if err != nil {
		t.Fatalf("Routes() error: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got := slices.Contains(routes, Route{tt.method, tt.path})
			if got != tt.want {
				t.Errorf("Routes() contains %s %s = %v, want %v", tt.method, tt.path, got, tt.want)
			}
		})
	}

	// Every route the spec declares is one of the expected routes above.
	want := 0
	for _, tt := range tests {
		if tt.want {
			want++
		}
	}
	if len(routes) != want {
		t.Errorf("Routes() returned %d routes, want %d: %v", len(routes), want, routes)
	}
}

func TestRoutesSortedAndUpperCase(t *testing.T) {
	routes, err := Routes()
	if err != nil {
		t.Fatalf("Routes() error: %v", err)
	}
	for i, r := range routes {
		if r.Method != strings.ToUpper(r.Method) {
			t.Errorf("route %s: method is not upper case", r)
		}
		if i > 0 {
			p := routes[i-1]
			if p.Path > r.Path || (p.Path == r.Path && p.Method >= r.Method) {
				t.Errorf("routes out of order or repeated: %s before %s", p, r)
			}
		}
	}
}

// TestMatrixPathsDeclarePrefixes holds every Matrix client path to the rule
// that it says which version prefixes it is served under.
func TestMatrixPathsDeclarePrefixes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, clientPrefix) {
			continue
		}
		if _, ok := item[PrefixesExtension]; ok {
			continue
		}
		for _, m := range httpMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			if _, ok := op[PrefixesExtension]; !ok {
				t.Errorf("%s %s: no %s on the path or the operation", strings.ToUpper(m), path, PrefixesExtension)
			}
		}
	}
}

func TestRoutesFrom(t *testing.T) {
	const head = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n"
	tests := []struct {
		name    string
		paths   string
		want    []string
		wantErr string
	}{
		{
			name:  "path-level prefixes",
			paths: "  /_matrix/client/v3/login:\n    x-matrix-prefixes: [r0, v3]\n    get: {responses: {'200': {description: ok}}}\n    post: {responses: {'200': {description: ok}}}\n",
			want: []string{
				"GET /_matrix/client/r0/login", "POST /_matrix/client/r0/login",
				"GET /_matrix/client/v3/login", "POST /_matrix/client/v3/login",
			},
		},
		{
			name:  "operation-level prefixes replace the path's",
			paths: "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [r0, v3]\n    get: {responses: {'200': {description: ok}}}\n    post: {x-matrix-prefixes: [v3], responses: {'200': {description: ok}}}\n",
			want:  []string{"GET /_matrix/client/r0/x", "GET /_matrix/client/v3/x", "POST /_matrix/client/v3/x"},
		},
		{
			name:  "v1 only, path parameter kept",
			paths: "  /_matrix/client/v1/a/{id}/b:\n    x-matrix-prefixes: [v1]\n    put: {responses: {'200': {description: ok}}}\n",
			want:  []string{"PUT /_matrix/client/v1/a/{id}/b"},
		},
		{
			name:  "no prefixes: served as written; non-method keys ignored",
			paths: "  /health:\n    summary: s\n    parameters: []\n    get: {responses: {'200': {description: ok}}}\n",
			want:  []string{"GET /health"},
		},
		{
			name:    "written version not among the prefixes",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [r0]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "not in x-matrix-prefixes",
		},
		{
			name:    "prefixes outside the Matrix client API",
			paths:   "  /health:\n    x-matrix-prefixes: [v3]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "outside",
		},
		{
			name:    "empty prefixes",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: []\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "empty",
		},
		{
			name:    "malformed prefix",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [v3, r0/]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "malformed",
		},
		{
			name:    "malformed prefix, empty segment",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [v3, api//v1]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "malformed",
		},
		{
			name:  "prefix of two segments",
			paths: "  /_matrix/client/unstable/org.example/x:\n    x-matrix-prefixes: [v3, unstable/org.example]\n    get: {responses: {'200': {description: ok}}}\n",
			want:  []string{"GET /_matrix/client/unstable/org.example/x", "GET /_matrix/client/v3/x"},
		},
		{
			name:    "prefix listed twice",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [v3, v3]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "twice",
		},
		{
			name:    "prefixes not a list",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: {v3: 1}\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "x-matrix-prefixes",
		},
		{
			name:    "two entries yield the same route",
			paths:   "  /_matrix/client/v3/x:\n    x-matrix-prefixes: [r0, v3]\n    get: {responses: {'200': {description: ok}}}\n  /_matrix/client/r0/x:\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "declared by both",
		},
		{
			name:    "no version segment",
			paths:   "  /_matrix/client/v3:\n    x-matrix-prefixes: [v3]\n    get: {responses: {'200': {description: ok}}}\n",
			wantErr: "no version segment",
		},
		{
			name:    "no paths",
			paths:   "  {}\n",
			wantErr: "no paths",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, err := routesFrom([]byte(head + tt.paths))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("routesFrom() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("routesFrom() error: %v", err)
			}
			var got []string
			for _, r := range routes {
				got = append(got, r.String())
			}
			wantSorted := slices.Clone(tt.want)
			slices.SortFunc(wantSorted, func(a, b string) int {
				am, ap, _ := strings.Cut(a, " ")
				bm, bp, _ := strings.Cut(b, " ")
				if c := strings.Compare(ap, bp); c != 0 {
					return c
				}
				return strings.Compare(am, bm)
			})
			if !slices.Equal(got, wantSorted) {
				t.Errorf("routesFrom() = %v, want %v", got, wantSorted)
			}
		})
	}
}

// docCheck is a whole-document check that returns the problems it finds.
type docCheck func(map[string]any) []string

func TestDocumentChecks(t *testing.T) {
	const head = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
	const matrixError = "components:\n  schemas:\n    MatrixError: {type: object}\n"
	tests := []struct {
		name         string
		check        docCheck
		doc          []byte
		wantProblems bool
	}{
		{"embedded: every operation has a response", responseProblems, OpenAPI(), false},
		{"embedded: every $ref resolves", refProblems, OpenAPI(), false},
		{"embedded: Matrix errors documented", matrixErrorProblems, OpenAPI(), false},

		{"responses missing", responseProblems, []byte(head + "paths:\n  /a:\n    get: {}\n"), true},
		{"responses empty", responseProblems, []byte(head + "paths:\n  /a:\n    get: {responses: {}}\n"), true},
		{"dangling $ref", refProblems, []byte(head + "paths:\n  /a:\n    get: {responses: {'200': {$ref: '#/components/responses/Nope'}}}\n"), true},
		{"$ref outside components", refProblems, []byte(head + "paths:\n  /a:\n    get: {responses: {'200': {$ref: 'other.yaml#/x'}}}\n"), true},
		{"$ref resolves", refProblems, []byte(head + "paths:\n  /a:\n    get: {responses: {'200': {$ref: '#/components/responses/Ok'}}}\ncomponents:\n  responses:\n    Ok: {description: ok}\n"), false},
		{
			"body without a Matrix 4xx", matrixErrorProblems,
			[]byte(head + "paths:\n  /_matrix/client/v3/a:\n    post:\n      requestBody: {content: {application/json: {schema: {type: object}}}}\n      responses:\n        '200': {description: ok}\n        '400': {description: bad, content: {text/html: {schema: {type: string}}}}\n" + matrixError),
			true,
		},
		{
			"auth without a Matrix 4xx", matrixErrorProblems,
			[]byte(head + "security: [{token: []}]\npaths:\n  /_matrix/client/v3/a:\n    get:\n      responses:\n        '200': {description: ok}\n        '500': {description: x, content: {application/json: {schema: {$ref: '#/components/schemas/MatrixError'}}}}\n" + matrixError),
			true,
		},
		{
			"auth with a Matrix 4xx through a response and allOf", matrixErrorProblems,
			[]byte(head + "security: [{token: []}]\npaths:\n  /_matrix/client/v3/a:\n    get:\n      responses:\n        '429': {$ref: '#/components/responses/Limited'}\n" +
				matrixError + "    Limited: {allOf: [{$ref: '#/components/schemas/MatrixError'}]}\n  responses:\n    Limited: {description: x, content: {application/json: {schema: {$ref: '#/components/schemas/Limited'}}}}\n"),
			false,
		},
		{
			"public operation without a body needs none", matrixErrorProblems,
			[]byte(head + "security: [{token: []}]\npaths:\n  /_matrix/client/v3/a:\n    get:\n      security: []\n      responses:\n        '200': {description: ok}\n"),
			false,
		},
		{
			"outside /_matrix/client needs none", matrixErrorProblems,
			[]byte(head + "security: [{token: []}]\npaths:\n  /x:\n    post:\n      requestBody: {content: {text/plain: {schema: {type: string}}}}\n      responses:\n        '200': {description: ok}\n"),
			false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := loadDoc(tt.doc)
			if err != nil {
				t.Fatalf("loadDoc: %v", err)
			}
			problems := tt.check(doc)
			if got := len(problems) > 0; got != tt.wantProblems {
				t.Errorf("problems = %q, want problems: %v", problems, tt.wantProblems)
			}
		})
	}
}

// TestOperationIDsUnique keeps operationId usable as a key for tools.
func TestOperationIDsUnique(t *testing.T) {
	doc, err := loadDoc(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, o := range operations(doc) {
		id, _ := o.op["operationId"].(string)
		where := o.method + " " + o.path
		if id == "" {
			t.Errorf("%s has no operationId", where)
			continue
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("operationId %q is used by %s and %s", id, prev, where)
		}
		seen[id] = where
	}
}
