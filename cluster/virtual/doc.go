// Package virtual makes every device partition a protoactor-go virtual actor
// ("grain") addressable by identity from any node: kind "partition",
// identity "<job>/<partition>", e.g. "iot-work/7".
//
// Three parts:
//
//   - Provider, a protoactor-go cluster.ClusterProvider fed by eddy's
//     memberlist Membership: alive members whose Meta.ActorAddr is set become
//     the protoactor cluster topology (member ID = eddy node ID).
//   - A lease-driven identity lookup: an identity is activated on the node
//     that holds the partition's lease (LeaseTable), through a small
//     activator actor ("eddy-activator") that every node runs.
//   - The partition grain. It never trusts activation for ownership:
//     protoactor-go is known to activate an identity twice during
//     membership changes, and eddy's lease table may move a partition after
//     its grain was activated. Each request is checked against the lease
//     table; a grain on a node that does not hold the lease answers "not
//     owner" (with the owner it knows) and never reads the partition.
//     Node.PartitionStatus then drops the cached activation and retries, so
//     the request ends at the lease holder: the lease decides.
//
// # Addressing layer, not the execution unit (measured)
//
// The partition grain is how a partition is found, not where it runs: the
// partition runs in cluster/jobs on the node holding its lease, with the
// lease epoch as fencing token; the grain only reports on it. eddy does not
// let protoactor-go's cluster activate the running partition, because
// TestMeasureActivations (go test ./cluster/virtual -run Measure -v: 16
// partitions, 3 nodes over TCP, a 4th joins and takes 4 leases, one is
// stopped without leaving and its leases move after 1.5 s; activations of
// every node polled every 10 ms) measured, over three seeds (four for the lease lookup):
//
//   - protoactor's own placement (disthash, a rendezvous hash of its member
//     list): 17-20 episodes of an identity active on a node not holding its
//     lease, 7-14 of them still there at the end, 0-2 episodes of one
//     identity active on two nodes at once; 67-85 % of requests reached a
//     non-holder. Its placement ignores the lease, moves activations on
//     every topology change without a handover, and an activation carries
//     no epoch to fence a stale one.
//   - eddy's lease lookup (this package): 4 non-holder episodes and 2-4 on
//     two nodes at once, all of them old activations left on the previous
//     holder after a lease moved; 7-10 % of single requests hit one and
//     answered "not owner", and PartitionStatus then reached the holder.
//     Non-holder reads: 0. Since a grain that answers "not owner" stops
//     itself (Poison after the answer), seeds 11 and 22 give 3 "not owner"
//     answers instead of 306-309 and 1-2 stale activations left at the end
//     instead of 3-4 (those left are on the stopped node); episodes on two
//     nodes at once: still 2, for as long as a lease move takes to reach
//     the old holder.
//
// So an activation cannot be the unit that owns a partition's state and
// side effects: two activations can coexist and neither knows which is
// current. The lease (Raft, with epochs) decides; the grain is addressing.
//
// Messages are protobuf well-known types, so no generated code is needed:
// the request is a wrapperspb.StringValue holding the identity, the answer a
// structpb.Struct (see Status for its fields).
//
// Usage:
//
//	n, err := virtual.Start(virtual.Config{NodeID: node.ID(), ActorAddr: "10.0.0.1:8302",
//		Membership: node.Membership(),
//		Leases:     virtual.ViewLeases{View: node.FSM().View},
//		Local:      virtual.ProgressLocal{Source: runner}})
//	defer n.Stop()
//	st, err := n.PartitionStatus(ctx, "iot-work", 7)
//
// The node must advertise the same ActorAddr in its control.Meta (other
// nodes learn it by gossip). Stop does not wait for protoactor's gossip
// goroutines (protoactor stops them only on its graceful shutdown, which
// sleeps 2 s).
//
// protoactor's own logging goes through Config.Logger at warning level and
// above.
package virtual
