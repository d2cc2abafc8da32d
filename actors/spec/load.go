package spec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// ErrBad is wrapped by every error of Load that is a mistake in the
// job spec itself (as opposed to a runtime failure such as an unreachable
// broker or database, which Load never checks).
var ErrBad = errors.New("spec: bad job spec")

// Options say how and where Load reads a spec.
type Options struct {
	// Mode is where the job runs (Run or Cluster; default Run): it
	// decides which fields are allowed (see Mode).
	Mode Mode
	// Bounded forces source.bounded: true (eddy run --bounded).
	Bounded bool
	// Lookup resolves ${NAME} references; default os.LookupEnv (the
	// environment of the process that runs or validates the job).
	Lookup func(name string) (string, bool)
}

// Error is one mistake in a job spec: the field (YAML path such as
// "window.size", "sinks[1]"; "" for the whole document), its line in the
// spec (0 when unknown) and what is wrong. It wraps ErrBad.
type Error struct {
	Field  string
	Line   int
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("job spec: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns ErrBad.
func (e *Error) Unwrap() error { return ErrBad }

// Errors are all the mistakes Load found, in spec order. Its
// message has one line per mistake.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the mistakes (each wraps ErrBad).
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load is the one parser and validator of job specs, used on every
// path a spec takes (eddy run, eddy node --job, eddy ctl job submit through
// PUT /v1/jobs, and each node that runs a stored job — once per revision;
// eddy dev's flags build a Spec that LoadValue checks the same way):
//
//  1. ${NAME} and ${NAME:-default} in scalar values are replaced by the
//     environment variable NAME (Lookup), or default when NAME is unset
//     or empty; "$${" stands for a literal "${". Other '$' are kept. An
//     unset variable without default is a mistake naming the field and
//     the variable. Expansion happens after YAML parsing, so a value may
//     contain any character. The stored spec keeps the ${...} form: each
//     node expands it with its own environment (a Kubernetes Secret as
//     env works without an init container).
//  2. The YAML is decoded into Spec; unknown fields, bad durations and
//     wrong types are mistakes naming the field and its line.
//  3. Every sink URL is parsed (sinks.Open, nothing is connected: an
//     unreachable database or broker is a runtime failure, not a spec
//     mistake); the fields Options.Mode does not allow are refused
//     (see Mode).
//  4. Spec.Config builds the configuration and actors.Config.Validate checks
//     the rules across fields; each failed rule is reported with the spec
//     field it is about.
//
// The error is an Errors (every mistake found, each naming its field)
// wrapping ErrBad; passwords in it are masked (package sinks/secret). An
// Options.Mode that is neither Run nor Cluster is an error that does not
// wrap ErrBad (the caller's mistake).
func Load(data []byte, o Options) (*Spec, actors.Config, error) {
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, actors.Config{}, Errors{yamlSyntaxError(err)}
	}
	if root.Kind == 0 {
		return nil, actors.Config{}, Errors{{Reason: "the spec is empty"}}
	}
	orig := indexNode(&root)
	var errs Errors
	expanded := false
	env := map[string]string{}
	used := func(name, value string) {
		if len(value) >= minHiddenLen {
			env[value] = "${" + name + "}"
		}
	}
	expandedAt := map[string]string{} // field → its text before expansion
	walkScalars(&root, "", func(n *yaml.Node, path string) {
		v, changed, err := expandEnv(n.Value, o.Lookup, used)
		if err != nil {
			errs = append(errs, &Error{Field: path, Line: n.Line, Reason: err.Error()})
			return
		}
		if changed {
			expandedAt[path] = n.Value
			n.Value, expanded = v, true
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				// A plain scalar stays plain, so that "${N}" can give a
				// number or a duration; quoted ones stay strings.
				n.Tag = ""
			}
		}
	})
	if len(errs) > 0 {
		return nil, actors.Config{}, errs
	}
	doc := data
	if expanded {
		var err error
		if doc, err = yaml.Marshal(&root); err != nil {
			return nil, actors.Config{}, Errors{{Reason: fmt.Sprintf("re-encoding after ${...} expansion: %v", err)}}
		}
	}
	var spec Spec
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil {
		idx := orig
		if expanded {
			var n yaml.Node
			if yaml.Unmarshal(doc, &n) == nil {
				idx = indexNode(&n)
			}
		}
		es := decodeErrors(err, idx, orig)
		for _, e := range es {
			if text, ok := expandedAt[e.Field]; ok {
				// yaml quotes (a prefix of) the value: not of an expansion.
				e.Reason = quotedRe.ReplaceAllString(e.Reason, `"…"`) + fmt.Sprintf(" (the value is the expansion of %q)", text)
			}
		}
		return nil, actors.Config{}, hideEnv(es, env)
	}
	spec.env = env
	return checkSpec(&spec, o, func(path string) int { return orig.lines[path] })
}

// LoadValue is Load for a Spec built in Go rather than read from
// YAML (eddy dev builds one from its flags): steps 3 and 4 of Load —
// the same sink URL checks, mode rules, conversion (Spec.Config) and
// validation — on a copy of *s with o.Bounded applied. There is no ${NAME}
// expansion (the values are taken as they are) and the mistakes carry no
// line. The error is an Errors naming spec fields ("window.size"); a
// caller that took the values from flags maps the fields to its flags.
func LoadValue(s *Spec, o Options) (*Spec, actors.Config, error) {
	spec := *s
	return checkSpec(&spec, o, func(string) int { return 0 })
}

// checkSpec is steps 3 and 4 of Load on a decoded spec; line gives
// the line of a field in the spec text (0 = unknown).
func checkSpec(spec *Spec, o Options, line func(path string) int) (*Spec, actors.Config, error) {
	if err := o.Mode.check(); err != nil {
		return nil, actors.Config{}, err
	}
	var errs Errors
	env := spec.env
	if o.Bounded {
		spec.Source.Bounded = true
	}
	errs = append(errs, spec.modeErrors(o.Mode, line)...)
	probe := *spec
	probe.Broadcast.DevicesFile, probe.Metrics.Pushgateway = "", "" // checked above
	if len(spec.SinkURLs()) == 0 {
		errs = append(errs, &Error{Field: "sink", Reason: `required: a sink URL, e.g. sink: "mysql:${MYSQL_USER}:${MYSQL_PASSWORD}@tcp(127.0.0.1:3306)/eddy"`})
		probe.Sink = "discard"
	}
	if spec.Sink != "" {
		if err := checkSinkURL(spec.Sink); err != nil {
			errs = append(errs, &Error{Field: "sink", Line: line("sink"), Reason: err.Error()})
		}
	}
	for i, u := range spec.Sinks {
		f := fmt.Sprintf("sinks[%d]", i)
		if u == "" {
			errs = append(errs, &Error{Field: f, Line: line(f), Reason: "empty sink URL"})
			continue
		}
		if err := checkSinkURL(u); err != nil {
			errs = append(errs, &Error{Field: f, Line: line(f), Reason: err.Error()})
		}
	}
	if o := spec.SinkOptions; o.BufferBytes != 0 && (o.BufferBytes < sinks.MinBufferBytes || o.BufferBytes > sinks.MaxBufferBytesLimit) {
		errs = append(errs, &Error{Field: "sink_options.buffer_bytes", Line: line("sink_options.buffer_bytes"),
			Reason: fmt.Sprintf("%d bytes; must be in [%d, %d] (1 KiB to 1 TiB); leave it out for 64 MiB", o.BufferBytes, sinks.MinBufferBytes, sinks.MaxBufferBytesLimit)})
	}
	if o := spec.SinkOptions; o.BatchRows != 0 && (o.BatchRows < 1 || o.BatchRows > sinks.MaxBatchRows) {
		errs = append(errs, &Error{Field: "sink_options.batch_rows", Line: line("sink_options.batch_rows"),
			Reason: fmt.Sprintf("%d; must be in [1, %d]; leave it out for %d", o.BatchRows, sinks.MaxBatchRows, sinks.DefaultConfig().BatchRows)})
	}
	if o := spec.SinkOptions; o.BatchBytes != 0 && (o.BatchBytes < sinks.MinBatchBytes || o.BatchBytes > sinks.MaxBatchBytesLimit) {
		errs = append(errs, &Error{Field: "sink_options.batch_bytes", Line: line("sink_options.batch_bytes"),
			Reason: fmt.Sprintf("%d bytes; must be in [%d, %d] (4 KiB to 1 GiB); leave it out for 256 KiB", o.BatchBytes, sinks.MinBatchBytes, sinks.MaxBatchBytesLimit)})
	}
	if o := spec.SinkOptions; o.Conns != 0 && (o.Conns < 1 || o.Conns > sinks.MaxConns) {
		errs = append(errs, &Error{Field: "sink_options.conns", Line: line("sink_options.conns"),
			Reason: fmt.Sprintf("%d; must be in [1, %d]; leave it out for %d", o.Conns, sinks.MaxConns, sinks.DefaultConfig().Conns)})
	}
	probe.Sinks = nil
	if probe.Sink == "" || checkSinkURL(probe.Sink) != nil {
		probe.Sink = "discard"
	}
	cfg, err := probe.Config(o.Mode)
	if err != nil {
		for _, msg := range strings.Split(err.Error(), "\n") {
			field, reason := configField(msg)
			errs = append(errs, &Error{Field: field, Line: line(field), Reason: secret.RedactText(reason)})
		}
	}
	if len(errs) > 0 {
		line := func(e *Error) int {
			if e.Line == 0 {
				return math.MaxInt // mistakes without a line (missing fields) last
			}
			return e.Line
		}
		sort.SliceStable(errs, func(i, j int) bool { return line(errs[i]) < line(errs[j]) })
		return nil, actors.Config{}, hideEnv(errs, env)
	}
	return spec, cfg, nil
}

// CheckPushgatewayURL checks the URL of a Prometheus Pushgateway
// (metrics.pushgateway, eddy run --pushgateway): an absolute http:// or
// https:// URL with a host, optionally with user:password@ (basic auth)
// and a path prefix, without query or fragment. The error names what is
// wrong and has the password masked.
func CheckPushgatewayURL(raw string) error {
	if !strings.Contains(raw, "://") {
		return fmt.Errorf("pushgateway URL %q: scheme must be http or https, e.g. http://127.0.0.1:9091", secret.RedactURL(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("pushgateway URL %q does not parse: %s", secret.RedactURL(raw), secret.RedactText(errors.Unwrap(err).Error()))
	}
	shown := secret.RedactURL(raw)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("pushgateway URL %q: scheme must be http or https, e.g. http://127.0.0.1:9091", shown)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("pushgateway URL %q: no host, e.g. http://127.0.0.1:9091", shown)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("pushgateway URL %q: no query or fragment allowed (eddy appends /metrics/job/...)", shown)
	}
	return nil
}

// checkSinkURL parses a sink URL without connecting anything; the error
// is short (no list of forms) and has its password masked.
func checkSinkURL(u string) error {
	_, err := sinks.Open(u, sinks.DefaultConfig(), nil)
	if err == nil {
		return nil
	}
	msg, _, _ := strings.Cut(err.Error(), "; valid forms:")
	msg = strings.TrimPrefix(msg, "sinks: ")
	if errors.Is(err, sinks.ErrBadURL) {
		msg += " (valid forms: sqlite:PATH, mysql:DSN, postgres://USER@HOST:5432/DB, clickhouse://USER@HOST:9000/DB, stdout, ndjson:PATH, discard, kafka://HOST:PORT[?OPTIONS])"
	}
	return errors.New(secret.RedactText(msg))
}

// configRules map the messages of Spec.Config and actors.Config.Validate to the
// spec field they are about (longest prefix first).
var configRules = []struct{ prefix, field string }{
	{"spec: job spec format.time_zone: ", "format.time_zone"},
	{"actors: job name", "name"},
	{"actors: source brokers", "source.brokers"},
	{"actors: source topic", "source.topic"},
	{"actors: source start offset", "source.start_offset"},
	{"actors: source end offsets", "source.end_offsets"},
	{"actors: source end offset", "source.end_offsets"},
	{"actors: source kafka version", "source.kafka_version"},
	{"actors: source group id", "source.group_id"},
	{"actors: batch size", "batch_size"},
	{"actors: batch linger", "batch_linger"},
	{"actors: sink flush interval", "sink_options.flush_interval"},
	{"actors: checkpoint interval", "checkpoint.interval"},
	{"actors: checkpoint timeout", "checkpoint.timeout"},
	{"actors: checkpoint retain", "checkpoint.retain"},
	{"actors: state cache_devices", "state.cache_devices"},
	{"actors: state cache_bytes", "state.cache_bytes"},
	{"operators: window slide", "window.slide"},
	{"operators: window size", "window.size"},
	{"operators: window kind", "window.kind"},
	{"operators: session gap", "window.gap"},
	{"operators: threshold", "work_periods.threshold"},
	{"operators: max gap", "work_periods.max_gap"},
	{"operators: out-of-orderness", "event_time.out_of_orderness"},
	{"operators: allowed lateness", "event_time.allowed_lateness"},
	{"operators: max message bytes", "format.max_message_bytes"},
	{"operators: max future", "event_time.max_future"},
	{"operators: idle timeout", "event_time.idle_timeout"},
}

// specFieldRe matches "spec: job spec: <field> ..." messages of
// Spec.Config that name their field themselves.
var specFieldRe = regexp.MustCompile(`^spec: job spec: ([a-z_]+(?:\.[a-z_]+)*(?:\[\d+\])?):? (.*)$`)

func configField(msg string) (field, reason string) {
	if m := specFieldRe.FindStringSubmatch(msg); m != nil && strings.Contains(m[1], ".") {
		return m[1], m[1] + " " + m[2]
	}
	for _, r := range configRules {
		if strings.HasPrefix(msg, r.prefix) {
			reason = strings.TrimPrefix(msg, "spec: job spec format.time_zone: ")
			reason = strings.TrimPrefix(strings.TrimPrefix(reason, "actors: "), "operators: ")
			return r.field, reason
		}
	}
	return "", strings.TrimPrefix(strings.TrimPrefix(msg, "actors: "), "operators: ")
}

// expandEnv replaces ${NAME} and ${NAME:-default} in s (see Load).
func expandEnv(s string, lookup func(string) (string, bool), used func(name, value string)) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte(s[i])
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", false, fmt.Errorf("unterminated ${ at byte %d (a literal \"${\" is written \"$${\")", i)
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", false, fmt.Errorf("${%s}: %q is not an environment variable name (letters, digits, _; not starting with a digit)", ref, name)
		}
		v, ok := lookup(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
			used(name, v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// set but empty, no default: empty
		default:
			return "", false, fmt.Errorf("environment variable %s is not set (set it on every node, or write ${%s:-default})", name, name)
		}
		i += end + 1
	}
	return b.String(), true, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// nodeIndex maps field paths to lines and lines to field paths.
type nodeIndex struct {
	lines  map[string]int   // path → line of its key (or item)
	byLine map[int][]string // line → paths on it
}

func indexNode(root *yaml.Node) nodeIndex {
	idx := nodeIndex{lines: map[string]int{}, byLine: map[int][]string{}}
	var walk func(n *yaml.Node, path string)
	add := func(path string, line int) {
		if _, ok := idx.lines[path]; !ok {
			idx.lines[path] = line
			idx.byLine[line] = append(idx.byLine[line], path)
		}
	}
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := joinPath(path, n.Content[i].Value)
				add(p, n.Content[i].Line)
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				add(p, c.Line)
				walk(c, p)
			}
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(n.Alias, path)
			}
		}
	}
	walk(root, "")
	return idx
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// walkScalars calls fn for every scalar value (not mapping keys) with its
// path.
func walkScalars(n *yaml.Node, path string, fn func(*yaml.Node, string)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkScalars(c, path, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkScalars(n.Content[i+1], joinPath(path, n.Content[i].Value), fn)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walkScalars(c, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case yaml.ScalarNode:
		fn(n, path)
	}
}

var (
	quotedRe      = regexp.MustCompile(`"[^"]*"`)
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownRe     = regexp.MustCompile(`^field (\S+) not found in type .*$`)
	cannotUnmarsh = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

func yamlSyntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{Line: n, Reason: "invalid YAML: " + m[2]}
	}
	return &Error{Reason: "invalid YAML: " + msg}
}

// decodeErrors turns the errors of yaml's decoder ("line N: ...") into
// Errors naming the field: idx indexes the decoded document, orig the
// spec as written (for its line numbers).
func decodeErrors(err error, idx, orig nodeIndex) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "spec: job spec: ")}
	}
	var out Errors
	for _, msg := range msgs {
		m := yamlLineRe.FindStringSubmatch(msg)
		if m == nil {
			out = append(out, &Error{Reason: strings.TrimPrefix(msg, "yaml: ")})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		reason := strings.TrimPrefix(m[2], "line "+m[1]+": ")
		// A Duration error carries its own "line N: " prefix.
		if mm := yamlLineRe.FindStringSubmatch(reason); mm != nil {
			reason = mm[2]
		}
		paths := idx.byLine[line]
		field := ""
		if u := unknownRe.FindStringSubmatch(reason); u != nil {
			for _, p := range paths {
				if p == u[1] || strings.HasSuffix(p, "."+u[1]) {
					field = p
				}
			}
			reason = "unknown field" + knownFields(field)
		} else if d, ok := strings.CutPrefix(reason, "time: "); ok {
			reason = "invalid duration: " + d + ` (want a Go duration such as "90s", "1m30s", "500ms")`
		} else if c := cannotUnmarsh.FindStringSubmatch(reason); c != nil {
			reason = fmt.Sprintf("want %s, got %q", typeWord(c[3]), c[2])
		}
		if field == "" && len(paths) > 0 {
			field = paths[len(paths)-1] // the innermost field on the line
		}
		sl := line
		if l, ok := orig.lines[field]; ok {
			sl = l
		}
		out = append(out, &Error{Field: field, Line: sl, Reason: reason})
	}
	return out
}

func typeWord(goType string) string {
	switch strings.TrimPrefix(strings.TrimPrefix(goType, "[]"), "map[int32]") {
	case "int", "int32", "int64":
		return "an integer"
	case "float64", "*float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	if strings.HasPrefix(goType, "[]") {
		return "a list"
	}
	if strings.HasPrefix(goType, "map") {
		return "a map"
	}
	if strings.HasPrefix(goType, "struct") {
		return "a mapping of fields"
	}
	return goType
}

// knownFields lists the fields valid beside an unknown one, from the
// yaml tags of Spec.
func knownFields(field string) string {
	parent := ""
	if i := strings.LastIndex(field, "."); i >= 0 {
		parent = field[:i]
	}
	names := specFieldNames(parent)
	if len(names) == 0 {
		return ""
	}
	return "; valid here: " + strings.Join(names, ", ")
}

// specFieldNames returns the yaml field names of the struct at path in
// Spec ("" = the top level).
func specFieldNames(path string) []string {
	t := reflect.TypeOf(Spec{})
	if path != "" {
		for _, part := range strings.Split(path, ".") {
			found := false
			for i := 0; i < t.NumField(); i++ {
				if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == part {
					t, found = t.Field(i).Type, true
					break
				}
			}
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if !found || t.Kind() != reflect.Struct {
				return nil
			}
		}
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// minHiddenLen is the shortest expanded value HideEnv replaces (shorter
// ones, like "1m" or "100", are too common to find reliably in a text).
const minHiddenLen = 4

// HideEnv replaces in s every value (of at least 4 bytes) that Load
// expanded from the environment with its "${NAME}" reference, so that an
// error about an expanded field never shows what the node's environment
// holds (a submitter could otherwise read any variable of a node through
// the errors of a bad spec).
func (s *Spec) HideEnv(text string) string {
	if s == nil {
		return text
	}
	return hideText(text, s.env)
}

func hideText(text string, env map[string]string) string {
	if len(env) == 0 {
		return text
	}
	vals := make([]string, 0, len(env))
	for v := range env {
		vals = append(vals, v)
	}
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	for _, v := range vals {
		text = strings.ReplaceAll(text, v, env[v])
	}
	return text
}

func hideEnv(es Errors, env map[string]string) Errors {
	for _, e := range es {
		e.Reason = hideText(e.Reason, env)
	}
	return es
}
