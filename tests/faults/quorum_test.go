package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestQuorumLoss SIGKILLs two of the three nodes at once — first the Raft
// leader and a follower, then both followers — keeps them down for a seeded
// 3–10 s, in which the survivor has no Raft quorum (no lease can be granted
// or renewed), and restarts them, while the replay runs. Prints when the
// survivor stopped running partitions (a holder whose lease cannot be
// renewed stops when it expires) and how long after the restart every
// partition ran again. End: the tables equal the
// oracle, no row's epoch ever went down, one holder per partition at a time.
func TestQuorumLoss(t *testing.T) {
	rng := seeded(t)
	e := newEnv(t, envConfig{rng: rng, replayFor: 50 * time.Second, lateness: 30 * time.Second})
	audit := epochAudit(t, e.dsn)
	e.startReplay()
	for round, withLeader := range []bool{true, false} {
		time.Sleep(between(rng, 3*time.Second, 6*time.Second))
		leader, followers := e.leaderAndFollowers()
		if len(followers) != 2 {
			t.Fatalf("round %d: %d followers running, want 2", round+1, len(followers))
		}
		victims, survivor := followers, leader
		if withLeader {
			i := rng.IntN(2)
			victims, survivor = []*harness.Node{leader, followers[i]}, followers[1-i]
		}
		down := between(rng, 3*time.Second, 10*time.Second)
		for _, v := range victims {
			if err := v.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("round %d: SIGKILL %s and %s (leader %s), survivor %s, down for %s", round+1, victims[0].ID, victims[1].ID, leader.ID, survivor.ID, down.Round(time.Millisecond))
		killed, held := time.Now(), len(e.obs.OwnedBy(survivor.ID))
		var fenced time.Duration // kill → the survivor runs no partition
		for time.Since(killed) < down {
			if fenced == 0 && len(e.obs.OwnedBy(survivor.ID)) == 0 {
				fenced = time.Since(killed)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if fenced > 0 {
			t.Logf("round %d: the survivor, holding %d partitions at the kill, ran none %s after it (its leases expired without a quorum to renew them)", round+1, held, fenced.Round(time.Millisecond))
		} else {
			t.Logf("round %d: at the end of the outage the survivor still ran %d partitions (held %d at the kill)", round+1, len(e.obs.OwnedBy(survivor.ID)), held)
		}
		restarted := time.Now()
		for _, v := range victims {
			if err := v.Start(eddyBin); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 90*time.Second, func() error { return e.obs.AllRunning("") })
		if _, _, err := e.c.WaitLeader(e.ctx); err != nil {
			t.Fatal(fmt.Errorf("round %d: no leader after the restart: %w", round+1, err))
		}
		t.Logf("round %d: every partition runs again %s after the restart", round+1, time.Since(restarted).Round(time.Millisecond))
	}
	e.finish()
	for _, a := range audit() {
		t.Errorf("epoch regressed: %s", a)
	}
}
