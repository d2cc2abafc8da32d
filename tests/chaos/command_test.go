package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// TestChaosCommand runs `eddy chaos` as a user would, against a cluster of
// three node processes with a bounded job over a replay still being
// produced: a seeded schedule of two SIGKILLs (one of the Raft leader) with
// restarts from the processes' own command lines, one SIGSTOP past the
// lease TTL and one join, then its lease-history check and eddy verify of
// the MySQL sink. The command must exit 0 and say that the sink equals the
// oracle; its output is logged.
func TestChaosCommand(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	const records = 100000
	t.Logf("seed %d (replay with: go test ./tests/chaos -v -run TestChaosCommand -seed %d)", seed, seed)
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := harness.StartBroker(t, eddyBin, dir, partitions)
	want := oracleOf(t, records)
	spec := harness.BoundedSpec(job, broker, want, "mysql:"+dsn, "file://"+filepath.Join(dir, "checkpoints"), "")
	specFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}

	c := harness.Start(t, harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := c.Client(0, 30*time.Second).SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}
	// The node the schedule's join starts, with the harness's addresses.
	joiner, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	joinCmd := shellQuote(append([]string{eddyBin}, joiner.Args...))
	urls := c.URLs(0)[:3]
	// Every process chaos restarted or joined is detached from the
	// harness: kill them by the pids they report.
	t.Cleanup(func() {
		for _, u := range append(urls, joiner.URL()) {
			if pid := pidOf(u); pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	harness.StartReplay(t, eddyBin, broker, "--limit", fmt.Sprint(records), "--speed", "30000")

	logDir := filepath.Join(dir, "chaos-logs")
	cmd := exec.CommandContext(ctx, eddyBin, "chaos",
		"--cluster", strings.Join(urls, ","),
		"--schedule", fmt.Sprintf("seed=%d,kills=2,pauses=1,joins=1,interval=2s,pause=5s,down=1s", seed),
		"--join", joinCmd, "--log-dir", logDir,
		"--job", specFile, "--sink", "mysql:"+dsn, "--wait", "3m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("eddy chaos output:\n%s", out.String())
	if err != nil {
		for _, n := range c.Nodes {
			t.Logf("---- %s harness log tail:\n%s", n.ID, n.LogTail(30))
		}
		logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("---- %s (tail):\n%s", filepath.Base(l), tail(string(b), 30))
		}
		t.Fatalf("eddy chaos: %v", err)
	}
	for _, w := range []string{"SIGKILL", "the Raft leader", "SIGSTOP", "join 1 started", "one holder per partition", "MATCH"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("eddy chaos output lacks %q", w)
		}
	}
	// What the command claims, checked independently.
	harness.WaitOracle(t, ctx, dsn, want, 10*time.Second)
	hist, err := c.Client(0, 30*time.Second).LeaseHistory(ctx, job, -1)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckLeaseHistory(t, hist)
}

func pidOf(url string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var h control.Health
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return 0
	}
	return h.PID
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}
