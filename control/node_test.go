package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"
)

// eventually polls fn every 20 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddrs returns n distinct 127.0.0.1:port addresses free for TCP and UDP.
func freeAddrs(t *testing.T, n int) []string { return freeport.Take(t, n) }

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("EDDY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// testToken is the API token of the test nodes; httpJSON sends it.
const testToken = "control-test-token"

func testNodeConfig(t *testing.T, id string, expect int, join []string) Config {
	addrs := freeAddrs(t, 3)
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
	cfg.BootstrapExpect = expect
	cfg.Join = join
	cfg.Logger = testLogger()
	cfg.Autopilot.StabilizationTime = 200 * time.Millisecond
	cfg.APIToken = testToken
	if cfg.Members = GossipMembers; cfg.Members == nil {
		t.Fatal("GossipMembers is not set (gossip_ext_test.go)")
	}
	return cfg
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func leaderOf(nodes []*Node) *Node {
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

func httpJSON(method, url string, body string, out any) (int, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%v: %s", err, b)
		}
	}
	return resp.StatusCode, nil
}

func TestNodeClusterInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-node cluster")
	}
	cfg1 := testNodeConfig(t, "n1", 3, nil)
	nodes := []*Node{startNode(t, cfg1)}
	for _, id := range []string{"n2", "n3"} {
		nodes = append(nodes, startNode(t, testNodeConfig(t, id, 3, []string{cfg1.GossipAddr})))
	}
	eventually(t, 15*time.Second, func() error {
		l := leaderOf(nodes)
		if l == nil {
			return errors.New("no leader")
		}
		if st := l.Status(); len(st.Voters) != 3 || st.VoterTarget != 3 {
			return fmt.Errorf("voters %v target %d", st.Voters, st.VoterTarget)
		}
		return nil
	})
	leader := leaderOf(nodes)
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}

	// A write on a follower is forwarded; every replica's device lookup sees
	// it within a second.
	ctx := context.Background()
	start := time.Now()
	res, err := follower.Apply(ctx, KVSet{Key: "devices/17079", Value: `{"company":"acme","site":"dyce","threshold":40}`})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		eventually(t, time.Second, func() error {
			if d, ok := n.Devices().Device("17079"); !ok || d.Company != "acme" {
				return fmt.Errorf("%s: device not visible", n.ID())
			}
			return nil
		})
	}
	t.Logf("device change visible on all replicas after %v", time.Since(start))

	// CAS over HTTP on a follower: stale revision is 409, current is 200.
	base := "http://" + follower.cfg.HTTPAddr
	if code, _ := httpJSON("PUT", fmt.Sprintf("%s/v1/config/devices/17079?cas=%d", base, res.Index-1), `{"company":"x"}`, nil); code != 409 {
		t.Errorf("stale CAS: HTTP %d, want 409", code)
	}
	var e KVEntry
	if code, err := httpJSON("PUT", fmt.Sprintf("%s/v1/config/devices/17079?cas=%d", base, res.Index), `{"company":"beta","site":"s"}`, &e); code != 200 {
		t.Fatalf("CAS: HTTP %d %v", code, err)
	}
	// A consistent read on the follower (forwarded to the leader) sees it.
	var got KVEntry
	if code, err := httpJSON("GET", base+"/v1/config/devices/17079?consistent", "", &got); code != 200 || got.ModifyIndex != e.ModifyIndex {
		t.Fatalf("consistent read: HTTP %d %v, entry %+v, want revision %d", code, err, got, e.ModifyIndex)
	}

	// A blocking watch on a follower returns when the prefix changes.
	type watchResult struct {
		list KVList
		err  error
		took time.Duration
	}
	wr := make(chan watchResult, 1)
	go func() {
		var l KVList
		t0 := time.Now()
		_, err := httpJSON("GET", fmt.Sprintf("%s/v1/config?prefix=devices/&index=%d&wait=10s", base, e.ModifyIndex), "", &l)
		wr <- watchResult{l, err, time.Since(t0)}
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := leader.Apply(ctx, KVSet{Key: "devices/2", Value: `{"company":"c2","site":"s2"}`}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-wr:
		if w.err != nil || len(w.list.Entries) != 2 || w.list.Index <= e.ModifyIndex {
			t.Fatalf("watch: %+v err %v", w.list, w.err)
		}
		t.Logf("watch returned %v after start", w.took)
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not return after a change")
	}

	// A fourth node without --bootstrap-expect becomes a non-voter and
	// replicates.
	n4 := startNode(t, testNodeConfig(t, "n4", 0, []string{cfg1.GossipAddr}))
	eventually(t, 10*time.Second, func() error {
		st := leader.Status()
		if len(st.NonVoters) != 1 || st.NonVoters[0].ID != "n4" {
			return fmt.Errorf("non-voters %v", st.NonVoters)
		}
		if _, ok := n4.Devices().Device("2"); !ok {
			return errors.New("n4 has not replicated devices/2")
		}
		return nil
	})
	// It leaves for good: removed from the configuration, not re-added.
	if err := n4.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n4.Done():
	default:
		t.Fatal("Done not closed after Leave")
	}
	n4.Close()
	eventually(t, 5*time.Second, func() error {
		st := leader.Status()
		if len(st.NonVoters) != 0 {
			return fmt.Errorf("non-voters %v after leave", st.NonVoters)
		}
		if m, ok := leader.Membership().Member("n4"); !ok || m.Status.String() != "left" {
			return fmt.Errorf("n4 member %+v", m)
		}
		return nil
	})

	// The leader stops; the other two elect a new leader and accept writes.
	leader.Close()
	rest := []*Node{}
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if leaderOf(rest) == nil {
			return errors.New("no new leader")
		}
		return nil
	})
	if _, err := rest[0].Apply(ctx, KVSet{Key: "after", Value: "failover"}); err != nil {
		t.Fatalf("write after leader stop: %v", err)
	}
}

func TestNodeConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.ID, c.DataDir = "n1", "/tmp/x"
		c.HTTPAddr, c.RaftAddr, c.GossipAddr = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
		c.Members = GossipMembers
		return c
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no id", func(c *Config) { c.ID = "" }, "--id"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"unspecified http", func(c *Config) { c.HTTPAddr = "0.0.0.0:80" }, "--http-addr"},
		{"port 0", func(c *Config) { c.RaftAddr = "127.0.0.1:0" }, "--raft-addr"},
		{"same addrs", func(c *Config) { c.RaftAddr = c.HTTPAddr }, "must differ"},
		{"even expect", func(c *Config) { c.BootstrapExpect = 2 }, "--bootstrap-expect"},
		{"bad join", func(c *Config) { c.Join = []string{"nohost"} }, "--join"},
		{"lease > heartbeat", func(c *Config) { c.Raft.LeaderLeaseTimeout = time.Second }, "LeaderLeaseTimeout"},
		{"log level", func(c *Config) { c.Raft.LogLevel = "loud" }, "LogLevel"},
		{"value limit", func(c *Config) { c.MaxValueBytes = 0 }, "MaxValueBytes"},
		{"no membership", func(c *Config) { c.Members = nil }, "Members"},
	}
	for _, c := range cases {
		cfg := base()
		c.mod(&cfg)
		err := cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig mentioning %q", c.name, err, c.want)
		}
	}
}

// TestStartNodeFailsCleanly: a node whose gossip address is taken fails to
// start with an error after its Raft instance was created, and releases
// what it opened (its HTTP and Raft ports can be bound again) instead of
// panicking in its cleanup.
func TestStartNodeFailsCleanly(t *testing.T) {
	cfg := testNodeConfig(t, "n1", 1, nil)
	busy, err := net.Listen("tcp", cfg.GossipAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	n, err := StartNode(cfg)
	if err == nil {
		n.Close()
		t.Fatal("StartNode succeeded on a busy gossip address")
	}
	t.Logf("StartNode: %v", err)
	for _, addr := range []string{cfg.HTTPAddr, cfg.RaftAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still held after the failed start: %v", addr, err)
			continue
		}
		l.Close()
	}
}
