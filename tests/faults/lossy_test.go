package faults

import (
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestLossyNetwork degrades the network between the nodes with iptables
// rules like TestNetworkPartition's, in a seeded order, each for a seeded
// 6–10 s, then heals: "lossy-node" drops 30 % of one node's packets to and
// from the others (gossip, Raft, HTTP), "lossy-raft" drops 20 % of every
// node's Raft packets, "one-way-leader" drops everything the Raft leader
// sends to the others while it still hears them (an asymmetric partition),
// "one-way-follower" the same for a follower. End: the tables equal the
// oracle, no row's epoch went down, one holder per partition at a time, and
// no node ever listed fewer Raft voters than a quorum.
func TestLossyNetwork(t *testing.T) {
	require(t, "iptables")
	rng := seeded(t)
	nf := newNetFaults(t)
	e := newEnv(t, envConfig{rng: rng, replayFor: 55 * time.Second, lateness: 30 * time.Second, gidBase: 62000})
	audit := epochAudit(t, e.dsn)
	voters := watchVoters(t, e.c)
	e.startReplay()
	all := []string{portGossip, portRaft, portHTTP}
	cases := []string{"lossy-node", "lossy-raft", "one-way-leader", "one-way-follower"}
	rng.Shuffle(len(cases), func(i, j int) { cases[i], cases[j] = cases[j], cases[i] })
	t.Logf("schedule: %v", cases)
	for i, cs := range cases {
		time.Sleep(between(rng, time.Second, 3*time.Second))
		leader, followers := e.leaderAndFollowers()
		follower := followers[rng.IntN(len(followers))]
		hold := between(rng, 6*time.Second, 10*time.Second)
		var what string
		switch cs {
		case "lossy-node":
			target := e.running()[rng.IntN(len(e.running()))]
			nf.drop(target, e.c.Nodes, 0.3, true, all...)
			what = "30 % of " + target.ID + "'s packets both ways"
		case "lossy-raft":
			for _, n := range e.running() {
				nf.drop(n, e.c.Nodes, 0.2, false, portRaft)
			}
			what = "20 % of every node's Raft packets"
		case "one-way-leader":
			nf.drop(leader, e.c.Nodes, 1, false, all...)
			what = "everything the leader " + leader.ID + " sends"
		case "one-way-follower":
			nf.drop(follower, e.c.Nodes, 1, false, all...)
			what = "everything the follower " + follower.ID + " sends"
		}
		from := time.Now()
		t.Logf("case %d %s: drop %s for %s", i+1, cs, what, hold.Round(time.Millisecond))
		time.Sleep(hold)
		nf.heal()
		healed := time.Now()
		harness.Eventually(t, 60*time.Second, func() error { return e.obs.AllRunning("") })
		settle := time.Since(healed)
		grants := 0
		for _, n := range leaseChanges(t, e, from, time.Now()) {
			grants += n
		}
		after, _, err := e.c.WaitLeader(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("case %d %s: healed; every partition runs on one node %s later; %d lease grants during the case; Raft leader %s → %s",
			i+1, cs, settle.Round(time.Millisecond), grants, leader.ID, after.ID)
	}
	e.finish()
	for _, a := range audit() {
		t.Errorf("epoch regressed: %s", a)
	}
	min, at := voters()
	t.Logf("Raft voters: the fewest any node listed during the run: %d (%s)", min, at)
	if min < 2 {
		t.Errorf("a node listed %d Raft voters (%s): below a quorum (2) of the 3 configured voters", min, at)
	}
}
