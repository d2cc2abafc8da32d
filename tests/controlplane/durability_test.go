package controlplane

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// acked records acknowledged writes.
type acked struct {
	mu sync.Mutex
	m  map[string]string
}

// writeKeys writes n fresh keys prefix<start..start+n) with `conc` concurrent
// clients through all nodes, recording the acknowledged ones. Errors are
// tolerated (a node may be down): only acknowledged writes must survive.
func writeKeys(ctx context.Context, c *harness.Cluster, a *acked, prefix string, start, n, conc int) (errs int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := make(chan int)
	for w := 0; w < conc; w++ {
		cl := c.Client(w%len(c.Nodes), 10*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				key, value := fmt.Sprintf("%s%06d", prefix, i), fmt.Sprintf("v%d", i)
				if _, err := cl.Put(ctx, key, []byte(value)); err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
					continue
				}
				a.mu.Lock()
				a.m[key] = value
				a.mu.Unlock()
			}
		}()
	}
	for i := start; i < start+n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// verify checks that every acknowledged write is readable: with a consistent
// listing through the cluster, and (when local) from every running node's
// own replica.
func (a *acked) verify(ctx context.Context, cl *client.Client, prefix string, consistent bool) error {
	l, err := cl.List(ctx, prefix, client.ReadOptions{Consistent: consistent})
	if err != nil {
		return err
	}
	got := make(map[string]string, len(l.Entries))
	for _, e := range l.Entries {
		got[e.Key] = e.Value
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	missing := 0
	var example string
	for k, v := range a.m {
		if got[k] != v {
			missing++
			example = fmt.Sprintf("%s = %q, want %q", k, got[k], v)
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d acknowledged writes not readable (e.g. %s)", missing, len(a.m), example)
	}
	return nil
}

// TestDurability: every acknowledged write is readable after any single node
// is SIGKILLed (while writes go on), and after all nodes are SIGKILLed and
// restarted.
func TestDurability(t *testing.T) {
	c := startCluster(t, 3, 3)
	ctx := ctxTimeout(t, 3*time.Minute)
	a := &acked{m: map[string]string{}}
	if errs := writeKeys(ctx, c, a, "dur/", 0, 300, 8); errs > 0 {
		t.Fatalf("%d writes failed with all nodes up", errs)
	}
	next := 300
	for _, n := range c.Nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		errs := writeKeys(ctx, c, a, "dur/", next, 200, 8)
		next += 200
		cl := c.Client(0, 15*time.Second)
		if err := a.verify(ctx, cl, "dur/", true); err != nil {
			t.Fatalf("with %s killed: %v", n.ID, err)
		}
		t.Logf("%s killed: %d acknowledged writes readable (%d writes failed during the kill)", n.ID, len(a.m), errs)
		if err := n.Start(binary); err != nil {
			t.Fatal(err)
		}
		// The restarted node catches up and serves everything locally.
		harness.Eventually(t, 30*time.Second, func() error { return a.verify(ctx, n.Client(time.Second), "dur/", false) })
	}

	// Whole-cluster crash: SIGKILL all, restart all.
	for _, n := range c.Nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.WaitLeader(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.verify(ctx, c.Client(0, 15*time.Second), "dur/", true); err != nil {
		t.Fatalf("after restarting all nodes: %v", err)
	}
	for _, n := range c.Nodes {
		harness.Eventually(t, 30*time.Second, func() error { return a.verify(ctx, n.Client(time.Second), "dur/", false) })
	}
	t.Logf("all %d acknowledged writes readable after a full-cluster SIGKILL and restart", len(a.m))
}

// TestSnapshotCatchUp: a follower is down during 10k writes, the log is
// compacted past its last index, and after restart it catches up by
// installing a snapshot from the leader.
func TestSnapshotCatchUp(t *testing.T) {
	c := startCluster(t, 3, 3,
		"--raft-snapshot-threshold", "1000", "--raft-trailing-logs", "200", "--raft-snapshot-interval", "200ms")
	ctx := ctxTimeout(t, 3*time.Minute)
	leader, _, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	down := followers(c, leader)[0]
	st, err := down.Status()
	if err != nil {
		t.Fatal(err)
	}
	downLast := st.LastIndex
	if err := down.Kill(); err != nil {
		t.Fatal(err)
	}
	a := &acked{m: map[string]string{}}
	start := time.Now()
	errs := writeKeys(ctx, c, a, "snap/", 0, 10000, 32)
	t.Logf("10000 writes with %s down: %v, %d failed", down.ID, time.Since(start).Round(time.Millisecond), errs)
	if len(a.m) < 9900 {
		t.Fatalf("only %d of 10000 writes acknowledged", len(a.m))
	}
	// The leader compacts its log beyond what the down node has.
	var leaderSt interface{ String() string }
	harness.Eventually(t, 30*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if st.FirstIndex <= downLast+1 || st.LastSnapshotIndex == 0 {
			return fmt.Errorf("leader first index %d, last snapshot %d; down node's last index %d", st.FirstIndex, st.LastSnapshotIndex, downLast)
		}
		leaderSt = stringer(fmt.Sprintf("first index %d, snapshot %d, last %d", st.FirstIndex, st.LastSnapshotIndex, st.LastIndex))
		return nil
	})
	t.Logf("leader log compacted: %s; %s had %d", leaderSt, down.ID, downLast)
	if err := down.Start(binary); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	harness.Eventually(t, 60*time.Second, func() error { return a.verify(ctx, down.Client(time.Second), "snap/", false) })
	st, err = down.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.FSMRestores < 1 || st.LastSnapshotIndex <= downLast {
		t.Errorf("%s caught up without installing a snapshot? restores %d, last snapshot %d (was at %d)", down.ID, st.FSMRestores, st.LastSnapshotIndex, downLast)
	}
	t.Logf("%s caught up in %v: %d keys local, snapshot index %d, restores %d", down.ID, time.Since(restarted).Round(time.Millisecond), st.FSMKeys, st.LastSnapshotIndex, st.FSMRestores)
}

type stringer string

func (s stringer) String() string { return string(s) }
