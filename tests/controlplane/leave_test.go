package controlplane

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// heartbeatErrors counts the lines of a node's log in which its Raft
// reports a failed heartbeat to the Raft address addr.
func heartbeatErrors(t *testing.T, n *harness.Node, addr string) int {
	t.Helper()
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "failed to heartbeat") && strings.Contains(line, addr) {
			c++
		}
	}
	return c
}

// TestLeaveOnTerminate: three voters and two non-voters (n4, n5), the
// autopilot's dead-server timeout far out of reach (10 min), so that only
// Leave can remove anyone. SIGTERM of the non-voter n4 removes it from the
// Raft configuration; SIGTERM of the leader makes it hand leadership over
// and leave, and autopilot promotes n5 to keep the voter target of 3. After
// each removal the leader's log gains no "failed to heartbeat" ERROR for
// the node that left (before the fix: one every few hundred ms, forever).
func TestLeaveOnTerminate(t *testing.T) {
	args := []string{"--autopilot-dead-server-timeout", "10m", "--autopilot-stabilization-time", "1s"}
	c := startCluster(t, 3, 3, args...)
	var extra []*harness.Node
	for i := 0; i < 2; i++ {
		n, err := c.AddNode(args...)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(binary); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, n)
	}
	n4, n5 := extra[0], extra[1]
	harness.Eventually(t, 30*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if got := ids(st.NonVoters); got != n4.ID+","+n5.ID || len(st.Voters) != 3 {
			return fmt.Errorf("voters %s non-voters %s", ids(st.Voters), got)
		}
		return nil
	})

	quiet := func(gone *harness.Node) {
		t.Helper()
		leader, _, err := c.Leader()
		if err != nil {
			t.Fatal(err)
		}
		before := heartbeatErrors(t, leader, gone.RaftAddr)
		time.Sleep(3 * time.Second)
		if after := heartbeatErrors(t, leader, gone.RaftAddr); after > before {
			t.Errorf("leader %s logged %d more heartbeat ERRORs to %s in the 3 s after it left", leader.ID, after-before, gone.ID)
		}
	}

	// A non-voter leaves.
	stopped := time.Now()
	if err := n4.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if all := ids(st.Voters) + "," + ids(st.NonVoters); strings.Contains(all, n4.ID) {
			return fmt.Errorf("%s still in the raft configuration: voters %s non-voters %s", n4.ID, ids(st.Voters), ids(st.NonVoters))
		}
		return nil
	})
	t.Logf("non-voter %s left the raft configuration %v after SIGTERM", n4.ID, time.Since(stopped).Round(time.Millisecond))
	quiet(n4)

	// The leader leaves: leadership moves, it is removed, n5 is promoted.
	leader, _, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	stopped = time.Now()
	if err := leader.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		l, st, err := c.Leader()
		if err != nil {
			return err
		}
		if l == leader {
			return fmt.Errorf("the stopped node still leads")
		}
		all := ids(st.Voters) + "," + ids(st.NonVoters)
		if strings.Contains(all, leader.ID) || len(st.Voters) != 3 || !strings.Contains(ids(st.Voters), n5.ID) {
			return fmt.Errorf("voters %s non-voters %s, want 3 voters with %s and without %s", ids(st.Voters), ids(st.NonVoters), n5.ID, leader.ID)
		}
		return nil
	})
	t.Logf("leader %s left %v after SIGTERM; %s promoted", leader.ID, time.Since(stopped).Round(time.Millisecond), n5.ID)
	quiet(leader)
	b, _ := os.ReadFile(leader.LogPath)
	if !strings.Contains(string(b), "left the raft cluster") {
		t.Errorf("%s's log does not say it left the raft cluster", leader.ID)
	}

	// A node that left and restarts with its data dir joins again as a
	// non-voter at once.
	if err := n4.Start(binary); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if !strings.Contains(ids(st.NonVoters), n4.ID) {
			return fmt.Errorf("restarted %s not back: voters %s non-voters %s", n4.ID, ids(st.Voters), ids(st.NonVoters))
		}
		return nil
	})
}
