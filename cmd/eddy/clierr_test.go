package main

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/control"
)

// TestCtlConnectionRefused: eddy ctl against an address nothing listens on
// fails at once, saying so, instead of retrying for --timeout.
func TestCtlConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, args := range [][]string{{"members"}, {"job", "list"}, {"config", "put", "k", "v"}, {"leave"}} {
		start := time.Now()
		_, err := ctl(addr, args...)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("eddy ctl %v took %v", args, d)
		}
		if err == nil || !strings.Contains(err.Error(), "connection refused to http://"+addr) {
			t.Errorf("eddy ctl %v: %v, want connection refused to %s", args, err, addr)
		}
	}
}

// TestUnknownSubcommand: a group command with an unknown or no subcommand
// exits non-zero and lists the valid ones.
func TestUnknownSubcommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ctl", "job", "foo"}, `unknown command "foo" for "eddy ctl job"; valid: cancel, get, list, submit`},
		{[]string{"ctl", "fooo"}, `unknown command "fooo" for "eddy ctl"; valid: checkpoints, config`},
		{[]string{"ctl", "config"}, "eddy ctl config needs a subcommand: del, get, list, put, watch"},
		{[]string{"ctl", "devices", "export"}, `unknown command "export" for "eddy ctl devices"; valid: import`},
		{[]string{"savepoint", "bogus"}, `unknown command "bogus"`},
	} {
		_, err := runEddy(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("eddy %v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
}

// TestJoinUnreachableWarns: a node told to join an address nobody answers
// on logs each failed attempt at WARN and keeps trying.
func TestJoinUnreachableWarns(t *testing.T) {
	addrs := freeLocalAddrs(t, 4)
	var logs syncBuffer
	cfg := control.DefaultConfig()
	cfg.ID, cfg.DataDir = "n1", t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
	cfg.Join = []string{addrs[3]}
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.APIToken = testToken
	node, err := cluster.StartNode(cfg, cluster.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), `level=WARN msg="join failed, retrying"`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no repeated WARN join lines:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "peers=["+addrs[3]+"]") || !strings.Contains(logs.String(), "attempt=3") {
		t.Errorf("join warnings do not name the peer and attempt:\n%s", logs.String())
	}
}
