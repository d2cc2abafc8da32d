package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestNetworkPartition cuts one node off with iptables, four ways in a
// seeded order, each healed after a seeded 5–9 s (longer than the gossip
// failure detector and the lease): gossip only (a follower, then the Raft
// leader), Raft only, and everything between nodes (gossip + Raft + HTTP;
// the cut node keeps MySQL and the broker). End: the tables equal the
// oracle; no node ever lists fewer Raft voters than a quorum of the 3
// configured; a gossip-only cut changes each partition's lease at most
// twice (no ping-pong).
func TestNetworkPartition(t *testing.T) {
	require(t, "iptables")
	rng := seeded(t)
	nf := newNetFaults(t)
	e := newEnv(t, envConfig{rng: rng, replayFor: 55 * time.Second, lateness: 30 * time.Second, gidBase: 61000})
	voters := watchVoters(t, e.c)
	e.startReplay()

	cases := []string{"gossip-follower", "gossip-leader", "raft", "isolate"}
	rng.Shuffle(len(cases), func(i, j int) { cases[i], cases[j] = cases[j], cases[i] })
	t.Logf("schedule: %v", cases)
	var settled []time.Duration
	for i, cs := range cases {
		time.Sleep(between(rng, time.Second, 3*time.Second))
		leader, _, err := e.c.WaitLeader(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var target *harness.Node
		var kinds []string
		switch cs {
		case "gossip-follower", "raft", "isolate":
			var cands []*harness.Node
			for _, n := range e.running() {
				if cs != "gossip-follower" || n != leader {
					cands = append(cands, n)
				}
			}
			target = cands[rng.IntN(len(cands))]
		case "gossip-leader":
			target = leader
		}
		switch cs {
		case "gossip-follower", "gossip-leader":
			kinds = []string{portGossip}
		case "raft":
			kinds = []string{portRaft}
		case "isolate":
			kinds = []string{portGossip, portRaft, portHTTP}
		}
		hold := between(rng, 5*time.Second, 9*time.Second)
		owned := e.obs.OwnedBy(target.ID)
		from := time.Now()
		nf.cut(target, e.c.Nodes, kinds...)
		t.Logf("case %d %s: cut %v of %s (leader %s, owns %d partitions) for %s", i+1, cs, kinds, target.ID, leader.ID, len(owned), hold.Round(time.Millisecond))
		time.Sleep(hold)
		moved := "no partition moved to another node during the cut"
		if rec, ok := recovered(e.obs, target.ID, owned, from); ok && rec < hold {
			moved = fmt.Sprintf("its partitions ran elsewhere %s after the cut", rec.Round(time.Millisecond))
		}
		nf.heal()
		healed := time.Now()
		harness.Eventually(t, 60*time.Second, func() error { return e.obs.AllRunning("") })
		settled = append(settled, time.Since(healed))
		time.Sleep(2 * time.Second) // let moves back settle before counting
		changes := leaseChanges(t, e, from, time.Now())
		worst, wp := 0, int32(-1)
		for p, n := range changes {
			if n > worst {
				worst, wp = n, p
			}
		}
		t.Logf("case %d %s: healed; %s; all running %s after the heal; lease grants per partition in the case: max %d (partition %d), %v",
			i+1, cs, moved, settled[len(settled)-1].Round(time.Millisecond), worst, wp, changes)
		if (cs == "gossip-follower" || cs == "gossip-leader") && worst > 2 {
			t.Errorf("case %s: partition %d changed its lease %d times during a gossip-only cut of %s (ping-pong; want at most 2)", cs, wp, worst, target.ID)
		}
	}
	e.finish()
	min, at := voters()
	t.Logf("Raft voters: the fewest any node listed during the run: %d (%s)", min, at)
	if min < 2 {
		t.Errorf("a node listed %d Raft voters (%s): below a quorum (2) of the 3 configured voters", min, at)
	}
}

// leaseChanges counts, per partition, the lease grants (acquires and
// takeovers) Raft appended between from and to.
func leaseChanges(t *testing.T, e *env, from, to time.Time) map[int32]int {
	t.Helper()
	out := map[int32]int{}
	for _, ev := range e.leaseHistory() { // waits for the replica asked to hold every epoch seen running
		at := time.UnixMilli(ev.TimeMs)
		if ev.Kind != control.LeaseReleased && !at.Before(from) && !at.After(to) {
			out[ev.Partition]++
		}
	}
	return out
}

// watchVoters polls every running node's GET /v1/cluster/raft every 100 ms
// until t ends; the returned func gives the fewest voters any node listed
// and when and where.
func watchVoters(t *testing.T, c *harness.Cluster) func() (int, string) {
	var mu sync.Mutex
	least, where := -1, ""
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, n := range c.Nodes {
				if !n.Running() {
					continue
				}
				st, err := n.Status()
				if err != nil || len(st.Voters) == 0 {
					continue
				}
				mu.Lock()
				if least < 0 || len(st.Voters) < least {
					least = len(st.Voters)
					where = fmt.Sprintf("%s at %s, state %s, voters %v", n.ID, time.Now().Format("15:04:05.000"), st.State, st.Voters)
				}
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func() (int, string) {
		mu.Lock()
		defer mu.Unlock()
		return least, where
	}
}
