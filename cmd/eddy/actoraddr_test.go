package main

import (
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/control"
)

func TestResolveActorAddr(t *testing.T) {
	cfg := control.Config{HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:8300", GossipAddr: "10.0.0.1:8301"}
	for _, tc := range []struct {
		flag, gossip, want, err string
	}{
		{flag: "auto", want: "10.0.0.1:8302"},
		{flag: "auto", gossip: "[::1]:7946", want: "[::1]:7947"},
		{flag: "auto", gossip: "node1:65535", err: "cannot derive"},
		{flag: "off", want: ""},
		{flag: "", want: ""},
		{flag: "127.0.0.1:7000", want: "127.0.0.1:7000"},
		{flag: "127.0.0.1:0", err: "port in 1..65535"},
		{flag: "nohost", err: "want host:port"},
		{flag: "10.0.0.1:8300", err: "also --raft-addr"},
		{flag: "auto", gossip: "10.0.0.1:8079", err: "also --http-addr"},
	} {
		c := cfg
		if tc.gossip != "" {
			c.GossipAddr = tc.gossip
		}
		got, err := resolveActorAddr(tc.flag, c)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q (gossip %s): %q, %v; want an error with %q", tc.flag, c.GossipAddr, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q (gossip %s): %q, %v; want %q", tc.flag, c.GossipAddr, got, err, tc.want)
		}
	}
}
