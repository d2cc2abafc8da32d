package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// parseCounter replaces loadSpec for a test and counts the parses of each
// spec text.
type parseCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countParses(t *testing.T) *parseCounter {
	pc := &parseCounter{n: map[string]int{}}
	orig := loadSpec
	loadSpec = func(data []byte, o spec.Options) (*spec.Spec, actors.Config, error) {
		pc.mu.Lock()
		pc.n[string(data)]++
		pc.mu.Unlock()
		return orig(data, o)
	}
	t.Cleanup(func() { loadSpec = orig })
	return pc
}

func (pc *parseCounter) count(spec string) int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.n[spec]
}

// TestStoredSpecParsedOncePerRevision: while the leader's coordinator
// loop starts and completes checkpoints (every one is several Raft
// applies, each a wake-up that reads every job's spec), the stored spec
// is parsed at most twice (the runner and the leader may both miss the
// cache at the start); a new revision is parsed again and then not
// again; a deleted job's entry leaves the cache.
func TestStoredSpecParsedOncePerRevision(t *testing.T) {
	pc := countParses(t) // before the cluster: its goroutines stop first
	c := startCluster1(t, 2)
	dir := t.TempDir()
	sink := "sqlite:" + filepath.Join(dir, "out.db")
	rev1 := c.spec("cached", sink, dir, "100ms", "")
	c.submit(t, "cached", rev1)
	completed := func(n int) func() error {
		base := uint64(0)
		if cp, ok := c.node.FSM().View().LastCompleteCheckpoint("cached"); ok {
			base = cp.ID
		}
		return func() error {
			cp, ok := c.node.FSM().View().LastCompleteCheckpoint("cached")
			if !ok || cp.ID < base+uint64(n) {
				return fmt.Errorf("%d checkpoints completed, want %d", cp.ID-base, n)
			}
			return nil
		}
	}
	harness.Eventually(t, 30*time.Second, completed(8))
	if n := pc.count(rev1); n < 1 || n > 2 {
		t.Fatalf("revision 1 parsed %d times during 8 checkpoints, want 1 or 2", n)
	}
	t.Logf("revision 1: parsed %d times during 8 checkpoints", pc.count(rev1))

	rev2 := c.spec("cached", sink, dir, "150ms", "  retain: 4\n")
	c.submit(t, "cached", rev2)
	harness.Eventually(t, 30*time.Second, completed(5))
	before := pc.count(rev1)
	harness.Eventually(t, 30*time.Second, completed(5))
	if n := pc.count(rev2); n < 1 || n > 2 {
		t.Fatalf("revision 2 parsed %d times during 10 checkpoints, want 1 or 2", n)
	}
	if n := pc.count(rev1); n != before {
		t.Errorf("revision 1 parsed again after revision 2 was stored: %d → %d", before, n)
	}
	j, _ := c.node.FSM().View().Job("cached")
	if cfg, _, err := c.svc.runner.jobConfig(j); err != nil || cfg.Checkpoint.Retain != 4 || cfg.Checkpoint.Interval != 150*time.Millisecond {
		t.Errorf("the stored job's configuration is not revision 2's (retain 4, interval 150ms): %+v %v", cfg.Checkpoint, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.node.Apply(ctx, control.JobDelete{Name: "cached"}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		specs.mu.Lock()
		defer specs.mu.Unlock()
		if _, ok := specs.entries["cached"]; ok {
			return fmt.Errorf("the deleted job's spec is still cached")
		}
		return nil
	})
}

// TestSpecCacheFollowsEnvironment: a cached revision whose ${NAME} gave
// another value than the environment now holds is loaded again.
func TestSpecCacheFollowsEnvironment(t *testing.T) {
	pc := countParses(t)
	t.Setenv("EDDY_SPECCACHE_TOPIC", "topic-a")
	j := control.Job{Name: "env-job", ModifyIndex: 7, Spec: "source:\n  brokers: [\"127.0.0.1:9092\"]\n  topic: ${EDDY_SPECCACHE_TOPIC}\nsink: discard\n"}
	c := &specCache{entries: map[string]*specEntry{}}
	for range 3 {
		if _, cfg, err := c.load(j); err != nil || cfg.Source.Topic != "topic-a" {
			t.Fatalf("topic %q, err %v; want topic-a", cfg.Source.Topic, err)
		}
	}
	if n := pc.count(j.Spec); n != 1 {
		t.Fatalf("parsed %d times, want 1", n)
	}
	t.Setenv("EDDY_SPECCACHE_TOPIC", "topic-b")
	if _, cfg, err := c.load(j); err != nil || cfg.Source.Topic != "topic-b" {
		t.Fatalf("after the environment changed: topic %q, err %v; want topic-b", cfg.Source.Topic, err)
	}
	if n := pc.count(j.Spec); n != 2 {
		t.Fatalf("parsed %d times, want 2", n)
	}
	// A change to a caller's copy does not reach the cache.
	_, cfg, _ := c.load(j)
	cfg.Source.Brokers[0] = "changed:1"
	if _, cfg, _ := c.load(j); cfg.Source.Brokers[0] != "127.0.0.1:9092" {
		t.Fatalf("the cached configuration was changed through a caller's copy: %v", cfg.Source.Brokers)
	}
}
