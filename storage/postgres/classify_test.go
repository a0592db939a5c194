package postgres

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryMethodClassifies holds that every exported method of *DB (but
// Close) starts with defer classify(&err), so that an outage reaches the
// callers as storage.ErrUnavailable (503) and never as an internal error.
func TestEveryMethodClassifies(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset, checked := token.NewFileSet(), 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !fn.Name.IsExported() || fn.Name.Name == "Close" || !onDB(fn) {
				continue
			}
			checked++
			if !startsWithClassify(fn) {
				t.Errorf("%s: (*DB).%s does not start with defer classify(&err)", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if checked < 40 {
		t.Fatalf("only %d methods found: the scan is broken", checked)
	}
}

func onDB(fn *ast.FuncDecl) bool {
	star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == "DB"
}

func startsWithClassify(fn *ast.FuncDecl) bool {
	if fn.Body == nil || len(fn.Body.List) == 0 {
		return false
	}
	d, ok := fn.Body.List[0].(*ast.DeferStmt)
	if !ok {
		return false
	}
	id, ok := d.Call.Fun.(*ast.Ident)
	return ok && id.Name == "classify"
}
