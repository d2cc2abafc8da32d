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
