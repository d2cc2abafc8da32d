// Package control is eddy's control plane, the replicated JobManager: a Raft
// group (hashicorp/raft, raft-boltdb/v2 log and stable store, file snapshot
// store, TCP transport) whose FSM holds the cluster's configuration —
// broadcast device data and other keys, job specs, partition leases and
// checkpoint records — and an HTTP/JSON API served by every node. There is
// no external coordinator.
//
// # Cluster
//
// Every node runs a Node (StartNode). Nodes find each other through the
// membership a Node sees through its Members port (Config.Members; eddy node
// and cluster.StartNode use package cluster's memberlist gossip). The first Config.BootstrapExpect nodes to meet form the
// voter set: the one with the lowest id among them calls BootstrapCluster
// with all of them, the others are replicated to (Consul's bootstrap-expect).
// Nodes that join later become non-voters, added by the leader, so every node
// holds a full replica and reads broadcast state locally. A node with Raft
// state never bootstraps again; it recovers from its data dir.
//
// The leader reconciles membership (autopilot, see AutopilotConfig): new
// members are added as non-voters; a server is removed only when both
// gossip and the leader's own Raft heartbeats have called it dead for
// DeadServerTimeout (default 30 s) and the healthy voters left keep a
// majority of the voter target, so a leader cut off from gossip alone never
// removes healthy voters; a dead voter is first replaced by a healthy
// non-voter, and healthy non-voters are promoted while there are fewer than
// Settings.VoterTarget voters (set from --bootstrap-expect). A node that
// leaves (Node.Leave, SIGTERM with --leave-on-terminate) is removed from the
// Raft configuration under the same quorum rule.
//
// # Consistency
//
//   - Writes go through the Raft log. A follower forwards them to the leader
//     (POST /v1/internal/apply) and relays the answer. An acknowledged write
//     is committed on a majority and fsynced, so it survives any minority of
//     node deaths.
//   - Reads are served from the answering node's replica by default; they
//     may lag the leader by a few CommitTimeouts, except that a node never
//     misses a write acknowledged through itself (read-your-writes).
//   - ?consistent reads are linearizable: served by the leader after it has
//     committed an entry of its term, confirmed its leadership with a quorum
//     (VerifyLeader) and applied up to the commit index it read before (the
//     ReadIndex protocol, Raft thesis §6.4). Followers proxy them to the
//     leader.
//   - Compare-and-set is by revision: every key has CreateIndex and
//     ModifyIndex, the Raft indexes of its creation and last write. cas=0
//     means create-only.
//   - Errors tell whether a write may have happened: ErrNoLeader and
//     ErrNotLeader (HTTP 503) mean it certainly did not and may be retried;
//     ErrUnknownOutcome (HTTP 504) means it may have.
//
// Watches are Consul-style blocking queries: a read with ?index=N&wait=D
// returns when the key (or any key under the prefix) changes after index N,
// or after D. The index to pass back is in the X-Eddy-Index header and in
// KVList.Index.
//
// # Broadcast state
//
// Keys devices/<pboxid> hold the JSON of an operators.DeviceInfo
// ({"company","site","threshold"}), validated on write. Node.Devices (and
// FSM.Devices) is an operators.DeviceLookup over the local replica: an
// atomic load of an immutable map that the FSM rebuilds after each applied
// batch that touched a devices/ key, so a running job sees a change as soon
// as its node has applied it (typically within tens of milliseconds).
//
// # Job lifecycle
//
// A job spec is checked before it is stored (Config.ValidateJob; eddy node
// wires jobs.ValidateSpec: 400 for a spec every node would refuse, 409 for
// an update whose keyed state is incompatible with the checkpoints unless
// JobPut.ResetState). Each job has a JobStatus beside its spec: the FSM
// derives its state (JobSubmitted, JobRunning, JobFinished, JobFailed,
// JobCancelled) from the partitions' last JobReport — running, finished at
// its end offset, or failed with the error — which the lease holder sends
// on every change, fenced by its lease epoch. JobCancel removes the spec
// (the holders hand their partitions off) and keeps the status. GET
// /v1/jobs[/{name}] answer JobInfo; spec passwords are masked there.
//
// # Placement, leases and fencing
//
// Every node that processes device partitions runs an Assigner
// (NewAssigner) with a Runner that starts and stops partitions. Assigners do
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
//     majority for AssignerConfig.LeaseConfirm (default 2 s), or whose node
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
// released; Node.Leave calls it); Assigner.Close and Node.Close stop its
// partitions at once and keep the leases (a hard stop, like a kill).
// GET /v1/partitions on any node shows every partition's lease, desired
// owner and its holder's report (state, offset, lag, watermark), gathered
// from each member's GET /v1/local/partitions.
//
// # Usage
//
//	cfg := control.DefaultConfig()
//	cfg.ID, cfg.DataDir = "n1", "/var/lib/eddy/n1"
//	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "10.0.0.1:8080", "10.0.0.1:8300", "10.0.0.1:8301"
//	cfg.BootstrapExpect, cfg.Join = 3, []string{"10.0.0.2:8301", "10.0.0.3:8301"}
//	node, err := cluster.StartNode(cfg, cluster.DefaultConfig()) // sets cfg.Members to gossip
//	...
//	defer node.Close()
//	res, err := node.Apply(ctx, control.KVSet{Key: "devices/17079", Value: `{"company":"acme","site":"dyce"}`})
//	info, ok := node.Devices().Device("17079")
//
//	acfg := control.DefaultAssignerConfig()
//	acfg.Runner = runner // starts/hands off/stops partition actors
//	acfg.PartitionCount = func(ctx context.Context, j control.Job) (int32, error) { ... } // from the source topic
//	asg, err := control.NewAssigner(node, acfg)
//	...
//	defer asg.Close()
//	_ = asg.Shutdown(ctx) // on SIGTERM: hand every partition over first
//
// The HTTP API is documented on Node.Handler; control/client is its Go
// client and `eddy ctl` its command line.
//
// # Metrics
//
// eddy_raft_state, eddy_raft_leader_changes_total, eddy_raft_apply_seconds,
// eddy_raft_last_index, eddy_raft_commit_index, eddy_raft_applied_index,
// eddy_raft_fsm_keys, eddy_raft_fsm_bytes, eddy_raft_devices,
// eddy_raft_fsm_restores_total, eddy_raft_autopilot_actions_total{action},
// eddy_control_http_requests_total{method,code}; from an Assigner
// eddy_partitions_owned, eddy_partition_lease_epoch{eddy_job,partition},
// eddy_partition_handoffs_total, eddy_partition_recoveries_total,
// eddy_partition_recovery_seconds, eddy_partition_fencings_total,
// eddy_partition_fenced, eddy_partition_leases_lost_total,
// eddy_partition_start_failures_total; and from package cluster
// eddy_members{status}.
package control
