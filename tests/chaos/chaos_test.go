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
// of tests/oracle exactly, and the lease history from Raft must show one
// holder per partition at a time. The test prints the time from each
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
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/oracle"
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

func startBroker(t *testing.T, dir string) string {
	t.Helper()
	addrs, err := harness.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := addrs[0]
	cmd := exec.Command(eddyBin, "dev", "broker", "--listen", addr, "--partitions", fmt.Sprint(partitions), "--data-dir", filepath.Join(dir, "kafka"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	harness.Eventually(t, 15*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}

// sample is one observation of a partition running on a node.
type sample struct {
	node  string
	epoch uint64
	state string
	off   int64
}

// observer polls every running node's /v1/local/partitions and keeps, per
// partition, the timeline of who runs it.
type observer struct {
	c     *harness.Cluster
	hc    *http.Client
	mu    sync.Mutex
	last  map[int32]map[string]time.Time // partition → node → last seen running
	first map[int32]map[string]time.Time // partition → node@epoch → first seen running
	cur   map[int32][]sample             // latest round
	dup   []string                       // two nodes running one partition at one epoch
}

func newObserver(c *harness.Cluster) *observer {
	return &observer{c: c, hc: &http.Client{Timeout: 500 * time.Millisecond},
		last: map[int32]map[string]time.Time{}, first: map[int32]map[string]time.Time{}, cur: map[int32][]sample{}}
}

func (o *observer) run(ctx context.Context) {
	for ctx.Err() == nil {
		round := map[int32][]sample{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range o.c.Nodes {
			if !n.Running() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := o.hc.Get(n.URL() + "/v1/local/partitions")
				if err != nil {
					return
				}
				defer resp.Body.Close()
				var list []control.PartitionStatus
				if json.NewDecoder(resp.Body).Decode(&list) != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, s := range list {
					sm := sample{node: n.ID, epoch: s.Epoch, state: s.State, off: -1}
					if s.Progress != nil {
						sm.off = s.Progress.Offset
					}
					round[s.Partition] = append(round[s.Partition], sm)
				}
			}()
		}
		wg.Wait()
		now := time.Now()
		o.mu.Lock()
		o.cur = round
		for p, ss := range round {
			if o.last[p] == nil {
				o.last[p], o.first[p] = map[string]time.Time{}, map[string]time.Time{}
			}
			epochs := map[uint64]string{}
			for _, s := range ss {
				if s.state != control.PartitionRunning {
					continue
				}
				if other, ok := epochs[s.epoch]; ok && other != s.node {
					o.dup = append(o.dup, fmt.Sprintf("partition %d: %s and %s both run epoch %d", p, other, s.node, s.epoch))
				}
				epochs[s.epoch] = s.node
				o.last[p][s.node] = now
				k := fmt.Sprintf("%s@%d", s.node, s.epoch)
				if _, ok := o.first[p][k]; !ok {
					o.first[p][k] = now
				}
			}
		}
		o.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// owners returns, per partition, the nodes that run it (latest round).
func (o *observer) owners() map[int32][]sample {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int32][]sample{}
	for p, ss := range o.cur {
		for _, s := range ss {
			if s.state == control.PartitionRunning {
				out[p] = append(out[p], s)
			}
		}
	}
	return out
}

// ownedBy returns the partitions node runs (latest round), with epochs.
func (o *observer) ownedBy(node string) map[int32]uint64 {
	out := map[int32]uint64{}
	for p, ss := range o.owners() {
		for _, s := range ss {
			if s.node == node {
				out[p] = s.epoch
			}
		}
	}
	return out
}

// allRunning reports whether every partition runs on exactly one node,
// none on skip.
func (o *observer) allRunning(skip string) error {
	own := o.owners()
	for p := int32(0); p < partitions; p++ {
		ss := own[p]
		if len(ss) != 1 {
			return fmt.Errorf("partition %d runs on %d nodes: %v", p, len(ss), ss)
		}
		if ss[0].node == skip {
			return fmt.Errorf("partition %d still on %s", p, skip)
		}
	}
	return nil
}

// firstRunningAfter returns when partition p was first seen running on a
// node other than not, with an epoch above epoch.
func (o *observer) firstRunningAfter(p int32, not string, epoch uint64) (time.Time, string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best time.Time
	var who string
	for k, at := range o.first[p] {
		var node string
		var e uint64
		fmt.Sscanf(strings.Replace(k, "@", " ", 1), "%s %d", &node, &e)
		if node != not && e > epoch && (best.IsZero() || at.Before(best)) {
			best, who = at, node
		}
	}
	return best, who, !best.IsZero()
}

func (o *observer) lastRunning(p int32, node string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[p][node]
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
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
	broker := startBroker(t, dir)
	want := oracleOf(t, *recordsFlag)
	t.Logf("oracle: %d records, %d windows, %d work periods", want.Records, len(want.Windows), len(want.WorkPeriods))

	// The spec: bounded at the offsets the replay will reach.
	var ends strings.Builder
	for p, n := range want.PartitionRecords {
		fmt.Fprintf(&ends, "    %d: %d\n", p, n)
	}
	spec := fmt.Sprintf(`name: %s
source:
  brokers: [%q]
  end_offsets:
%ssink: %q
checkpoint:
  storage: %q
  interval: 1s
batch_size: 1024
`, job, broker, ends.String(), "mysql:"+dsn, "file://"+filepath.Join(dir, "checkpoints"))

	c, err := harness.New(harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(0, 30*time.Second)
	if _, err := cl.SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}

	obs := newObserver(c)
	octx, ocancel := context.WithCancel(ctx)
	var owg sync.WaitGroup
	owg.Add(1)
	go func() { defer owg.Done(); obs.run(octx) }()
	defer func() { ocancel(); owg.Wait() }()
	harness.Eventually(t, 60*time.Second, func() error { return obs.allRunning("") })
	t.Logf("all %d partitions run after %s", partitions, time.Since(began).Round(time.Millisecond))

	// The continuous input.
	replay := exec.Command(eddyBin, "replay", "--brokers", broker, "--limit", fmt.Sprint(*recordsFlag), "--speed", fmt.Sprint(*speedFlag), "--quiet")
	var replayOut bytes.Buffer
	replay.Stdout, replay.Stderr = &replayOut, &replayOut
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	replayDone := make(chan error, 1)
	go func() { replayDone <- replay.Wait() }()
	defer func() {
		replay.Process.Kill()
	}()

	// The schedule: three kills (one of the leader) and two joins in a
	// seeded order, then a graceful stop.
	events := []string{"kill", "kill", "kill-leader", "join", "join"}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	events = append(events, "stop")
	t.Logf("schedule: %v", events)

	var recoveries, pauses []time.Duration
	// moved measures the handoff pauses of the partitions that move to
	// node (running on another before) once everything runs again.
	moved := func(node string, before map[int32]sample) {
		harness.Eventually(t, 60*time.Second, func() error { return obs.allRunning("") })
		for p, old := range before {
			now := obs.ownedBy(node)
			if _, ok := now[p]; !ok || old.node == node {
				continue
			}
			lastOld := obs.lastRunning(p, old.node)
			first, _, ok := obs.firstRunningAfter(p, old.node, old.epoch)
			if !ok || lastOld.IsZero() {
				continue
			}
			pause := first.Sub(lastOld)
			pauses = append(pauses, pause)
			t.Logf("  partition %2d: %s → %s, pause %s", p, old.node, node, pause.Round(time.Millisecond))
		}
	}
	snapshot := func() map[int32]sample {
		out := map[int32]sample{}
		for p, ss := range obs.owners() {
			out[p] = ss[0]
		}
		return out
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
			orphans := obs.ownedBy(victim.ID)
			killed := time.Now()
			if err := victim.Kill(); err != nil {
				t.Fatal(err)
			}
			var worst time.Duration
			harness.Eventually(t, 60*time.Second, func() error {
				for p, e := range orphans {
					if _, _, ok := obs.firstRunningAfter(p, victim.ID, e); !ok {
						return fmt.Errorf("partition %d of killed %s not running again", p, victim.ID)
					}
				}
				return nil
			})
			for p, e := range orphans {
				at, _, _ := obs.firstRunningAfter(p, victim.ID, e)
				worst = max(worst, at.Sub(killed))
			}
			if len(orphans) > 0 {
				recoveries = append(recoveries, worst)
			}
			t.Logf("event %d: SIGKILL %s (%s); its %d partitions run again after %s", i+1, victim.ID, ev, len(orphans), worst.Round(time.Millisecond))
			time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
			before := snapshot()
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
			before := snapshot()
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
			before := snapshot()
			stopped := time.Now()
			if err := victim.Stop(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("event %d: SIGTERM %s, exited after %s; its partitions moved:", i+1, victim.ID, time.Since(stopped).Round(time.Millisecond))
			harness.Eventually(t, 60*time.Second, func() error { return obs.allRunning(victim.ID) })
			for p, old := range before {
				if old.node != victim.ID {
					continue
				}
				first, who, ok := obs.firstRunningAfter(p, old.node, old.epoch)
				if !ok {
					continue
				}
				pause := first.Sub(obs.lastRunning(p, old.node))
				pauses = append(pauses, pause)
				t.Logf("  partition %2d: %s → %s, pause %s", p, old.node, who, pause.Round(time.Millisecond))
			}
		}
	}

	select {
	case err := <-replayDone:
		if err != nil {
			t.Fatalf("replay: %v\n%s", err, replayOut.String())
		}
	case <-ctx.Done():
		t.Fatal("replay did not finish")
	}
	t.Logf("replay finished after %s", time.Since(began).Round(time.Second))
	harness.Eventually(t, 3*time.Minute, func() error {
		own := obs.owners()
		for p := int32(0); p < partitions; p++ {
			if ss := own[p]; len(ss) != 1 || ss[0].off != want.PartitionRecords[p] {
				return fmt.Errorf("partition %d not at its end offset %d: %v", p, want.PartitionRecords[p], ss)
			}
		}
		return nil
	})
	t.Logf("every partition at its end offset after %s", time.Since(began).Round(time.Second))

	// The tables: rows are flushed within a second of the end.
	var last *oracle.Diff
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := oracle.LoadMySQL(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if last = oracle.Compare(got, want); last.Equal() {
			t.Logf("MySQL equals the oracle: %d readings, %d windows, %d work periods, %d dead letters",
				got.Readings, len(got.Windows), len(got.WorkPeriods), got.DeadLetters)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("MySQL differs from the oracle:\n%s", last.Format(10))
			break
		}
		time.Sleep(2 * time.Second)
	}

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
	fromHandoff, fromCheckpoint, fromNothing := 0, 0, 0
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
			case strings.Contains(l, `msg="partition restored"`) && strings.Contains(l, " from=-"):
				fromHandoff++
			case strings.Contains(l, `msg="partition restored"`):
				fromCheckpoint++
			case strings.Contains(l, `msg="partition started"`) && strings.Contains(l, " restored=0"):
				fromNothing++
			}
		}
	}
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
	checkLeaseHistory(t, hist)
	obs.mu.Lock()
	for _, d := range obs.dup {
		t.Errorf("observed: %s", d)
	}
	obs.mu.Unlock()

	t.Logf("seed %d: recovery after SIGKILL (kill → every orphaned partition running elsewhere): %v, median %s",
		seed, roundAll(recoveries), median(recoveries).Round(time.Millisecond))
	t.Logf("seed %d: handoff pause per moved partition: %d moves, median %s, max %s",
		seed, len(pauses), median(pauses).Round(time.Millisecond), slices.Max(append(pauses, 0)).Round(time.Millisecond))
	t.Logf("seed %d: done in %s", seed, time.Since(began).Round(time.Second))
	if testing.Verbose() || t.Failed() {
		for _, n := range c.Nodes {
			if t.Failed() {
				t.Logf("---- %s log tail:\n%s", n.ID, n.LogTail(40))
			}
		}
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// checkLeaseHistory replays the lease events in Raft order: every grant
// is the previous epoch + 1, an acquire finds the lease free or released
// (or held by the acquirer), a takeover names the holder it replaces, and a
// release comes from the holder.
func checkLeaseHistory(t *testing.T, hist []control.LeaseEvent) {
	t.Helper()
	sort.Slice(hist, func(i, j int) bool { return hist[i].Index < hist[j].Index })
	type st struct {
		holder   string
		epoch    uint64
		released bool
	}
	leases := map[int32]*st{}
	kinds := map[string]int{}
	for _, e := range hist {
		kinds[e.Kind]++
		l := leases[e.Partition]
		if l == nil {
			l = &st{released: true}
			leases[e.Partition] = l
		}
		switch e.Kind {
		case control.LeaseGranted, control.LeaseTakenOver:
			if e.Epoch != l.epoch+1 {
				t.Errorf("lease %d at index %d: epoch %d after %d", e.Partition, e.Index, e.Epoch, l.epoch)
			}
			if e.Kind == control.LeaseGranted && !l.released && l.holder != e.Owner {
				t.Errorf("lease %d at index %d: %s acquired it while %s held it", e.Partition, e.Index, e.Owner, l.holder)
			}
			if e.Kind == control.LeaseTakenOver && (l.released || e.PrevOwner != l.holder) {
				t.Errorf("lease %d at index %d: takeover by %s names %q, holder was %q (released %v)", e.Partition, e.Index, e.Owner, e.PrevOwner, l.holder, l.released)
			}
			l.holder, l.epoch, l.released = e.Owner, e.Epoch, false
		case control.LeaseReleased:
			if l.released || l.holder != e.Owner || l.epoch != e.Epoch {
				t.Errorf("lease %d at index %d: release by %s at epoch %d, holder %s at %d (released %v)", e.Partition, e.Index, e.Owner, e.Epoch, l.holder, l.epoch, l.released)
			}
			l.released = true
		}
	}
	t.Logf("lease history: %d events (%v), one holder per partition at every Raft index", len(hist), kinds)
}
