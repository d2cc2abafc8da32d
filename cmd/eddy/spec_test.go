package main

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/cluster/jobs"
	"github.com/eddy-iot/eddy/control"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/jobs")

// startTestNode starts a one-node cluster that validates job specs the way
// eddy node does (jobs.ValidateSpec).
func startTestNode(t *testing.T) *control.Node {
	t.Helper()
	addrs := freeLocalAddrs(t, 3)
	cfg := control.DefaultConfig()
	cfg.ID, cfg.DataDir = "n1", t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
	cfg.BootstrapExpect = 1
	cfg.ValidateJob = jobs.ValidateSpec
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.APIToken = testToken
	node, err := cluster.StartNode(cfg, cluster.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}

// ctl runs eddy ctl against addr and returns its output and error.
func ctl(addr string, args ...string) (string, error) {
	cmd := newCtlCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--addr", "http://" + addr}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// TestBadSpecFixtures submits every testdata/jobs/*.bad.yml through eddy
// ctl job submit (PUT /v1/jobs) to a real node: each is refused with HTTP
// 400 and the error of its golden file (*.bad.yml.err; -update rewrites
// them), nothing is stored, and no error shows a password. env.good.yml is
// accepted, and stored with its ${...} text.
func TestBadSpecFixtures(t *testing.T) {
	t.Setenv("EDDY_TEST_SET_PASSWORD", "env-secret-4711")
	node := startTestNode(t)
	addr := node.Status().ID
	_ = addr
	files, err := filepath.Glob("testdata/jobs/*.bad.yml")
	if err != nil || len(files) < 10 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	http := nodeHTTP(node)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := ctl(http, "job", "submit", f)
			if err == nil {
				t.Fatalf("submit of %s succeeded", f)
			}
			got := err.Error()
			if !strings.Contains(got, "(HTTP 400)") {
				t.Errorf("want HTTP 400, got: %s", got)
			}
			for _, pw := range []string{"hunter2", "env-secret-4711"} {
				if strings.Contains(got, pw) {
					t.Errorf("error shows the password %q: %s", pw, got)
				}
			}
			golden := f + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestBadSpecFixtures -update to create it)", err)
			}
			if strings.TrimSpace(string(want)) != got {
				t.Errorf("error of %s:\n got: %s\nwant: %s", f, got, want)
			}
		})
	}
	if out, err := ctl(http, "job", "list", "-o", "json"); err != nil || strings.Contains(out, "bad-") {
		t.Errorf("bad specs were stored: %v\n%s", err, out)
	}
	out, err := ctl(http, "job", "submit", "testdata/jobs/env.good.yml", "--partitions", "2")
	if err != nil {
		t.Fatalf("env.good.yml: %v\n%s", err, out)
	}
	j, ok := node.FSM().View().Job("good-env")
	if !ok || !strings.Contains(j.Spec, "${EDDY_TEST_SET_PASSWORD}") || strings.Contains(j.Spec, "env-secret-4711") {
		t.Errorf("stored spec must keep ${...} and never the secret: %+v", j)
	}
	// Without the variable on the node, the same spec is refused, naming it.
	os.Unsetenv("EDDY_TEST_SET_PASSWORD")
	if _, err := ctl(http, "job", "submit", "testdata/jobs/env.good.yml"); err == nil || !strings.Contains(err.Error(), "sink (line 10): environment variable EDDY_TEST_SET_PASSWORD is not set") {
		t.Errorf("submit without the variable: %v", err)
	}
}

func nodeHTTP(n *control.Node) string {
	for _, m := range n.MemberInfos() {
		if m.ID == n.ID() {
			return m.HTTPAddr
		}
	}
	return ""
}
