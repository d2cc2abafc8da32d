package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// metricDef is a Prometheus metric the eddy code registers.
type metricDef struct {
	Name   string
	Kind   string          // counter, gauge, histogram, summary ("" if unknown)
	Labels map[string]bool // variable labels
	File   string          // where it is defined, for messages
}

var (
	metricsOnce sync.Once
	metricsDefs map[string]*metricDef
	metricsErr  error
)

// codeMetrics reads the metrics eddy defines from its Go sources (every
// non-test .go file outside tests/ and deploy/): every string literal that
// is a whole metric name ("eddy_..."), with the kind and labels found when
// it is the Name of a prometheus.XxxOpts literal passed to a constructor.
func codeMetrics(t *testing.T) map[string]*metricDef {
	t.Helper()
	metricsOnce.Do(func() { metricsDefs, metricsErr = scanMetrics(repoRoot) })
	if metricsErr != nil {
		t.Fatal(metricsErr)
	}
	if len(metricsDefs) < 10 {
		t.Fatalf("found only %d eddy_* metric names in the Go sources; the scanner is broken", len(metricsDefs))
	}
	return metricsDefs
}

var metricName = regexp.MustCompile(`^eddy_[a-z0-9_]+$`)

// jobScoped are the source folders whose metrics are per job: eddy
// registers them through promreg.ForJob, which adds the constant label
// eddy_job (the job's name) to every series, so the scanner adds it too.
var jobScoped = []string{"actors/", "sinks/"}

func scanMetrics(root string) (map[string]*metricDef, error) {
	defs := map[string]*metricDef{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel == "tests", rel == "deploy", strings.HasPrefix(d.Name(), "."), d.Name() == "testdata", d.Name() == "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return nil // someone's file in the middle of an edit; the build tests catch it
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if name, ok := stringLit(n); ok && metricName.MatchString(name) {
					if defs[name] == nil {
						defs[name] = &metricDef{Name: name, Labels: map[string]bool{}, File: rel}
					}
				}
			case *ast.CallExpr:
				scanConstructor(n, defs, rel)
			}
			return true
		})
		return nil
	})
	for _, d := range defs {
		for _, dir := range jobScoped {
			if strings.HasPrefix(filepath.ToSlash(d.File), dir) {
				d.Labels["eddy_job"] = true
			}
		}
	}
	return defs, err
}

// scanConstructor records kind and labels of prometheus.NewXxx(Opts{Name:
// "..."}, []string{labels...}) and of prometheus.NewXxxFunc(...).
func scanConstructor(call *ast.CallExpr, defs map[string]*metricDef, file string) {
	if id, ok := call.Fun.(*ast.Ident); ok && len(call.Args) > 0 {
		scanHelper(id.Name, call, defs, file)
		return
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || len(call.Args) == 0 {
		return
	}
	kinds := map[string]string{
		"NewCounter": "counter", "NewCounterVec": "counter", "NewCounterFunc": "counter",
		"NewGauge": "gauge", "NewGaugeVec": "gauge", "NewGaugeFunc": "gauge",
		"NewHistogram": "histogram", "NewHistogramVec": "histogram",
		"NewSummary": "summary", "NewSummaryVec": "summary",
	}
	kind, ok := kinds[sel.Sel.Name]
	if !ok {
		return
	}
	lit, ok := call.Args[0].(*ast.CompositeLit)
	if !ok {
		return
	}
	var name string
	for _, e := range lit.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
			if bl, ok := kv.Value.(*ast.BasicLit); ok {
				name, _ = stringLit(bl)
			}
		}
	}
	if !metricName.MatchString(name) {
		return
	}
	d := defs[name]
	if d == nil {
		d = &metricDef{Name: name, Labels: map[string]bool{}, File: file}
		defs[name] = d
	}
	d.Kind, d.File = kind, file // the constructor is the definition
	if strings.HasSuffix(sel.Sel.Name, "Vec") && len(call.Args) > 1 {
		// []string{"a", "b"}, or append(more, "a", "b") (a constructor
		// that takes more labels from its caller).
		var elts []ast.Expr
		switch labels := call.Args[1].(type) {
		case *ast.CompositeLit:
			elts = labels.Elts
		case *ast.CallExpr:
			if id, ok := labels.Fun.(*ast.Ident); ok && id.Name == "append" && len(labels.Args) > 1 {
				elts = labels.Args[1:]
			}
		}
		for _, e := range elts {
			if bl, ok := e.(*ast.BasicLit); ok {
				if v, ok := stringLit(bl); ok {
					d.Labels[v] = true
				}
			}
		}
	}
}

// scanHelper records the kind of a metric made by a local helper named
// after its kind, such as gauge("eddy_raft_state", help, fn).
func scanHelper(fn string, call *ast.CallExpr, defs map[string]*metricDef, file string) {
	bl, ok := call.Args[0].(*ast.BasicLit)
	if !ok {
		return
	}
	name, ok := stringLit(bl)
	if !ok || !metricName.MatchString(name) {
		return
	}
	for _, kind := range []string{"counter", "gauge", "histogram", "summary"} {
		if strings.Contains(strings.ToLower(fn), kind) {
			if defs[name] == nil {
				defs[name] = &metricDef{Name: name, Labels: map[string]bool{}, File: file}
			}
			defs[name].Kind = kind
			return
		}
	}
}

func stringLit(b *ast.BasicLit) (string, bool) {
	if b.Kind != token.STRING {
		return "", false
	}
	v, err := strconv.Unquote(b.Value)
	return v, err == nil
}

// seriesName maps a series name used in PromQL to the metric that produces
// it: histogram series end in _bucket, _sum, _count; summaries in _sum,
// _count. ok is false when no metric of the code produces it.
func seriesName(defs map[string]*metricDef, name string) (*metricDef, bool) {
	if d, ok := defs[name]; ok {
		return d, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suf)
		if !found {
			continue
		}
		if d, ok := defs[base]; ok && (d.Kind == "histogram" || (d.Kind == "summary" && suf != "_bucket")) {
			return d, true
		}
	}
	return nil, false
}

// promqlRefs are the metric and label references of PromQL expressions.
type promqlRefs struct {
	metrics  map[string]bool            // series names
	matchers map[string]map[string]bool // series name -> label names in its {...}
	grouping map[string]bool            // labels in by/without/on/ignoring/group_left/group_right
}

var (
	selectorRE = regexp.MustCompile(`\b(eddy_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
)

func parsePromQL(exprs []string) promqlRefs {
	r := promqlRefs{metrics: map[string]bool{}, matchers: map[string]map[string]bool{}, grouping: map[string]bool{}}
	for _, e := range exprs {
		for _, mm := range selectorRE.FindAllStringSubmatch(e, -1) {
			r.metrics[mm[1]] = true
			if r.matchers[mm[1]] == nil {
				r.matchers[mm[1]] = map[string]bool{}
			}
			for _, lm := range matcherRE.FindAllStringSubmatch(mm[2], -1) {
				r.matchers[mm[1]][lm[1]] = true
			}
		}
		for _, g := range groupingRE.FindAllStringSubmatch(e, -1) {
			for _, lbl := range strings.Split(g[2], ",") {
				if lbl = strings.TrimSpace(lbl); lbl != "" {
					r.grouping[lbl] = true
				}
			}
		}
	}
	return r
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// checkPromQL fails for every metric the expressions use that the code does
// not define, and every label they match or group by that no such metric
// has (beyond job and instance, and le for histogram buckets).
func checkPromQL(t *testing.T, where string, exprs []string) promqlRefs {
	t.Helper()
	defs := codeMetrics(t)
	refs := parsePromQL(exprs)
	all := map[string]bool{}
	for name := range refs.metrics {
		d, ok := seriesName(defs, name)
		if !ok {
			t.Errorf("%s uses %s, which no eddy code defines (metrics in the code: %s)", where, name, strings.Join(sortedKeys(defs), ", "))
			continue
		}
		for lbl := range d.Labels {
			all[lbl] = true
		}
		if strings.HasSuffix(name, "_bucket") {
			all["le"] = true
		}
		for lbl := range refs.matchers[name] {
			if !d.Labels[lbl] && !targetLabels[lbl] && !(lbl == "le" && strings.HasSuffix(name, "_bucket")) {
				t.Errorf("%s matches label %q of %s, which has labels %v (plus job, instance)", where, lbl, name, sortedKeys(d.Labels))
			}
		}
	}
	for lbl := range refs.grouping {
		if !all[lbl] && !targetLabels[lbl] {
			t.Errorf("%s groups by label %q, which none of its eddy metrics has", where, lbl)
		}
	}
	return refs
}

func sortedKeys[V any](mp map[string]V) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestScannerFindsKnownMetrics guards the source scanner itself: the
// metrics DESIGN.md names must be found, with their kinds and labels.
func TestScannerFindsKnownMetrics(t *testing.T) {
	defs := codeMetrics(t)
	want := []struct {
		name, kind string
		labels     []string
	}{
		{"eddy_records_received_total", "counter", []string{"eddy_job"}},
		{"eddy_records_failed_total", "counter", []string{"eddy_job", "reason"}},
		{"eddy_partition_lag_records", "gauge", []string{"eddy_job", "partition"}},
		{"eddy_sink_flush_seconds", "histogram", []string{"eddy_job", "sink"}},
		{"eddy_sink_rows_written_total", "counter", []string{"eddy_job", "sink", "table"}},
		{"eddy_record_latency_seconds", "histogram", []string{"eddy_job"}},
		{"eddy_event_time_lag_seconds", "gauge", []string{"eddy_job", "partition"}},
		{"eddy_partition_backpressured", "gauge", []string{"eddy_job", "partition"}},
		{"eddy_raft_state", "gauge", nil},
		{"eddy_members", "gauge", []string{"status"}},
	}
	for _, w := range want {
		d, ok := defs[w.name]
		if !ok {
			t.Errorf("%s not found in the Go sources", w.name)
			continue
		}
		if d.Kind != w.kind {
			t.Errorf("%s: kind %q, want %q", w.name, d.Kind, w.kind)
		}
		if got := sortedKeys(d.Labels); strings.Join(got, ",") != strings.Join(w.labels, ",") {
			t.Errorf("%s: labels %v, want %v", w.name, got, w.labels)
		}
	}
	if _, ok := seriesName(defs, "eddy_sink_flush_seconds_bucket"); !ok {
		t.Error("eddy_sink_flush_seconds_bucket not recognised as a histogram series")
	}
	if _, ok := seriesName(defs, "eddy_records_received_total_bucket"); ok {
		t.Error("a counter must not have _bucket series")
	}
	if _, ok := seriesName(defs, "eddy_no_such_metric"); ok {
		t.Error("unknown metric accepted")
	}
}

// TestDocsMentionOnlyRealMetrics: deploy/README.md and the comments of the
// deployment files name metrics too; they must exist (a name ending in "_",
// as in eddy_raft_*, must be a prefix of one).
func TestDocsMentionOnlyRealMetrics(t *testing.T) {
	defs := codeMetrics(t)
	token := regexp.MustCompile(`\beddy_[a-z0-9_]+`)
	files := []string{
		deployPath("README.md"),
		deployPath("prometheus", "prometheus.yml"),
		deployPath("prometheus", "alerts.yml"),
		deployPath("grafana", "eddy-dashboard.json"),
	}
	for _, f := range files {
		for _, name := range token.FindAllString(string(readFile(t, f)), -1) {
			if strings.HasSuffix(name, "_") {
				found := false
				for d := range defs {
					found = found || strings.HasPrefix(d, name)
				}
				if !found {
					t.Errorf("%s mentions %s*, which matches no metric of the code", f, name)
				}
				continue
			}
			if _, ok := seriesName(defs, name); !ok {
				t.Errorf("%s mentions %s, which no eddy code defines", f, name)
			}
		}
	}
}

// TestMetricLabelsKeepTargetLabels: no eddy metric may have a label named
// like a label Prometheus attaches to every scraped series (job, instance).
// Prometheus renames such a label to exported_job / exported_instance, so
// queries, alerts and dashboards written with the code's label name find
// nothing.
func TestMetricLabelsKeepTargetLabels(t *testing.T) {
	for _, name := range sortedKeys(codeMetrics(t)) {
		d := codeMetrics(t)[name]
		for lbl := range d.Labels {
			if targetLabels[lbl] {
				t.Errorf("%s (%s) has a label %q: Prometheus stores it as exported_%s; rename it (e.g. %q)", name, d.File, lbl, lbl, "eddy_"+lbl)
			}
		}
	}
}
