package controlplane

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

func ids(s []control.RaftServer) string {
	var out []string
	for _, v := range s {
		out = append(out, v.ID)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestFiveNodesAutopilot: five voters plus a non-voter. Killing two voters
// (the leader among them) leaves a majority that keeps answering; after the
// dead-server timeout autopilot promotes the healthy non-voter and removes
// the dead voters; when they come back they rejoin as non-voters and one is
// promoted to restore five voters.
func TestFiveNodesAutopilot(t *testing.T) {
	c := startCluster(t, 5, 5, "--autopilot-dead-server-timeout", "3s", "--autopilot-stabilization-time", "1s")
	ctx := ctxTimeout(t, 3*time.Minute)
	n6, err := c.AddNode("--autopilot-dead-server-timeout", "3s", "--autopilot-stabilization-time", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if err := n6.Start(binary); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if ids(st.NonVoters) != n6.ID || len(st.Voters) != 5 {
			return fmt.Errorf("voters %s non-voters %s", ids(st.Voters), ids(st.NonVoters))
		}
		return nil
	})
	a := &acked{m: map[string]string{}}
	if errs := writeKeys(ctx, c, a, "ap/", 0, 100, 4); errs > 0 {
		t.Fatalf("%d writes failed", errs)
	}

	// Kill the leader and one more voter: 3 of 5 voters remain.
	leader, _, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var victims []*harness.Node
	victims = append(victims, leader)
	for _, n := range c.Nodes {
		if n != leader && n != n6 && len(victims) < 2 {
			victims = append(victims, n)
		}
	}
	for _, v := range victims {
		if err := v.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	writeKeys(ctx, c, a, "ap/", 100, 100, 4)
	if err := a.verify(ctx, c.Client(0, 15*time.Second), "ap/", true); err != nil {
		t.Fatalf("with 2 of 5 voters dead: %v", err)
	}
	t.Logf("killed %s and %s; writes acknowledged: %d", victims[0].ID, victims[1].ID, len(a.m))

	// Autopilot: n6 promoted, the dead voters removed.
	harness.Eventually(t, 30*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if len(st.Voters) != 4 || !strings.Contains(ids(st.Voters), n6.ID) || len(st.NonVoters) != 0 {
			return fmt.Errorf("voters %s non-voters %s", ids(st.Voters), ids(st.NonVoters))
		}
		return nil
	})
	t.Logf("autopilot replaced the dead voters %v after the kill", time.Since(killed).Round(time.Millisecond))

	// The dead come back: added as non-voters, one promoted back to 5 voters.
	for _, v := range victims {
		if err := v.Start(binary); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 40*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if len(st.Voters) != 5 || len(st.NonVoters) != 1 {
			return fmt.Errorf("voters %s non-voters %s", ids(st.Voters), ids(st.NonVoters))
		}
		return nil
	})
	for _, n := range c.Nodes {
		harness.Eventually(t, 20*time.Second, func() error { return a.verify(ctx, n.Client(time.Second), "ap/", false) })
	}
}

// TestManualPromoteRemove: `eddy ctl raft remove` of a dead voter and
// `eddy ctl raft promote` of a non-voter, with autopilot's timeout too long
// to interfere.
func TestManualPromoteRemove(t *testing.T) {
	c := startCluster(t, 3, 3, "--autopilot-dead-server-timeout", "10m")
	n4, err := c.AddNode("--autopilot-dead-server-timeout", "10m")
	if err != nil {
		t.Fatal(err)
	}
	if err := n4.Start(binary); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if ids(st.NonVoters) != n4.ID {
			return fmt.Errorf("non-voters %s", ids(st.NonVoters))
		}
		return nil
	})
	leader, _, _ := c.Leader()
	dead := followers(c, leader)[0]
	if dead == n4 {
		dead = followers(c, leader)[1]
	}
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl(t, leader.URL(), "raft", "remove", dead.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl(t, n4.URL(), "raft", "promote", n4.ID); err != nil { // forwarded to the leader
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		want := []string{}
		for _, n := range c.Nodes {
			if n != dead {
				want = append(want, n.ID)
			}
		}
		sort.Strings(want)
		if ids(st.Voters) != strings.Join(want, ",") || len(st.NonVoters) != 0 {
			return fmt.Errorf("voters %s non-voters %s, want voters %v", ids(st.Voters), ids(st.NonVoters), want)
		}
		return nil
	})
	if _, err := ctl(t, leader.URL(), "raft", "promote", "n9"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("promote of an unknown server: %v, want 404", err)
	}
}
