package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestStalledCheckpoint makes one partition's snapshot uploads to the
// file:// checkpoint storage fail for a seeded 10–20 s, then heals. The
// storage (gocloud fileblob) writes a temporary file next to the key and
// renames it into place; the test takes the keys of that partition's
// snapshots of the next checkpoints (JOB/cluster/chk-%020d/p%05d-e%d.snap,
// the layout of actors.Runtime) with non-empty directories, so every rename
// fails, and removes them to heal. The job aborts a checkpoint whose acks
// are missing for 2 s (checkpoint.ack_timeout), retains 2, and writes to
// MySQL and to the transactional Kafka sink. End: a
// checkpoint started after the heal completes; the newest complete
// checkpoint is never evicted from GET /v1/checkpoints while newer ones are
// incomplete (polled every 200 ms); the MySQL tables and the read_committed
// Kafka topics equal the oracle.
func TestStalledCheckpoint(t *testing.T) {
	rng := seeded(t)
	// Allowed lateness 0: one Kafka message per window. A checkpoint whose
	// acks are missing for 2 s is aborted and the next started, so the
	// stall leaves several incomplete checkpoints, more than retain 2.
	e := newEnv(t, envConfig{rng: rng, replayFor: 50 * time.Second, kafkaSink: true,
		checkpointYAML: "  ack_timeout: 2s\n  retain: 2\n"})
	cw := watchCheckpoints(t, e)
	e.startReplay()
	harness.Eventually(t, 30*time.Second, func() error {
		if cw.newestComplete() == 0 {
			return fmt.Errorf("no complete checkpoint yet")
		}
		return nil
	})
	time.Sleep(between(rng, 2*time.Second, 5*time.Second))

	p := int32(rng.IntN(partitions))
	var epoch uint64
	harness.Eventually(t, 30*time.Second, func() error {
		own := e.obs.Owners()[p]
		if len(own) != 1 {
			return fmt.Errorf("partition %d runs on %d nodes", p, len(own))
		}
		epoch = own[0].Epoch
		return nil
	})
	first := cw.newest() + 1
	// Ids: a checkpoint at most every interval (1 s) through a stall of at
	// most 20 s, and margin. Epochs: in case the partition restarts under a
	// new lease during the stall.
	const ahead, epochs = 40, 10
	var blocked []string
	var underWay []uint64 // checkpoints whose snapshot was uploaded before the stall began
	for id := first; id < first+ahead; id++ {
		for ep := epoch; ep < epoch+epochs; ep++ {
			key := filepath.Join(e.checkpoints, job, "cluster", fmt.Sprintf("chk-%020d", id), fmt.Sprintf("p%05d-e%d.snap", p, ep))
			if fi, err := os.Stat(key); err == nil && !fi.IsDir() {
				underWay = append(underWay, id) // already uploaded: that checkpoint was under way
				continue
			}
			if err := os.MkdirAll(filepath.Join(key, "blocked"), 0o755); err != nil {
				t.Fatal(err)
			}
			blocked = append(blocked, key)
		}
	}
	stall := between(rng, 10*time.Second, 20*time.Second)
	lastComplete := cw.newestComplete()
	t.Logf("stall: partition %d (epochs %d..%d) cannot upload its snapshots of checkpoints %d..%d for %s; newest complete checkpoint %d",
		p, epoch, epoch+epochs-1, first, first+ahead-1, stall.Round(time.Millisecond), lastComplete)
	heal := func() {
		for _, k := range blocked {
			if err := os.RemoveAll(k); err != nil {
				t.Errorf("heal: %v", err)
			}
		}
		blocked = nil
	}
	t.Cleanup(heal)
	time.Sleep(stall)
	healing, newestAtHeal := time.Now(), cw.newest() // removing hundreds of directories takes a moment
	heal()
	healedAt := time.Now()
	if own := e.obs.Owners()[p]; len(own) == 1 {
		t.Logf("partition %d runs at epoch %d at the heal", p, own[0].Epoch)
	}
	var completedInStall []uint64
	for _, id := range cw.completeIn(first, newestAtHeal) {
		if cw.completedAt(id).Before(healing) && !slices.Contains(underWay, id) {
			completedInStall = append(completedInStall, id)
		}
	}
	if len(underWay) > 0 {
		t.Logf("checkpoints %v were under way at the stall (partition %d's snapshot already uploaded): not counted", underWay, p)
	}
	t.Logf("healed in %s: checkpoints %d..%d started during the stall; complete before the heal: %v", healedAt.Sub(healing).Round(time.Millisecond), first, newestAtHeal, completedInStall)
	if len(completedInStall) > 0 {
		var acks []string
		if cps, err := e.cl.Checkpoints(e.ctx, job); err == nil {
			for _, cp := range cps {
				for _, a := range cp.Acks {
					if a.Partition == p && slices.Contains(completedInStall, cp.ID) {
						acks = append(acks, fmt.Sprintf("checkpoint %d: epoch %d snapshot %s", cp.ID, a.Epoch, a.Snapshot))
					}
				}
			}
		}
		t.Errorf("the stall did not stop checkpoints %v from completing: the fault was not injected; partition %d's acks: %v", completedInStall, p, acks)
	}

	var later uint64
	deadline := time.Now().Add(60 * time.Second)
	for later == 0 && time.Now().Before(deadline) {
		if ids := cw.completeIn(newestAtHeal+1, 1<<62); len(ids) > 0 {
			later = ids[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
	if later == 0 {
		t.Errorf("no checkpoint started after the heal (id > %d) completed within 60 s; newest complete is still %d (a failed snapshot upload blocks checkpoints)", newestAtHeal, cw.newestComplete())
	} else {
		t.Logf("checkpoint %d, started after the heal began, complete %s after it began", later, cw.completedAt(later).Sub(healing).Round(time.Millisecond))
	}
	e.finish()
	harness.WaitKafkaOracle(t, e.ctx, e.broker, job, e.want, 60*time.Second)
	for _, v := range cw.evictions() {
		t.Errorf("checkpoint retention: %s", v)
	}
}

// checkpointWatch polls GET /v1/checkpoints every 200 ms until the test
// ends.
type checkpointWatch struct {
	mu      sync.Mutex
	seen    map[uint64]time.Time // id → first seen complete
	maxID   uint64
	maxDone uint64
	evicted []string
}

func watchCheckpoints(t *testing.T, e *env) *checkpointWatch {
	cw := &checkpointWatch{seen: map[uint64]time.Time{}}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl := e.c.Client(0, time.Second)
		for ctx.Err() == nil {
			cps, err := cl.Checkpoints(ctx, job)
			if err == nil {
				cw.observe(cps)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cw
}

func (cw *checkpointWatch) observe(cps []control.Checkpoint) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	var retained []uint64
	haveNewest := cw.maxDone == 0
	for _, cp := range cps {
		cw.maxID = max(cw.maxID, cp.ID)
		retained = append(retained, cp.ID)
		if !cp.Complete {
			continue
		}
		if _, ok := cw.seen[cp.ID]; !ok {
			cw.seen[cp.ID] = time.Now()
		}
		if cp.ID >= cw.maxDone {
			haveNewest = true
		}
	}
	if !haveNewest && len(cw.evicted) < 5 {
		slices.Sort(retained)
		cw.evicted = append(cw.evicted, fmt.Sprintf("at %s the newest complete checkpoint %d was evicted; retained: %v (none of them complete and newer)",
			time.Now().Format("15:04:05.000"), cw.maxDone, retained))
	}
	for _, cp := range cps {
		if cp.Complete {
			cw.maxDone = max(cw.maxDone, cp.ID)
		}
	}
}

func (cw *checkpointWatch) newest() uint64 {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.maxID
}

func (cw *checkpointWatch) newestComplete() uint64 {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.maxDone
}

// completeIn returns the ids in [lo, hi] seen complete, ascending.
func (cw *checkpointWatch) completeIn(lo, hi uint64) []uint64 {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	var out []uint64
	for id := range cw.seen {
		if id >= lo && id <= hi {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (cw *checkpointWatch) completedAt(id uint64) time.Time {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.seen[id]
}

func (cw *checkpointWatch) evictions() []string {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return slices.Clone(cw.evicted)
}
