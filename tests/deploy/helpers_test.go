package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the repository root (the directory with go.mod).
var repoRoot = func() string {
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		panic("tests/deploy must run from its package directory: " + err.Error())
	}
	return dir
}()

// deployPath is a path under deploy/.
func deployPath(parts ...string) string {
	return filepath.Join(append([]string{repoRoot, "deploy"}, parts...)...)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML file into generic maps.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// Generic accessors for decoded YAML/JSON; they fail the test on a shape
// mismatch so that a broken file reports where it is broken.

func m(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	r, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want a mapping, got %T (%v)", what, v, v)
	}
	return r
}

func l(t *testing.T, v any, what string) []any {
	t.Helper()
	r, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: want a list, got %T (%v)", what, v, v)
	}
	return r
}

func s(t *testing.T, v any, what string) string {
	t.Helper()
	r, ok := v.(string)
	if !ok {
		t.Fatalf("%s: want a string, got %T (%v)", what, v, v)
	}
	return r
}

func strs(t *testing.T, v any, what string) []string {
	t.Helper()
	var out []string
	for i, e := range l(t, v, what) {
		out = append(out, s(t, e, fmt.Sprintf("%s[%d]", what, i)))
	}
	return out
}

// eddyBinary builds eddy once per test binary, static and with the flags of
// deploy/build.sh, and returns its path.
func eddyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "eddy-deploy-test-*")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		bin := filepath.Join(dir, "eddy")
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "timetzdata", "-ldflags=-s -w", "-o", bin, "./cmd/eddy")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/eddy: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

var (
	buildOnce sync.Once
	buildBin  string
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// flagSpec is one flag of an eddy command as its --help lists it.
type flagSpec struct {
	Name    string
	Default string // "" when the help shows no default
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]map[string]flagSpec{}
	// "      --http-addr string   HTTP API address ... (default "127.0.0.1:8080")"
	flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: \w+)?\s{2,}(.*)$`)
	defValue = regexp.MustCompile(`\(default "?(.*?)"?\)$`)
)

// eddyFlags returns the flags `eddy <command...> --help` lists, by name.
func eddyFlags(t *testing.T, command ...string) map[string]flagSpec {
	t.Helper()
	key := strings.Join(command, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if f, ok := helpCache[key]; ok {
		return f
	}
	out, err := exec.Command(eddyBinary(t), append(command, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy %s --help: %v\n%s", key, err, out)
	}
	flags := map[string]flagSpec{}
	inFlags := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasSuffix(line, "Flags:") {
			inFlags = true
			continue
		}
		if !inFlags {
			continue
		}
		mm := flagLine.FindStringSubmatch(line)
		if mm == nil {
			continue
		}
		f := flagSpec{Name: mm[1]}
		if d := defValue.FindStringSubmatch(mm[2]); d != nil {
			f.Default = d[1]
		}
		flags[f.Name] = f
	}
	if len(flags) == 0 {
		t.Fatalf("eddy %s --help lists no flags:\n%s", key, out)
	}
	helpCache[key] = flags
	return flags
}

// eddyCommand is one eddy invocation taken from a deployment file: the
// subcommand words and the flags with their values.
type eddyCommand struct {
	Sub   []string            // e.g. ["dev", "broker"]
	Flags map[string][]string // --name=value or --name value; a bare --name has value ""
}

// parseEddyArgs splits an argument list (without the binary) into the
// subcommand words and the flags. A word right after a flag without "=" is
// that flag's value, so boolean flags must come last or use --flag=true.
func parseEddyArgs(args []string) eddyCommand {
	c := eddyCommand{Flags: map[string][]string{}}
	last := ""
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			c.Flags[name] = append(c.Flags[name], val)
			last = ""
			if !hasVal {
				last = name
			}
		case last != "":
			vals := c.Flags[last]
			vals[len(vals)-1] = a
			last = ""
		default:
			// A subcommand word, also after persistent flags
			// (eddy ctl --addr=X config list).
			c.Sub = append(c.Sub, a)
		}
	}
	return c
}

// flag returns the single value of --name ("" when absent).
func (c eddyCommand) flag(name string) string {
	if v := c.Flags[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// checkFlags fails for every flag of c that `eddy <c.Sub> --help` does not
// list. Boolean flags given without a value are fine; flags the help lists
// with a value type and used without one are caught by eddy itself.
func checkFlags(t *testing.T, where string, c eddyCommand) {
	t.Helper()
	if len(c.Sub) == 0 {
		t.Errorf("%s: no eddy subcommand in %v", where, c)
		return
	}
	known := eddyFlags(t, c.Sub...)
	for name := range c.Flags {
		if _, ok := known[name]; !ok {
			t.Errorf("%s: eddy %s has no flag --%s (eddy %s --help)", where, strings.Join(c.Sub, " "), name, strings.Join(c.Sub, " "))
		}
	}
}

// freePort returns a TCP port that was free a moment ago.
// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int { return freeport.Port(t) }

// eventually polls fn every 250ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// deployToken is the API token of the stacks the tests start
// ($EDDY_TOKEN, which the compose file requires).
const deployToken = "deploy-test-token-3e9a"

// run runs a command with a timeout and returns its combined output; the
// command gets $EDDY_TOKEN = deployToken.
func run(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "EDDY_TOKEN="+deployToken), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// drainTimeout is how long `eddy node` hands its partitions over on
// SIGTERM: the --drain-timeout given in args, else its default.
func drainTimeout(t *testing.T, c eddyCommand) time.Duration {
	t.Helper()
	v := c.flag("drain-timeout")
	if v == "" {
		f, ok := eddyFlags(t, "node")["drain-timeout"]
		if !ok {
			return 0 // no drain on this version of eddy node
		}
		v = f.Default
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--drain-timeout %q: %v", v, err)
	}
	return d
}
