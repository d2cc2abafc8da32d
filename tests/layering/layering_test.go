// Package layering_test checks eddy's package layering: which package of
// the module may import which. The table below is the one place the
// layering is written down; README.md's "Package map" must list the same
// packages, layers and allowed imports (TestReadmePackageMap), so the two
// cannot drift.
//
// Layers, lowest first:
//
//	operators  the deterministic core (no I/O, no clocks)
//	sinks      outputs and the Kafka/secret helpers every client shares
//	actors     partition actors, state, checkpoints, sources, datasets
//	control    the Raft control plane, its HTTP client, placement and the
//	           Members port through which it sees the membership
//	cluster    gossip membership (implements control.Members) and the node
//	           wiring above control (cluster.StartNode)
//	cmd        the CLI and its oracle
//
// A package may import packages of its own layer and of the layers below
// it (Go itself rejects cycles inside a layer). Packages under tests/ and
// _test.go files may import anything: a test is a client of the code, and
// fixtures such as actors/devbroker or tests/mariadbtest sit wherever they
// sit. Imports that break the rule today are listed in knownViolations with
// the reason; the test fails both on a new violation and on a listed one
// that no longer exists, so the list only shrinks.
package layering_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/eddy-iot/eddy"

// layers lists every non-test package of the module (path relative to the
// module root), by layer, lowest first. A new package must be added here
// and to README.md's package map.
var layers = []struct {
	name string
	pkgs []string
}{
	{"operators", []string{"operators", "internal/promreg"}},
	{"sinks", []string{"sinks", "sinks/internal/committed", "sinks/kafkaconf", "sinks/secret", "sinks/sinktest"}},
	{"actors", []string{"actors", "actors/checkpoint", "actors/checkpoint/checkpointtest", "actors/dataset", "actors/dataset/aberdeen", "actors/devbroker", "actors/spec", "actors/state"}},
	{"control", []string{"control", "control/client", "control/ui"}},
	{"cluster", []string{"cluster", "cluster/assign", "cluster/jobs", "cluster/virtual"}},
	{"cmd", []string{"cmd/eddy", "cmd/eddy/oracle"}},
}

// An edge is an import of package to by package from (module-relative).
type edge struct{ from, to string }

func (e edge) String() string { return e.from + " → " + e.to }

// knownViolations are today's imports against the layering, each with the
// reason and what removes it.
var knownViolations = map[edge]string{}

// layerOf maps a module-relative package path to its layer index.
func layerOf() map[string]int {
	m := map[string]int{}
	for i, l := range layers {
		for _, p := range l.pkgs {
			m[p] = i
		}
	}
	return m
}

// mayImport returns the layer names a package of layer i may import.
func mayImport(i int) []string {
	var out []string
	for _, l := range layers[:i+1] {
		out = append(out, l.name)
	}
	return out
}

// check returns one message per problem in graph (module-relative package
// path → its module-internal imports, non-test files only): a package
// missing from the table, an import against the layering, or a known
// violation that no longer exists. Packages under tests/ are not checked.
func check(graph map[string][]string) []string {
	layer := layerOf()
	var msgs []string
	seen := map[edge]bool{}
	froms := make([]string, 0, len(graph))
	for p := range graph {
		froms = append(froms, p)
	}
	sort.Strings(froms)
	for _, from := range froms {
		if isTests(from) {
			continue
		}
		fl, ok := layer[from]
		if !ok {
			msgs = append(msgs, fmt.Sprintf("package %s is in no layer: add it to layers in tests/layering/layering_test.go and to README.md's package map", from))
			continue
		}
		for _, to := range graph[from] {
			e := edge{from, to}
			tl, ok := layer[to]
			switch {
			case isTests(to):
				msgs = append(msgs, fmt.Sprintf("%s imports %s: production code must not import test support (tests/...)", from, to))
			case !ok:
				msgs = append(msgs, fmt.Sprintf("%s imports %s, which is in no layer", from, to))
			case tl <= fl:
				// down or sideways: allowed
			case knownViolations[e] != "":
				seen[e] = true
			default:
				msgs = append(msgs, fmt.Sprintf("import against the layering: %s (layer %s) imports %s (layer %s); %s may import only the layers %s",
					from, layers[fl].name, to, layers[tl].name, from, strings.Join(mayImport(fl), ", ")))
			}
		}
	}
	for e, why := range knownViolations {
		if !seen[e] {
			msgs = append(msgs, fmt.Sprintf("known violation %s (%s) no longer exists: remove it from knownViolations and README.md's package map", e, why))
		}
	}
	sort.Strings(msgs)
	return msgs
}

func isTests(p string) bool { return p == "tests" || strings.HasPrefix(p, "tests/") }

// listed is one package of `go list -json`.
type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Error      *struct{ Err string }
}

// moduleRoot returns the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside the module")
	}
	return filepath.Dir(gomod)
}

// load returns the module's packages from `go list -json ./...`.
func load(t *testing.T, root string) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list: package %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list ./... returned no packages")
	}
	return pkgs
}

// rel returns p relative to the module, and whether p is in the module.
func rel(p string) (string, bool) {
	if p == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(p, module+"/")
	return r, ok
}

// graphOf returns the module-internal import graph of pkgs (non-test files).
func graphOf(pkgs []listed) map[string][]string {
	g := map[string][]string{}
	for _, p := range pkgs {
		from, _ := rel(p.ImportPath)
		g[from] = []string{}
		for _, imp := range p.Imports {
			if to, ok := rel(imp); ok {
				g[from] = append(g[from], to)
			}
		}
	}
	return g
}

func TestLayering(t *testing.T) {
	pkgs := load(t, moduleRoot(t))
	graph := graphOf(pkgs)
	for _, m := range check(graph) {
		t.Error(m)
	}
	// Every package of the table exists (a renamed or deleted package
	// must leave the table too).
	for _, l := range layers {
		for _, p := range l.pkgs {
			if _, ok := graph[p]; !ok {
				t.Errorf("layer %s lists %s, which go list ./... does not show: remove it from layers and README.md", l.name, p)
			}
		}
	}
}

// TestCheckFails proves check can fail: each bad graph yields the message.
func TestCheckFails(t *testing.T) {
	base := func() map[string][]string {
		g := map[string][]string{}
		for _, l := range layers {
			for _, p := range l.pkgs {
				g[p] = nil
			}
		}
		for e := range knownViolations {
			g[e.from] = append(g[e.from], e.to)
		}
		return g
	}
	if msgs := check(base()); len(msgs) != 0 {
		t.Fatalf("clean graph: want no messages, got %q", msgs)
	}
	for _, tc := range []struct {
		name string
		edit func(g map[string][]string)
		want string
	}{
		{"upward import", func(g map[string][]string) { g["operators"] = []string{"sinks"} },
			"import against the layering: operators (layer operators) imports sinks (layer sinks); operators may import only the layers operators"},
		{"actors imports control", func(g map[string][]string) { g["actors/state"] = []string{"operators", "control/client"} },
			"import against the layering: actors/state (layer actors) imports control/client (layer control); actors/state may import only the layers operators, sinks, actors"},
		{"production imports tests", func(g map[string][]string) { g["sinks"] = []string{"tests/mariadbtest"} },
			"sinks imports tests/mariadbtest: production code must not import test support"},
		{"package in no layer", func(g map[string][]string) { g["actors/newthing"] = nil },
			"package actors/newthing is in no layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := base()
			tc.edit(g)
			msgs := check(g)
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, tc.want) }) {
				t.Fatalf("want a message starting %q, got %q", tc.want, msgs)
			}
		})
	}
	// A listed violation is accepted while it exists and reported once it
	// is gone (the list only shrinks).
	t.Run("known violation", func(t *testing.T) {
		saved := knownViolations
		defer func() { knownViolations = saved }()
		knownViolations = map[edge]string{{"control", "cluster"}: "example"}
		g := base()
		if msgs := check(g); len(msgs) != 0 {
			t.Fatalf("listed violation present: want no messages, got %q", msgs)
		}
		g["control"] = nil
		want := "known violation control → cluster (example) no longer exists"
		if msgs := check(g); !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, want) }) {
			t.Fatalf("listed violation gone: want a message starting %q, got %q", want, msgs)
		}
	})
}

// readmeRow is one row of README.md's package map.
type readmeRow struct {
	layer string
	may   []string // layer names
	known []string // packages imported as known violations
}

// readmeMap parses the "## Package map" table of README.md: rows
// | `pkg` | layer | layer, layer, ...[; known violation: pkg, pkg] | holds |.
func readmeMap(t *testing.T, root string) map[string]readmeRow {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]readmeRow{}
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Package map"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			t.Fatalf("README.md package map: row %q has fewer than 3 cells", line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		pkg := strings.Trim(cells[0], "`")
		may, known, _ := strings.Cut(cells[2], "; known violation: ")
		r := readmeRow{layer: cells[1], may: splitList(may), known: splitList(known)}
		if _, dup := rows[pkg]; dup {
			t.Errorf("README.md package map lists %s twice", pkg)
		}
		rows[pkg] = r
	}
	if len(rows) == 0 {
		t.Fatal(`README.md has no "## Package map" table`)
	}
	return rows
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.Trim(strings.TrimSpace(x), "`"); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// TestReadmePackageMap checks that README.md's package map lists exactly
// the non-test packages of go list ./..., each with the layer and allowed
// imports of the table above.
func TestReadmePackageMap(t *testing.T) {
	root := moduleRoot(t)
	rows := readmeMap(t, root)
	layer := layerOf()
	for _, p := range load(t, root) {
		r, _ := rel(p.ImportPath)
		if isTests(r) {
			continue
		}
		if _, ok := rows[r]; !ok {
			t.Errorf("README.md package map does not list %s (go list ./... shows it)", r)
		}
	}
	for pkg, row := range rows {
		i, ok := layer[pkg]
		if !ok {
			t.Errorf("README.md package map lists %s, which is in no layer of tests/layering (or no longer exists)", pkg)
			continue
		}
		if row.layer != layers[i].name {
			t.Errorf("README.md package map: %s is in layer %q, want %q", pkg, row.layer, layers[i].name)
		}
		if want := mayImport(i); !slices.Equal(row.may, want) {
			t.Errorf("README.md package map: %s may import %q, want %q", pkg, strings.Join(row.may, ", "), strings.Join(want, ", "))
		}
		var known []string
		for e := range knownViolations {
			if e.from == pkg {
				known = append(known, e.to)
			}
		}
		sort.Strings(known)
		if got := slices.Sorted(slices.Values(row.known)); !slices.Equal(got, known) {
			t.Errorf("README.md package map: %s known violations %q, want %q", pkg, got, known)
		}
	}
}

// operatorsThirdParty are the only imports of operators from outside the
// standard library (pure encoders/decoders).
var operatorsThirdParty = []string{"github.com/goccy/go-json", "go.yaml.in/yaml/v3"}

// forbiddenInOperators are standard packages that would bring I/O,
// randomness or concurrency into the deterministic core.
var forbiddenInOperators = []string{
	"crypto/rand", "io/fs", "log", "log/slog", "math/rand", "math/rand/v2", "net", "net/http", "os",
	"os/exec", "os/signal", "runtime", "sync", "sync/atomic", "syscall",
}

// clockCalls are the time functions that read or wait on the wall clock.
var clockCalls = []string{"After", "AfterFunc", "NewTicker", "NewTimer", "Now", "Since", "Sleep", "Tick", "Until"}

// TestOperatorsDeterministic checks that operators (non-test files)
// imports no I/O, randomness or concurrency package and never reads the
// clock: time comes in as arguments.
func TestOperatorsDeterministic(t *testing.T) {
	root := moduleRoot(t)
	var ops *listed
	pkgs := load(t, root)
	for i := range pkgs {
		if pkgs[i].ImportPath == module+"/operators" {
			ops = &pkgs[i]
		}
	}
	if ops == nil {
		t.Fatal("go list ./... shows no operators package")
	}
	for _, imp := range ops.Imports {
		third := strings.Contains(strings.Split(imp, "/")[0], ".")
		switch {
		case third && !slices.Contains(operatorsThirdParty, imp):
			t.Errorf("operators imports %s: the deterministic core may import only %q outside the standard library", imp, operatorsThirdParty)
		case slices.Contains(forbiddenInOperators, imp):
			t.Errorf("operators imports %s: the deterministic core does no I/O, randomness or concurrency", imp)
		}
	}
	fset := token.NewFileSet()
	for _, name := range ops.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(ops.Dir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range clockReads(f) {
			t.Errorf("%s: operators reads the clock (time.%s): time must come in as an argument", fset.Position(m.pos), m.name)
		}
	}
}

type clockRead struct {
	pos  token.Pos
	name string
}

// clockReads returns the calls of f to the clock functions of package time.
func clockReads(f *ast.File) []clockRead {
	timeName := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"time"` {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	if timeName == "" {
		return nil
	}
	var out []clockRead
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == timeName && slices.Contains(clockCalls, sel.Sel.Name) {
				out = append(out, clockRead{sel.Pos(), sel.Sel.Name})
			}
		}
		return true
	})
	return out
}

func TestClockReadsFails(t *testing.T) {
	src := "package p\nimport clock \"time\"\nfunc f() { _ = clock.Now(); _ = clock.Duration(1) }\n"
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := clockReads(f); len(got) != 1 || got[0].name != "Now" {
		t.Fatalf("want one clock read (Now), got %v", got)
	}
}

// TestGoModTidy checks that go.mod and go.sum are tidy: `go mod tidy
// -diff` prints nothing.
func TestGoModTidy(t *testing.T) {
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go.mod is not tidy (run go mod tidy): %v\n%s", err, out)
	}
}
