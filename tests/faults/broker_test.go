package faults

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestHungBroker SIGSTOPs the Kafka broker process — the job's source, the
// transactional Kafka sink's target and the replay's destination — twice
// while the job runs, for a seeded 5–20 s and 2–8 s (connections stay
// open, nothing answers: a hung broker, not a refused one), then SIGCONTs
// it. Prints how long after SIGCONT the job reads again and how many
// checkpoints completed meanwhile. End: the MySQL tables and the read_committed Kafka topics equal
// the oracle, and the lease history and the partition observer hold.
func TestHungBroker(t *testing.T) {
	rng := seeded(t)
	e := newEnv(t, envConfig{rng: rng, replayFor: 40 * time.Second, kafkaSink: true,
		checkpointYAML: "  ack_timeout: 5s\n"})
	e.startReplay()
	broker := e.brokerProc.Cmd.Process
	for i, span := range [][2]time.Duration{{5 * time.Second, 20 * time.Second}, {2 * time.Second, 8 * time.Second}} {
		time.Sleep(between(rng, 3*time.Second, 8*time.Second))
		hang := between(rng, span[0], span[1])
		before, err := e.cl.Checkpoints(e.ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Logf("hang %d: SIGSTOP the broker for %s (%d checkpoints retained)", i+1, hang.Round(time.Millisecond), len(before))
		time.Sleep(hang)
		if err := broker.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		// Recovery: the job reads again (the partitions' offsets move).
		at := e.offsets()
		harness.Eventually(t, 90*time.Second, func() error {
			if now := e.offsets(); now <= at {
				return fmt.Errorf("the partitions are still at %d records read in all", now)
			}
			return nil
		})
		after, err := e.cl.Checkpoints(e.ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hang %d: SIGCONT; the job reads again %s later (%d checkpoints completed since the SIGSTOP)",
			i+1, time.Since(resumed).Round(time.Millisecond), completedSince(before, after))
	}
	e.finish()
	harness.WaitKafkaOracle(t, e.ctx, e.broker, job, e.want, 60*time.Second)
}

// offsets returns the records read by every partition, by the observer.
func (e *env) offsets() int64 {
	var sum int64
	for _, ss := range e.obs.Owners() {
		if len(ss) == 1 {
			sum += ss[0].Offset
		}
	}
	return sum
}

// completedSince counts the complete checkpoints of after that are newer
// than every checkpoint of before.
func completedSince(before, after []control.Checkpoint) int {
	var newest uint64
	for _, cp := range before {
		newest = max(newest, cp.ID)
	}
	n := 0
	for _, cp := range after {
		if cp.Complete && cp.ID > newest {
			n++
		}
	}
	return n
}
