package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/cluster/jobs"
	"github.com/eddy-iot/eddy/control"
)

// TestJobUpdateRollsOut: on a two-node cluster running real jobs, a new
// revision of a job reaches every partition on both nodes — drained,
// snapshotted and restarted in place under the same lease epoch — as GET
// /v1/jobs/{name} shows per partition; an update that changes the window
// size is refused (409) unless --allow-state-reset, and then rolls out too.
func TestJobUpdateRollsOut(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var nodes []*control.Node
	var gossip string
	for i := 1; i <= 2; i++ {
		addrs := freeLocalAddrs(t, 3)
		cfg := control.DefaultConfig()
		cfg.ID, cfg.DataDir = fmt.Sprintf("n%d", i), t.TempDir()
		cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
		if i == 1 {
			cfg.BootstrapExpect, gossip = 1, addrs[2]
		} else {
			cfg.Join = []string{gossip}
		}
		cfg.ValidateJob = jobs.ValidateSpec
		cfg.Logger = logger
		cfg.APIToken = testToken
		n, err := cluster.StartNode(cfg, cluster.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		svc, err := jobs.Start(n, jobs.Config{StateDir: t.TempDir(), Devices: n.Devices(), Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		nodes = append(nodes, n)
	}
	addr := nodeHTTP(nodes[0])
	eventually(t, 20*time.Second, func() string {
		if !nodes[1].Ready() || len(nodes[0].Membership().Alive()) != 2 {
			return "n2 not joined and ready"
		}
		return ""
	})

	const partitions = 8
	b, err := devbroker.Start(devbroker.Config{Partitions: partitions, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("pboxid,event_time,metric\n")
	for i := 0; i < 80; i++ {
		fmt.Fprintf(&csv, "dev%d,2019-03-01T00:%02d:%02d,%d\n", i%13, i/60, i%60, 40+i)
	}
	data := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(data, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runEddy("replay", "--brokers", b.Addrs()[0], "--topic", "iot-topic", "--data", data); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	ckpt := "file://" + filepath.Join(dir, "checkpoints")
	submit := func(rev string, extra string, args ...string) (string, error) {
		p := filepath.Join(dir, "roll-"+rev+".yaml")
		s := fmt.Sprintf("name: roll\nsource:\n  brokers: [%q]\nsink: discard\ncheckpoint:\n  storage: %q\n  interval: 1s\n%s", b.Addrs()[0], ckpt, extra)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return ctl(addr, append([]string{"job", "submit", p, "--partitions", fmt.Sprint(partitions)}, args...)...)
	}
	// allAt waits until every partition reports running at revision rev,
	// on both nodes, and returns the epochs.
	allAt := func(rev uint64) map[int32]uint64 {
		t.Helper()
		epochs := map[int32]uint64{}
		eventually(t, 60*time.Second, func() string {
			j, ok := nodes[1].FSM().View().JobInfo("roll") // n2's replica: what GET /v1/jobs/roll answers there
			if !ok || len(j.Status.Partitions) != partitions {
				return fmt.Sprintf("status %+v", j.Status)
			}
			owners := map[string]bool{}
			for _, p := range j.Status.Partitions {
				if p.State != control.PartitionRunning || p.Revision != rev {
					return fmt.Sprintf("partition %d: %s at revision %d, want running at %d", p.Partition, p.State, p.Revision, rev)
				}
				owners[p.Owner] = true
				epochs[p.Partition] = p.Epoch
			}
			if len(owners) != 2 {
				return fmt.Sprintf("partitions on %v only", owners)
			}
			return ""
		})
		return epochs
	}

	if out, err := submit("1", "batch_size: 100\n"); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	rev1, _ := nodes[0].FSM().View().Job("roll")
	before := allAt(rev1.ModifyIndex)

	// A compatible update: every partition moves to it in place.
	if out, err := submit("2", "batch_size: 50\n"); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	rev2, _ := nodes[0].FSM().View().Job("roll")
	after := allAt(rev2.ModifyIndex)
	for p, e := range before {
		if after[p] != e {
			t.Errorf("partition %d moved from epoch %d to %d: the rollout must keep the lease", p, e, after[p])
		}
	}
	out, _ := ctl(nodeHTTP(nodes[1]), "job", "get", "roll")
	if strings.Count(out, fmt.Sprintf(" %d ", rev2.ModifyIndex)) < partitions {
		t.Errorf("job get on n2 does not show revision %d for every partition:\n%s", rev2.ModifyIndex, out)
	}

	// An update that changes the window size is refused...
	_, err = submit("3", "batch_size: 50\nwindow:\n  size: 5m\n")
	if err == nil || !strings.Contains(err.Error(), "(HTTP 409)") || !strings.Contains(err.Error(), "size: 60000 → 300000") || !strings.Contains(err.Error(), "--allow-state-reset") {
		t.Fatalf("incompatible update: %v", err)
	}
	if j, _ := nodes[0].FSM().View().Job("roll"); j.ModifyIndex != rev2.ModifyIndex {
		t.Fatalf("a refused update was stored")
	}
	// ... unless the state is reset.
	if out, err := submit("3", "batch_size: 50\nwindow:\n  size: 5m\n", "--allow-state-reset"); err != nil {
		t.Fatalf("update with --allow-state-reset: %v\n%s", err, out)
	}
	rev3, _ := nodes[0].FSM().View().Job("roll")
	if !rev3.StateReset {
		t.Error("revision not marked as a state reset")
	}
	allAt(rev3.ModifyIndex)

	// A revision whose sink refuses connections: every partition is
	// failed at it; the next revision repairs the job.
	p := filepath.Join(dir, "roll-broken.yaml")
	broken := fmt.Sprintf("name: roll\nsource:\n  brokers: [%q]\nsink: \"mysql:eddy:x@tcp(127.0.0.1:1)/eddy\"\ncheckpoint:\n  storage: %q\n  interval: 1s\nbatch_size: 50\nwindow:\n  size: 5m\n", b.Addrs()[0], ckpt)
	if err := os.WriteFile(p, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl(addr, "job", "submit", p, "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("broken update: %v\n%s", err, out)
	}
	rev4, _ := nodes[0].FSM().View().Job("roll")
	eventually(t, 60*time.Second, func() string {
		j, _ := nodes[0].FSM().View().JobInfo("roll")
		if j.State != control.JobFailed {
			return "job state " + j.State
		}
		for _, p := range j.Status.Partitions {
			if p.State != control.PartitionFailed || p.Revision != rev4.ModifyIndex || !strings.Contains(p.Error, "127.0.0.1:1") {
				return fmt.Sprintf("partition %+v", p)
			}
		}
		return ""
	})
	if out, err := submit("5", "batch_size: 50\nwindow:\n  size: 5m\n"); err != nil {
		t.Fatalf("repairing update: %v\n%s", err, out)
	}
	rev5, _ := nodes[0].FSM().View().Job("roll")
	allAt(rev5.ModifyIndex)
	if j, _ := nodes[0].FSM().View().JobInfo("roll"); j.State != control.JobRunning {
		t.Errorf("repaired job is %s", j.State)
	}
}
