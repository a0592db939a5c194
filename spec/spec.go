package spec

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed openapi.yaml
var openapi []byte

// PrefixesExtension is the OpenAPI extension, at path or operation level, that
// lists the version prefixes a Matrix client route is served under. An
// operation's list replaces its path's.
const PrefixesExtension = "x-matrix-prefixes"

// clientPrefix is the start of every Matrix client-server API path.
const clientPrefix = "/_matrix/client/"

// httpMethods are the path item keys that name operations in OpenAPI 3.x.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// OpenAPI returns a copy of the embedded OpenAPI 3.1 document (openapi.yaml).
func OpenAPI() []byte {
	return bytes.Clone(openapi)
}

// Route is one method and full path that the gateway serves itself.
type Route struct {
	// Method is the HTTP method in upper case, such as "POST".
	Method string
	// Path is the full path; path parameters keep their "{name}" form.
	Path string
}

// String returns the route as "METHOD /path".
func (r Route) String() string {
	return r.Method + " " + r.Path
}

// Routes returns every route openapi.yaml declares, sorted by path and then by
// method. A path with x-matrix-prefixes yields one route for each prefix: the
// version segment after /_matrix/client/ is replaced by it. Routes returns an
// error if the document does not parse, if a prefix list is empty or malformed,
// if it is set on a path outside /_matrix/client/ or does not include the
// version the path is written with, or if two entries yield the same route.
func Routes() ([]Route, error) {
	return routesFrom(openapi)
}

// routesFrom computes Routes for the OpenAPI document in data.
func routesFrom(data []byte) ([]Route, error) {
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("spec: parse OpenAPI document: %w", err)
	}
	if len(doc.Paths) == 0 {
		return nil, errors.New("spec: OpenAPI document declares no paths")
	}

	seen := make(map[Route]string)
	var routes []Route
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("spec: path %q does not start with /", path)
		}
		if _, ok := item["$ref"]; ok {
			return nil, fmt.Errorf("spec: path %q: path item $ref is not supported", path)
		}
		var pathPrefixes *[]string
		if node, ok := item[PrefixesExtension]; ok {
			if err := node.Decode(&pathPrefixes); err != nil {
				return nil, fmt.Errorf("spec: path %q: %s: %w", path, PrefixesExtension, err)
			}
		}
		for _, method := range httpMethods {
			node, ok := item[method]
			if !ok {
				continue
			}
			var op struct {
				Prefixes *[]string `yaml:"x-matrix-prefixes"`
			}
			if err := node.Decode(&op); err != nil {
				return nil, fmt.Errorf("spec: %s %s: %w", strings.ToUpper(method), path, err)
			}
			prefixes := pathPrefixes
			if op.Prefixes != nil {
				prefixes = op.Prefixes
			}
			paths := []string{path}
			if prefixes != nil {
				var err error
				if paths, err = expand(path, *prefixes); err != nil {
					return nil, fmt.Errorf("spec: %s %s: %w", strings.ToUpper(method), path, err)
				}
			}
			for _, p := range paths {
				r := Route{Method: strings.ToUpper(method), Path: p}
				if from, dup := seen[r]; dup {
					return nil, fmt.Errorf("spec: route %s is declared by both %s and %s", r, from, path)
				}
				seen[r] = path
				routes = append(routes, r)
			}
		}
	}
	slices.SortFunc(routes, func(a, b Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return routes, nil
}

// expand returns path once for each version prefix. The path must be a Matrix
// client path written with one of the prefixes (a prefix may have several
// segments, such as api/v1 or unstable/org.matrix.msc3882).
func expand(path string, prefixes []string) ([]string, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("%s is empty", PrefixesExtension)
	}
	rest, ok := strings.CutPrefix(path, clientPrefix)
	if !ok {
		return nil, fmt.Errorf("%s is set on a path outside %s", PrefixesExtension, clientPrefix)
	}
	if version, tail, ok := strings.Cut(rest, "/"); !ok || version == "" || tail == "" {
		return nil, fmt.Errorf("path has no version segment after %s", clientPrefix)
	}
	tail, best := "", ""
	for i, p := range prefixes {
		if p == "" || strings.ContainsAny(p, "{}?#") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
			return nil, fmt.Errorf("%s has a malformed prefix %q", PrefixesExtension, p)
		}
		if slices.Contains(prefixes[:i], p) {
			return nil, fmt.Errorf("%s lists %q twice", PrefixesExtension, p)
		}
		if t, ok := strings.CutPrefix(rest, p+"/"); ok && t != "" && len(p) > len(best) {
			tail, best = t, p // the longest prefix the path is written with
		}
	}
	if tail == "" {
		version, _, _ := strings.Cut(rest, "/")
		return nil, fmt.Errorf("path is written with version %q, which is not in %s %v", version, PrefixesExtension, prefixes)
	}
	out := make([]string, 0, len(prefixes))
	for _, p := range prefixes {
		out = append(out, clientPrefix+p+"/"+tail)
	}
	return out, nil
}
