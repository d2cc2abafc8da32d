package control

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cluster"
	"github.com/hashicorp/raft"
)

func TestSafeVoterRemovals(t *testing.T) {
	healthyExcept := func(down ...string) func(string) bool {
		return func(id string) bool {
			for _, d := range down {
				if d == id {
					return false
				}
			}
			return true
		}
	}
	for _, c := range []struct {
		name    string
		voters  []string
		dead    []string
		target  int
		healthy func(string) bool
		want    []string
	}{
		{"one of three dead", []string{"a", "b", "c"}, []string{"c"}, 3, healthyExcept("c"), []string{"c"}},
		{"two of five dead", []string{"a", "b", "c", "d", "e"}, []string{"d", "e"}, 5, healthyExcept("d", "e"), []string{"d", "e"}},
		// Three of five down: removing any would leave 2 healthy < 3.
		{"three of five dead", []string{"a", "b", "c", "d", "e"}, []string{"c", "d", "e"}, 5, healthyExcept("c", "d", "e"), nil},
		// Gossip says b, c dead, but only c is silent over Raft and b is
		// down too: removing c leaves a alone, 1 < 2.
		{"leader with one healthy voter", []string{"a", "b", "c"}, []string{"c"}, 3, healthyExcept("b", "c"), nil},
		// After an earlier removal the target still counts: 2 voters,
		// one dead, target 3 → 1 healthy left < 2.
		{"below the target", []string{"a", "b"}, []string{"b"}, 3, healthyExcept("b"), nil},
		// (n-1)/2 per round: 4 voters, 3 of them "dead" but healthy
		// count says otherwise — the cap alone limits to 1.
		{"cap per round", []string{"a", "b", "c", "d"}, []string{"b", "c", "d"}, 1, healthyExcept(), []string{"b"}},
		// Leave of a healthy voter with target 3 and 3 voters.
		{"leave of a healthy voter", []string{"a", "b", "c"}, []string{"b"}, 3, healthyExcept(), []string{"b"}},
		// Leave when one other voter is down: 1 healthy left < 2.
		{"leave with one voter down", []string{"a", "b", "c"}, []string{"b"}, 3, healthyExcept("c"), nil},
		{"target unset: the voter count", []string{"a", "b", "c"}, []string{"c"}, 0, healthyExcept("c"), []string{"c"}},
	} {
		if got := safeVoterRemovals(c.voters, c.dead, c.target, c.healthy); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAutopilotGossipCutLeaderKeepsVoters: three voters over real Raft TCP;
// the two followers' memberlists stop, so that the leader's gossip view
// declares them failed while Raft between all three keeps working. Past the
// dead-server timeout the leader must still have three voters and commit
// writes (before the fix it removed both followers).
func TestAutopilotGossipCutLeaderKeepsVoters(t *testing.T) {
	var nodes []*Node
	var seed []string
	for i := 1; i <= 3; i++ {
		cfg := testNodeConfig(t, fmt.Sprintf("n%d", i), 3, seed)
		cfg.Autopilot.DeadServerTimeout = time.Second
		if i == 1 {
			seed = []string{cfg.GossipAddr}
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	var leader *Node
	eventually(t, 30*time.Second, func() error {
		leader = leaderOf(nodes)
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		if st := leader.Status(); len(st.Voters) != 3 || st.VoterTarget != 3 {
			return fmt.Errorf("voters %v target %d", st.Voters, st.VoterTarget)
		}
		return nil
	})
	for _, n := range nodes {
		if n != leader {
			if err := n.members.Shutdown(); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 20*time.Second, func() error {
		failed := 0
		for _, m := range leader.members.Members() {
			if m.ID != leader.ID() && m.Status != cluster.StatusAlive {
				failed++
			}
		}
		if failed != 2 {
			return fmt.Errorf("leader's gossip view: %d others failed, want 2", failed)
		}
		return nil
	})
	cut := time.Now()
	for time.Since(cut) < 3*leader.cfg.Autopilot.DeadServerTimeout+time.Second {
		var voters []RaftServer
		for _, n := range nodes {
			if n.IsLeader() {
				voters = n.Status().Voters
			}
		}
		if voters != nil && len(voters) != 3 {
			t.Fatalf("%v after the gossip cut: voters %v, want all 3 (Raft still reaches them)", time.Since(cut).Round(time.Millisecond), voters)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[0].Apply(ctx, KVSet{Key: "cut/after", Value: "x"}); err != nil {
		t.Fatalf("write after the gossip cut: %v", err)
	}
	if l := leaderOf(nodes); l != nil {
		if f := l.raft.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Suffrage != raft.Voter {
					t.Errorf("server %s demoted", s.ID)
				}
			}
		}
	}
}
