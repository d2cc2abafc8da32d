// Package cluster is eddy's cluster layer, above the control plane: which
// nodes exist, how to reach them, which of them are alive, where device
// partitions run, and the node that wires it all. Membership implements
// control.Members, the port through which a control.Node sees the cluster,
// and StartNode starts a control.Node over it (the member record and its
// statuses, control.Meta and control.Member, belong to the port).
// With WithBridge, StartNode also runs the broadcast bridge (BridgeConfig)
// on the node while it is the Raft leader (a control.LeaderService): a
// Kafka consumer that applies the broadcast topic to the devices/ keys.
// Subpackages: assign (placement and the partition assigner), jobs (the
// stored jobs on a node) and virtual (partitions as virtual actors).
//
// A Membership wraps a hashicorp/memberlist gossip instance (SWIM failure
// detection, LAN profile tuned for fast detection). Every node advertises a
// small Meta record — ID, HTTP, Raft and gossip addresses, Raft role and a
// few bootstrap flags — as memberlist node metadata (JSON, at most
// MaxMetaBytes). Other packages read the member list (Members, Alive, Member)
// and subscribe to join/update/fail/leave events; the control plane uses it
// to bootstrap and grow the Raft group, and the partition assigner
// (cluster/assign) uses it to place device partitions on live nodes.
//
// Placement: assign.Owner and assign.Assign map device partitions to
// members by rendezvous (highest random weight) hashing; every node computes
// the same owners from the same set of placeable members
// (control.Member.Placeable: alive, Assignable, not leaving or stopping),
// and a membership change moves only the partitions it must (see
// cluster/assign/placement.go). The Assignable metadata flag is how a node
// tells the others whether it takes partitions. Gossip is only the
// placement hint: whether a lease may be taken over is decided in Raft
// (package cluster/assign, Leases and time).
//
// Usage:
//
//	cfg := cluster.DefaultConfig()
//	cfg.Meta = control.Meta{ID: "n1", HTTPAddr: "127.0.0.1:8080", RaftAddr: "127.0.0.1:8300", GossipAddr: "127.0.0.1:8301"}
//	m, err := cluster.New(cfg)
//	...
//	defer m.Shutdown()
//	_ = m.Join(ctx, []string{"127.0.0.1:8311"}) // retries until one contact succeeds or ctx ends
//	events, cancel := m.Subscribe(64)
//	defer cancel()
//	for ev := range events { ... }
//
// Failure detection: with the defaults (probe every 200 ms, probe timeout
// 100 ms, suspicion multiplier 2) a SIGKILLed node on loopback is declared
// failed in about one second. A node that calls Leave is reported as left,
// not failed. Failed and left members stay in Members (with their Status and
// the time of the change) for Config.ReapAfter, so callers can apply their
// own timeouts (the control plane's autopilot does).
//
// Event delivery: events are hints. Each subscriber has a buffered channel;
// when it is full, further events for that subscriber are dropped and counted
// (eddy_membership_events_dropped_total). A subscriber that must never miss a
// change re-reads Members after each event or periodically.
package cluster
