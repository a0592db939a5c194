// Package funclen holds a test that keeps the gateway's functions short.
package funclen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxLines is the longest a non-test function may be in the packages below:
// a handler that fits on a screen.
const maxLines = 60

// packages are the HTTP-facing packages the bound applies to.
var packages = []string{"gateway", "held", "pages", "httpx", "httperr", "canonical", "ratelimit", "admin", "provider", "oauth", "policy"}

func TestFunctionLength(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	for _, pkg := range packages {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(fset, f, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				checked++
				lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
				if lines > maxLines {
					t.Errorf("%s: %s is %d lines; at most %d", fset.Position(fn.Pos()), fn.Name.Name, lines, maxLines)
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d functions checked: the walk is broken", checked)
	}
}
