package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/cluster/assign"
	"github.com/eddy-iot/eddy/cluster/jobs"
	"github.com/eddy-iot/eddy/control"
)

// countingRunner is an assign.Runner that only keeps which partitions run.
type countingRunner struct {
	mu      sync.Mutex
	running map[string]uint64
}

func (r *countingRunner) Start(_ context.Context, l control.Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[fmt.Sprintf("%s/%d", l.Job, l.Partition)] = l.Epoch
	return nil
}

func (r *countingRunner) Handoff(_ context.Context, l control.Lease) (control.HandoffPoint, error) {
	r.Stop(l.Job, l.Partition)
	return control.HandoffPoint{Offset: 7, Snapshot: "mem://" + l.Job}, nil
}

func (r *countingRunner) Stop(job string, p int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, fmt.Sprintf("%s/%d", job, p))
}

func (r *countingRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

func freeLocalAddrs(t *testing.T, n int) []string { return freeport.Take(t, n) }

func runCtl(t *testing.T, addr string, args ...string) string {
	t.Helper()
	cmd := newCtlCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--addr", "http://" + addr}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("eddy ctl %s: %v\n%s", strings.Join(args, " "), err, &out)
	}
	return out.String()
}

// TestCtlJobsPartitions submits a job through `eddy ctl job submit` to a
// one-node cluster with an assigner, and reads it back through job list,
// partitions, leases and checkpoints; cancel hands the partitions off.
func TestCtlJobsPartitions(t *testing.T) {
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
	defer node.Close()
	runner := &countingRunner{running: map[string]uint64{}}
	acfg := assign.DefaultConfig()
	acfg.Runner = runner
	if _, err := assign.New(node, acfg); err != nil {
		t.Fatal(err)
	}

	spec := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(spec, []byte("name: ctl-job\nsource:\n  brokers: [\"127.0.0.1:9092\"]\nsink: discard\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nsourze: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newCtlCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"--addr", "http://" + cfg.HTTPAddr, "job", "submit", bad})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "sourze") {
		t.Errorf("submit of a spec with an unknown field: %v, want an error naming it", err)
	}

	out := runCtl(t, cfg.HTTPAddr, "job", "submit", spec, "--partitions", "4")
	if !strings.Contains(out, "job ctl-job submitted") || !strings.Contains(out, "partitions: 4") {
		t.Errorf("submit output:\n%s", out)
	}
	if out := runCtl(t, cfg.HTTPAddr, "job", "list"); !strings.Contains(out, "ctl-job") {
		t.Errorf("job list:\n%s", out)
	}
	if out := runCtl(t, cfg.HTTPAddr, "job", "get", "ctl-job", "--spec"); !strings.Contains(out, "sink: discard") {
		t.Errorf("job get:\n%s", out)
	}

	deadline := time.Now().Add(15 * time.Second)
	var infos []control.PartitionInfo
	for {
		infos = nil
		if err := json.Unmarshal([]byte(runCtl(t, cfg.HTTPAddr, "partitions", "-o", "json")), &infos); err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, in := range infos {
			if in.State == control.PartitionRunning && in.Owner == "n1" && in.Epoch == 1 && in.Desired == "n1" {
				running++
			}
		}
		if running == 4 && len(infos) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions never all running on n1: %+v", infos)
		}
		time.Sleep(50 * time.Millisecond)
	}
	table := runCtl(t, cfg.HTTPAddr, "partitions")
	if !strings.Contains(table, "JOB") || strings.Count(table, "running") != 4 {
		t.Errorf("partitions table:\n%s", table)
	}
	if out := runCtl(t, cfg.HTTPAddr, "leases", "--history", "--partition", "2"); strings.Count(out, "acquire") != 1 {
		t.Errorf("lease history of partition 2:\n%s", out)
	}
	if out := runCtl(t, cfg.HTTPAddr, "checkpoints"); !strings.HasPrefix(out, "JOB") {
		t.Errorf("checkpoints:\n%s", out)
	}

	// Cancel: the partitions are drained and their leases released, with
	// the runner's handoff point.
	if out := runCtl(t, cfg.HTTPAddr, "job", "cancel", "ctl-job"); !strings.Contains(out, "cancelled") {
		t.Errorf("cancel:\n%s", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		var leases []control.Lease
		if err := json.Unmarshal([]byte(runCtl(t, cfg.HTTPAddr, "leases", "-o", "json")), &leases); err != nil {
			t.Fatal(err)
		}
		released := 0
		for _, l := range leases {
			if l.Released && l.Handoff != nil && l.Handoff.Snapshot == "mem://ctl-job" {
				released++
			}
		}
		if released == 4 && runner.count() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after cancel: leases %+v, %d partitions running", leases, runner.count())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
