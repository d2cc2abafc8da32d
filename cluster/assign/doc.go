// Package assign places device partitions on the cluster's nodes and runs
// this node's share of them: rendezvous placement (Owner, Assign), the
// holder's lease clock, and the Assigner — a deterministic planner
// (plan.go: one look at the world in, operations out, no I/O) driven by a
// thin loop that performs the operations (Raft applies through
// control.Node.Apply, Runner calls). It sits in the cluster layer, above
// the control plane: the leases it takes are records of control's FSM, and
// it attaches itself to its control.Node as the node's
// control.PartitionAssigner, the port through which the HTTP API reads the
// partitions and Node.Leave hands them off.
//
// # Placement, leases and fencing
//
// Every node that processes device partitions runs an Assigner
// (New) with a Runner that starts and stops partitions. Assigners do
// not talk to each other; they agree through gossip and the FSM:
//
//   - Placement. The desired owner of partition p of job j is
//     Owner("j/p", placeable members): rendezvous hashing (placement.go)
//     over the
//     members that are alive, Assignable and neither leaving nor stopping.
//     A node is Assignable while its assigner runs, it has joined, it is in
//     contact with the Raft majority and it is not draining. A join moves
//     about 1/n of the partitions; a death moves only the dead node's.
//   - Acquire. The desired owner asks Raft for the lease with PrevEpoch =
//     the current epoch (the grant is epoch+1) when the lease is free,
//     released, or held by itself (a restarted owner fences its earlier
//     incarnation); with Takeover only when the holder's lease has expired
//     in Raft (below). Otherwise it waits: the holder hands the partition
//     over once it sees the same placement. After the grant,
//     Runner.Start(lease).
//   - Live handoff. A node that runs a partition it is no longer the desired
//     owner of calls Runner.Handoff (finish the batch, snapshot, commit,
//     stop), then releases the lease with the handoff point (Lease.Handoff);
//     the desired owner sees the release in its replica, acquires and
//     resumes from it. Other partitions never pause.
//   - Recovery. When a node dies its renewals stop; LeaseTTL + LeaseSafety
//     (default 3.5 s) after the last renewal it saw, each of its
//     partitions' new desired owner takes the lease over, restores the last
//     complete checkpoint (or a newer handoff point) and replays from its
//     offset.
//   - Lost lease. A node whose replica shows that a partition it runs is
//     no longer leased to it at its epoch, or whose lease expired, stops it
//     at once (Runner.Stop).
//   - Fencing. A node that has not been in confirmed contact with the Raft
//     majority for Config.LeaseConfirm (default 2 s), or whose node
//     lease expired, stops every partition and withdraws Assignable.
//
// # Leases and time
//
// Failure is decided in Raft, not in one node's gossip view. Partition
// leases are time-bound leases (Gray & Cheriton, "Leases: an efficient
// fault-tolerant mechanism for distributed file cache consistency", SOSP
// 1989), renewed per node like a Chubby session: every node proposes
// LeaseRenew every LeaseTTL/4, and every LeaseAcquire counts as a renewal
// too. The FSM has no clock; it records only the Raft index of each node's
// last renewal (NodeLease.RenewIndex). The argument needs no synchronised
// clocks, only clocks whose rates differ by less than LeaseSafety per
// LeaseTTL:
//
//   - Holder. A renewal (or acquire) sent at local time s and confirmed by
//     Raft keeps every lease it lists valid until s + TTL − Safety. The
//     holder checks that bound in its reconcile loop (every CheckInterval),
//     before every SQL sink write transaction (the sinks' lease guard,
//     LeaseValid) and before every checkpoint ack; past it the partition
//     stops, its
//     buffered rows are dropped, and it restarts later under a new epoch
//     from its last checkpoint. Expiry is sticky: a late renewal does not
//     revive an epoch.
//   - Taker. A node that sees a holder's RenewIndex r first at local time
//     o (o is after r was applied, so after its send time s) may propose
//     a takeover once r is still the newest it has seen at o + TTL +
//     Safety, naming r (LeaseAcquire.HolderRenewIndex). The FSM grants it
//     only if the holder's RenewIndex is still r: a renewal committed in
//     between wins. So the grant happens after o + TTL + Safety > s + TTL −
//     Safety: the holder stopped writing at least 2 × Safety before.
//
// Gossip is only the placement hint: a node that gossip calls dead but
// that still renews keeps its leases (a gossip-only partition causes no
// ping-pong), and a node gossip calls alive whose renewals stopped is left
// out of placement so that its partitions move (a Raft-only partition).
// Time bounds alone cannot stop a holder that is paused between its check
// and its write (a GC pause, SIGSTOP): that is Kleppmann's argument for
// fencing tokens ("How to do distributed locking", 2016). So every write
// also carries the lease epoch and the stores reject older epochs: SQL rows
// carry an epoch column and an upsert never lets a lower epoch overwrite a
// higher one, checkpoint acks are accepted only at the current epoch, and
// Kafka transactional ids per partition fence zombie producers.
//
// Invariants: a partition's epoch strictly increases with every grant (the
// FSM grants only PrevEpoch+1), so no two grants share an epoch; every
// Runner.Start gets a fresh epoch; a lease is held by one node at any Raft
// index. The FSM keeps the last LeaseHistoryLimit grants, takeovers and
// releases (GET /v1/leases/history) to check this after the fact. An
// operator must not run two processes with the same node id, and must give
// every node the same lease timing or at least timing the others can read
// (each node records its own in its node lease and takers use it).
//
// Assigner.Shutdown drains a node (every partition handed over, leases
// released; control.Node.Leave calls it); Assigner.Close and
// control.Node.Close stop its partitions at once and keep the leases (a hard
// stop, like a kill).
// GET /v1/partitions on any node shows every partition's lease, desired
// owner and its holder's report (state, offset, lag, watermark), gathered
// from each member's GET /v1/local/partitions.
//
// # Usage
//
//	acfg := assign.DefaultConfig()
//	acfg.Runner = runner // starts/hands off/stops partition actors
//	acfg.PartitionCount = func(ctx context.Context, j control.Job) (int32, error) { ... } // from the source topic
//	asg, err := assign.New(node, acfg) // node from cluster.StartNode
//	...
//	defer asg.Close()
//	_ = asg.Shutdown(ctx) // on SIGTERM: hand every partition over first
//
// # Metrics
//
// eddy_partitions_owned, eddy_partition_lease_epoch{eddy_job,partition},
// eddy_partition_handoffs_total, eddy_partition_recoveries_total,
// eddy_partition_recovery_seconds, eddy_partition_fencings_total,
// eddy_partition_fenced, eddy_partition_leases_lost_total,
// eddy_partition_start_failures_total.
package assign
