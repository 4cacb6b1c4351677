package emulator

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"khproxy/internal/testutil"
)

// provenanceSection is the section of docs/emulator.md that lists what comes from the
// spec and what the emulator chose.
const provenanceSection = "### What comes from the spec, and what the emulator chose"

// TestProvenanceListsEveryReason reads the emulator's source (this package
// and apiauth, tests excluded) for every problem reason it can answer with,
// and every error code of errorTable, and fails when the provenance
// table does not name one of them. A new reason cannot be added without
// saying where it comes from.
func TestProvenanceListsEveryReason(t *testing.T) {
	reasons := emulatorReasons(t, ".", "apiauth")
	if len(reasons) < 20 {
		t.Fatalf("found only %d reasons (%v): the scan is broken", len(reasons), slices.Sorted(maps.Keys(reasons)))
	}
	table := docSection(t, provenanceSection)
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		if !strings.Contains(table, "`"+r+"`") {
			t.Errorf("reason %s (%s) is missing from the provenance table", r, reasons[r])
		}
	}
	for _, code := range slices.Sorted(maps.Keys(errorTable)) {
		if !strings.Contains(table, "`"+code+"`") {
			t.Errorf("error code %s is missing from the provenance table", code)
		}
		if !slices.Contains(documentedCodes, code) && !strings.HasPrefix(problemType(code), EmulatorErrorTypeBase) {
			t.Errorf("error code %s is the emulator's own but typed %s, inside the API's namespace", code, problemType(code))
		}
	}
	for _, h := range []string{HeaderEmulator, HeaderReplayed, "Allow", "Retry-After", "Date", "Cache-Control", "X-Content-Type-Options", "Location"} {
		if !strings.Contains(table, "`"+h) {
			t.Errorf("header %s is missing from the provenance table", h)
		}
	}
}

// docSection returns the section of docs/emulator.md that starts with
// heading, up to the next heading of any level.
func docSection(t testing.TB, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "emulator.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), heading+"\n")
	if !ok {
		t.Fatalf("docs/emulator.md has no %q", heading)
	}
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// emulatorReasons returns every problem reason the non-test Go files of dirs
// can produce, each with where it was found: string constants named
// Reason*, and the values given to a "reason"/"Reason" field (in a composite
// literal or an assignment) or as the first argument of authError or
// unauthorized, resolved through the package constants. A value it cannot
// resolve fails the test, so that the scan never silently misses one.
func emulatorReasons(t testing.TB, dirs ...string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, dir := range dirs {
		names, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	consts := map[string]string{}
	reasons := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							v, _ := strconv.Unquote(lit.Value)
							consts[name.Name] = v
							if strings.HasPrefix(name.Name, "Reason") {
								reasons[v] = fset.Position(name.Pos()).String()
							}
						}
					}
				}
			}
		}
	}
	resolve := func(e ast.Expr) {
		pos := fset.Position(e.Pos()).String()
		switch v := e.(type) {
		case *ast.BasicLit:
			s, _ := strconv.Unquote(v.Value)
			if s != "" {
				reasons[s] = pos
			}
			return
		case *ast.Ident:
			if s, ok := consts[v.Name]; ok {
				reasons[s] = pos
				return
			}
			if v.Name == "reason" { // a parameter passed through (authError, unauthorized): its callers are scanned
				return
			}
		case *ast.SelectorExpr:
			if s, ok := consts[v.Sel.Name]; ok { // apiauth.ReasonX
				reasons[s] = pos
				return
			}
			if v.Sel.Name == "Reason" || v.Sel.Name == "reason" { // copied from a Refusal or an apiError, whose own values are scanned
				return
			}
		}
		t.Errorf("%s: cannot tell which reason this is; give it a constant or a literal", pos)
	}
	isReason := func(e ast.Expr) bool {
		switch k := e.(type) {
		case *ast.Ident:
			return k.Name == "reason" || k.Name == "Reason"
		case *ast.SelectorExpr:
			return k.Sel.Name == "reason" || k.Sel.Name == "Reason"
		}
		return false
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok && isReason(kv.Key) {
						resolve(kv.Value)
					}
				}
			case *ast.AssignStmt:
				for i, lhs := range n.Lhs {
					if isReason(lhs) && len(n.Rhs) == len(n.Lhs) {
						resolve(n.Rhs[i])
					}
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "authError" || id.Name == "unauthorized") && len(n.Args) > 0 {
					resolve(n.Args[0])
				}
			}
			return true
		})
	}
	return reasons
}

// TestInventionsAreMarked: an answer whose type or reason the spec does not
// document says so in its body ("emulator") and, for a type, with a type
// outside the API's namespace; documented answers carry no such field.
func TestInventionsAreMarked(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.RateLimit = RateLimit{PerMinute: 60, Burst: 1, PerDay: 5000, PerIPPerMinute: 600} })
	resp, body := env.do(t, rq{method: http.MethodDelete, path: "/v1/orders"})
	p := wantProblem(t, resp, body, http.StatusMethodNotAllowed, codeMethodNotAllowed, "")
	if typ, _ := p["type"].(string); !strings.HasPrefix(typ, EmulatorErrorTypeBase) || strings.Contains(typ, "kernelhost.com") {
		t.Errorf("405 type %q is in the API's namespace", typ)
	}
	resp, body = env.do(t, rq{path: "/v1/products"}) // the burst of 1 is spent
	p = wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "key_rate_limit")
	if note, _ := p["emulator"].(string); !strings.Contains(note, "key_rate_limit") {
		t.Errorf("429 key_rate_limit: emulator field %q does not name the reason", note)
	}
	resp, body = env.do(t, rq{path: "/v1/me", secret: "wrong"})
	p = testutil.Problem(t, resp, body, http.StatusUnauthorized)
	if _, ok := p["emulator"]; ok || p["type"] != errorTypeBase+codeAuth {
		t.Errorf("401 signature_mismatch is documented, yet marked: %v", p)
	}
}
