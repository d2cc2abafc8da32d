package control_test

import (
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/control"
)

// The test nodes of package control run over real memberlist gossip.
func init() { control.GossipMembers = cluster.MembersFunc(cluster.DefaultConfig()) }
