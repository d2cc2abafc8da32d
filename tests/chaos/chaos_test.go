// Package chaos is eddy's cluster chaos test with real processes: a broker
// process (eddy dev broker), MariaDB, three `eddy node` processes and a
// continuous `eddy replay --speed` of the Aberdeen data. The job is submitted
// with `source.end_offsets` (a bounded job over input that is still being
// produced: every partition reads exactly up to the offsets of the replayed
// records, then fires every window). A seeded schedule SIGKILLs a random
// node three times (the Raft leader once) and restarts it, joins a 4th and a
// 5th node, and finally stops one gracefully (SIGTERM: live handoff).
//
// At the end the MySQL tables must equal the independent batch computation
// of cmd/eddy/oracle exactly, the lease history from Raft must show one
// holder per partition at a time, and the partition observer (every node's
// GET /v1/local/partitions every 25 ms) must never have seen two nodes run
// one partition in overlapping time, at the same epoch or at different
// epochs, nor a node run an epoch after Raft granted a newer one. The test prints the time from each
// SIGKILL until every orphaned partition runs again on another node, and the
// pause of each partition moved by a live handoff (a join, a restarted node
// taking its partitions back, a graceful stop): from the last poll that saw
// it running on its old owner to the first that sees it running on the new
// one (polls every 25 ms).
//
//	go test ./tests/chaos -v                          # random seed, printed
//	go test ./tests/chaos -v -seed 42                 # replay a schedule
//	go test ./tests/chaos -v -records 400000 -speed 20000
//	EDDY_RACE=1 go test ./tests/chaos -v              # nodes built with -race
package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

var (
	seedFlag    = flag.Uint64("seed", 0, "seed of the chaos schedule (0 = random; printed)")
	recordsFlag = flag.Int64("records", 150000, "replay the first N Aberdeen records")
	speedFlag   = flag.Float64("speed", 30000, "replay speed (times real time)")
	eddyBin     string
)

const (
	job        = "iot-work"
	partitions = 12
)

func TestMain(m *testing.M) { harness.Main(m, &eddyBin) }

// oracleOf computes what the job over the first records Aberdeen records
// must leave in its sinks.
func oracleOf(t *testing.T, records int64) *oracle.Result {
	t.Helper()
	opts := oracle.AberdeenOptions()
	opts.Partitions = partitions
	opts.Limit = records
	res, err := oracle.Compute(aberdeen.Open(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestChaos(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with: go test ./tests/chaos -v -seed %d -records %d -speed %g)", seed, seed, *recordsFlag, *speedFlag)
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73))
	began := time.Now()
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := harness.StartBroker(t, eddyBin, dir, partitions)
	want := oracleOf(t, *recordsFlag)
	t.Logf("oracle: %d records, %d windows, %d work periods", want.Records, len(want.Windows), len(want.WorkPeriods))

	// The spec: bounded at the offsets the replay will reach.
	spec := harness.BoundedSpec(job, broker, want, "mysql:"+dsn, "file://"+filepath.Join(dir, "checkpoints"), "")

	c := harness.Start(t, harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := c.Client(0, 30*time.Second)
	if _, err := cl.SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}

	obs := harness.StartObserver(t, c, partitions)
	harness.Eventually(t, 60*time.Second, func() error { return obs.AllRunning("") })
	t.Logf("all %d partitions run after %s", partitions, time.Since(began).Round(time.Millisecond))

	// The continuous input.
	replay := harness.StartReplay(t, eddyBin, broker, "--limit", fmt.Sprint(*recordsFlag), "--speed", fmt.Sprint(*speedFlag))

	// The schedule: three kills (one of the leader) and two joins in a
	// seeded order, then a graceful stop.
	events := []string{"kill", "kill", "kill-leader", "join", "join"}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	events = append(events, "stop")
	t.Logf("schedule: %v", events)

	var recoveries, pauses []time.Duration
	// moved measures the handoff pauses of the partitions that move to
	// node (running on another before) once everything runs again.
	moved := func(node string, before map[int32]harness.Sample) {
		harness.Eventually(t, 60*time.Second, func() error { return obs.AllRunning("") })
		for p, old := range before {
			now := obs.OwnedBy(node)
			if _, ok := now[p]; !ok || old.Node == node {
				continue
			}
			lastOld := obs.LastRunning(p, old.Node)
			first, _, ok := obs.FirstRunningAfter(p, old.Node, old.Epoch)
			if !ok || lastOld.IsZero() {
				continue
			}
			pause := first.Sub(lastOld)
			pauses = append(pauses, pause)
			t.Logf("  partition %2d: %s → %s, pause %s", p, old.Node, node, pause.Round(time.Millisecond))
		}
	}
	for i, ev := range events {
		time.Sleep(time.Duration(1500+rng.IntN(2000)) * time.Millisecond)
		switch ev {
		case "kill", "kill-leader":
			var victim *harness.Node
			if ev == "kill-leader" {
				l, _, err := c.WaitLeader(ctx)
				if err != nil {
					t.Fatal(err)
				}
				victim = l
			} else {
				var alive []*harness.Node
				for _, n := range c.Nodes {
					if n.Running() {
						alive = append(alive, n)
					}
				}
				victim = alive[rng.IntN(len(alive))]
			}
			orphans := obs.OwnedBy(victim.ID)
			killed := time.Now()
			if err := victim.Kill(); err != nil {
				t.Fatal(err)
			}
			worst := obs.Recovery(t, victim.ID, orphans, killed, 60*time.Second)
			if len(orphans) > 0 {
				recoveries = append(recoveries, worst)
			}
			t.Logf("event %d: SIGKILL %s (%s); its %d partitions run again after %s", i+1, victim.ID, ev, len(orphans), worst.Round(time.Millisecond))
			time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
			before := obs.Snapshot()
			if err := victim.Start(eddyBin); err != nil {
				t.Fatal(err)
			}
			t.Logf("event %d: restarted %s; partitions moving back:", i+1, victim.ID)
			time.Sleep(3 * time.Second) // gossip join + placement
			moved(victim.ID, before)
		case "join":
			n, err := c.AddNode()
			if err != nil {
				t.Fatal(err)
			}
			before := obs.Snapshot()
			if err := n.Start(eddyBin); err != nil {
				t.Fatal(err)
			}
			t.Logf("event %d: joined %s; partitions moving to it:", i+1, n.ID)
			time.Sleep(3 * time.Second)
			moved(n.ID, before)
		case "stop":
			var cands []*harness.Node
			for _, n := range c.Nodes {
				if n.Running() {
					cands = append(cands, n)
				}
			}
			victim := cands[rng.IntN(len(cands))]
			before := obs.Snapshot()
			stopped := time.Now()
			if err := victim.Stop(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("event %d: SIGTERM %s, exited after %s; its partitions moved:", i+1, victim.ID, time.Since(stopped).Round(time.Millisecond))
			harness.Eventually(t, 60*time.Second, func() error { return obs.AllRunning(victim.ID) })
			for p, old := range before {
				if old.Node != victim.ID {
					continue
				}
				first, who, ok := obs.FirstRunningAfter(p, old.Node, old.Epoch)
				if !ok {
					continue
				}
				pause := first.Sub(obs.LastRunning(p, old.Node))
				pauses = append(pauses, pause)
				t.Logf("  partition %2d: %s → %s, pause %s", p, old.Node, who, pause.Round(time.Millisecond))
			}
		}
	}

	if err := replay.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("replay finished after %s", time.Since(began).Round(time.Second))
	harness.Eventually(t, 3*time.Minute, func() error { return obs.AtOffsets(want.PartitionRecords) })
	t.Logf("every partition at its end offset after %s", time.Since(began).Round(time.Second))

	// The tables: rows are flushed within a second of the end.
	harness.WaitOracle(t, ctx, dsn, want, 60*time.Second)

	// The moves went through snapshots: handoff points at joins and stops,
	// checkpoints in Raft after kills.
	cps, err := cl.Checkpoints(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	complete := 0
	for _, cp := range cps {
		if cp.Complete {
			complete++
		}
	}
	// Every start logs "partition started" with the id it restored
	// (restored=0: none, or a handoff snapshot, which has no checkpoint
	// id); a restore first logs "partition restored" from="checkpoint N"
	// or from="handoff of epoch N".
	fromHandoff, fromCheckpoint, startedAtZero := 0, 0, 0
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s: the race detector reported a data race (EDDY_RACE=1 build); see %s", n.ID, n.LogPath)
		}
		for _, l := range strings.Split(string(b), "\n") {
			switch {
			case strings.Contains(l, `msg="partition restored"`) && strings.Contains(l, ` from="handoff of epoch `):
				fromHandoff++
			case strings.Contains(l, `msg="partition restored"`):
				fromCheckpoint++
			case strings.Contains(l, `msg="partition started"`) && strings.Contains(l, " restored=0"):
				startedAtZero++
			}
		}
	}
	fromNothing := startedAtZero - fromHandoff
	t.Logf("checkpoints: %d retained in Raft, %d complete; partition starts: %d from a handoff snapshot, %d from a checkpoint, %d from the beginning",
		len(cps), complete, fromHandoff, fromCheckpoint, fromNothing)
	if complete == 0 || fromHandoff == 0 || fromCheckpoint == 0 {
		t.Errorf("the run did not exercise both restore paths (complete checkpoints %d, handoff restores %d, checkpoint restores %d)",
			complete, fromHandoff, fromCheckpoint)
	}

	// One holder per partition at a time, by the lease history.
	hist, err := cl.LeaseHistory(ctx, job, -1)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckLeaseHistory(t, hist)
	// One writer per partition at a time, by what the nodes said they ran:
	// no two running intervals overlap (same or different epochs), and no
	// node ran an epoch after Raft granted a newer one.
	for _, v := range obs.Violations(hist) {
		t.Errorf("observed: %s", v)
	}

	t.Logf("seed %d: recovery after SIGKILL (kill → every orphaned partition running elsewhere): %v, median %s",
		seed, harness.RoundAll(recoveries), harness.Median(recoveries).Round(time.Millisecond))
	t.Logf("seed %d: handoff pause per moved partition: %d moves, median %s, max %s",
		seed, len(pauses), harness.Median(pauses).Round(time.Millisecond), slices.Max(append(pauses, 0)).Round(time.Millisecond))
	t.Logf("seed %d: done in %s", seed, time.Since(began).Round(time.Second))
	if testing.Verbose() || t.Failed() {
		for _, n := range c.Nodes {
			if t.Failed() {
				t.Logf("---- %s log tail:\n%s", n.ID, n.LogTail(40))
			}
		}
	}
}
