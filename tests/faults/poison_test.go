package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/poison"
)

// TestPoisonUnderFaults runs the poison file of tests/poison (-records
// Aberdeen readings with every poison case interleaved) through the 3-node
// cluster into MariaDB, with event_time.max_future 1h and
// format.max_message_bytes set, while a seeded schedule SIGKILLs a
// partition owner and restarts it 4.5–7 s later, and SIGSTOPs another owner for a seeded
// 1.5–8 s and SIGCONTs it, in a seeded order. The input comes in 8
// chunks, each an `eddy replay --data` as fast as it goes, started at
// seeded times over the faults (the readings' own event-time pace, days of
// data, would not fit the run). End: the tables equal the oracle exactly
// (valid + late + dead letters = input), every poison row is a dead letter
// exactly once with its reason, no (source_partition, source_offset) is in
// dead_letters twice, no row's epoch went down (epoch audit), and the lease
// history and the observer show one holder per partition at a time.
func TestPoisonUnderFaults(t *testing.T) {
	rng := seeded(t)
	const lateness = 30 * time.Second
	n := *recordsFlag
	step := n / (len(poison.Rows) + 1)
	var (
		want    map[int64]string
		skipped int64
	)
	e := newEnv(t, envConfig{rng: rng, lateness: lateness, dataset: func(dir string) (string, oracle.Options, string) {
		var path string
		path, want, skipped = poison.File(t, dir, n, step)
		o := oracleOptions(lateness)
		o.MaxMessageBytes = poison.MaxMessageBytes
		o.MaxFuture, o.Now = time.Hour, time.Now()
		return path, o, jobEventTime(lateness) + "  max_future: 1h\n" +
			fmt.Sprintf("format:\n  max_message_bytes: %d\n", poison.MaxMessageBytes)
	}})
	if w := e.want; w.Skipped != skipped || w.Readings+w.Late+w.DeadLetters != w.Records {
		t.Fatalf("oracle: %s; want %d skipped lines and valid + late + dead letters = records", w.Summary(), skipped)
	}
	audit := epochAudit(t, e.dsn)

	sched := poisonSchedule(rng)
	chunks := splitLines(t, e.data, e.dir, sched.chunks)
	t.Logf("schedule: %s", sched)
	chunk := 0
	var killed, stopped *harness.Node
	type fault struct {
		what, node string
		orphans    map[int32]uint64
		at         time.Time
	}
	var faults []fault
	id := func(n *harness.Node) string {
		if n == nil {
			return ""
		}
		return n.ID
	}
	start := time.Now()
	for _, ev := range sched.events {
		time.Sleep(time.Until(start.Add(ev.at)))
		switch ev.what {
		case "replay":
			if e.replay != nil {
				if err := e.replay.Wait(e.ctx); err != nil {
					t.Fatal(err)
				}
			}
			e.replay = harness.StartReplay(t, eddyBin, e.broker, "--data", chunks[chunk])
			chunk++
		case "kill":
			killed = e.ownerOtherThan(rng, id(stopped))
			faults = append(faults, fault{"SIGKILL", killed.ID, e.obs.OwnedBy(killed.ID), time.Now()})
			t.Logf("%s: SIGKILL %s (owns %d partitions)", ev.at, killed.ID, len(faults[len(faults)-1].orphans))
			if err := killed.Kill(); err != nil {
				t.Fatal(err)
			}
		case "restart":
			t.Logf("%s: restart %s", ev.at, killed.ID)
			if err := killed.Start(eddyBin); err != nil {
				t.Fatal(err)
			}
		case "stop":
			stopped = e.ownerOtherThan(rng, id(killed))
			faults = append(faults, fault{"SIGSTOP", stopped.ID, e.obs.OwnedBy(stopped.ID), time.Now()})
			t.Logf("%s: SIGSTOP %s (owns %d partitions)", ev.at, stopped.ID, len(faults[len(faults)-1].orphans))
			e.obs.Stopping(stopped.ID)
			if err := stopped.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		case "cont":
			t.Logf("%s: SIGCONT %s", ev.at, stopped.ID)
			if err := stopped.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			e.obs.Continued(stopped.ID)
		}
	}
	harness.Eventually(t, 60*time.Second, func() error { return e.obs.AllRunning("") })
	e.finish()
	for _, f := range faults {
		if rec, ok := recovered(e.obs, f.node, f.orphans, f.at); ok {
			t.Logf("%s %s: its %d partitions all ran elsewhere %s after", f.what, f.node, len(f.orphans), rec.Round(time.Millisecond))
		} else {
			t.Logf("%s %s: not all of its %d partitions moved", f.what, f.node, len(f.orphans))
		}
	}
	if t.Failed() {
		for _, nd := range e.c.Nodes {
			t.Logf("%s log:\n%s", nd.ID, nd.LogTail(40))
		}
		return
	}
	got, err := oracle.LoadMySQL(e.ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	poison.CheckDeadLetters(t, got, e.want, want)
	var rows, keys int
	if err := openDB(t, e.dsn).QueryRow("SELECT COUNT(*), COUNT(DISTINCT source_partition, source_offset) FROM dead_letters").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	if rows != keys || rows != len(want) {
		t.Errorf("dead_letters: %d rows at %d distinct (source_partition, source_offset), want %d of each", rows, keys, len(want))
	}
	for _, a := range audit() {
		t.Errorf("epoch regressed: %s", a)
	}
	t.Logf("%d poison rows, each a dead letter once with its reason; sink equals the oracle after %s",
		len(want), time.Since(e.began).Round(time.Second))
}

// poisonEvent is one step of TestPoisonUnderFaults' schedule, at an offset
// from its start: "replay" (the next chunk), "kill", "restart", "stop" or
// "cont".
type poisonEvent struct {
	at   time.Duration
	what string
}

type poisonPlan struct {
	chunks int
	events []poisonEvent // sorted by at
}

// poisonSchedule draws the fault schedule: after 2–4 s the SIGKILL
// (restart 4.5–7 s later: past the default lease TTL + safety, so its
// partitions move) and the SIGSTOP (SIGCONT 1.5–8 s later) in a
// seeded order, 2–4 s apart; 8 input chunks, the first at 0, the others
// at seeded times up to the last fault's end, so input keeps coming while
// the faults are on.
func poisonSchedule(rng *rand.Rand) *poisonPlan {
	p := &poisonPlan{chunks: 8}
	faults := []string{"kill", "stop"}
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	at := between(rng, 2*time.Second, 4*time.Second)
	for _, f := range faults {
		p.events = append(p.events, poisonEvent{at, f})
		switch f {
		case "kill":
			at += between(rng, 4500*time.Millisecond, 7*time.Second)
			p.events = append(p.events, poisonEvent{at, "restart"})
		case "stop":
			at += between(rng, 1500*time.Millisecond, 8*time.Second)
			p.events = append(p.events, poisonEvent{at, "cont"})
		}
		at += between(rng, 2*time.Second, 4*time.Second)
	}
	p.events = append(p.events, poisonEvent{0, "replay"})
	for i := 1; i < p.chunks; i++ {
		p.events = append(p.events, poisonEvent{between(rng, 0, at), "replay"})
	}
	slices.SortStableFunc(p.events, func(a, b poisonEvent) int { return int(a.at - b.at) })
	return p
}

func (p *poisonPlan) String() string {
	var b strings.Builder
	for i, ev := range p.events {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s@%s", ev.what, ev.at.Round(100*time.Millisecond))
	}
	return b.String()
}

// splitLines writes the lines of path to k chunk files under dir, cut at
// even line counts, and returns their paths in order.
func splitLines(t *testing.T, path, dir string, k int) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var out []string
	for i := 0; i < k; i++ {
		part := filepath.Join(dir, fmt.Sprintf("chunk-%02d%s", i, filepath.Ext(path)))
		lo, hi := i*len(lines)/k, (i+1)*len(lines)/k
		if err := os.WriteFile(part, []byte(strings.Join(lines[lo:hi], "")), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, part)
	}
	return out
}
