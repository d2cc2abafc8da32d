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
// ({"company","site","threshold"}), validated on write. Package cluster's
// broadcast bridge (cluster.WithBridge) feeds them from a Kafka topic on
// the leader, through Apply; the node starts and stops it with its
// leadership as a LeaderService (Node.RunWhileLeader). Node.Devices (and
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
// # Leases
//
// The FSM holds the partition leases and each node's node lease
// (LeaseAcquire, LeaseRenew, LeaseRelease; NodeLease.RenewIndex is the Raft
// index of the node's last renewal — the FSM has no clock). It grants only
// PrevEpoch+1, so a partition's epoch strictly increases with every grant
// and a lease is held by one node at any Raft index; a takeover is granted
// only while the holder's RenewIndex is still the one the taker names
// (LeaseAcquire.HolderRenewIndex), so a renewal committed in between wins;
// checkpoint acks and job reports are accepted only at the current epoch.
// The FSM keeps the last LeaseHistoryLimit grants, takeovers and releases
// (GET /v1/leases/history; CheckLeaseHistory checks the single-holder
// invariant on them). The protocol that uses them — placement, acquire,
// handoff, takeover, fencing and the lease timing — is the partition
// assigner's, in package cluster/assign; a node reads it back through the
// PartitionSource port (Node.AttachPartitions): GET /v1/partitions on any
// node shows every partition's lease, desired owner and its holder's
// report (state, offset, lag, watermark), gathered from each member's GET
// /v1/local/partitions, and Node.Leave hands the node's partitions off
// first.
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
// The HTTP API is documented on Node.Handler; control/client is its Go
// client and `eddy ctl` its command line.
//
// # Metrics
//
// eddy_raft_state, eddy_raft_leader_changes_total, eddy_raft_apply_seconds,
// eddy_raft_last_index, eddy_raft_commit_index, eddy_raft_applied_index,
// eddy_raft_fsm_keys, eddy_raft_fsm_bytes, eddy_raft_devices,
// eddy_raft_fsm_restores_total, eddy_raft_autopilot_actions_total{action},
// eddy_control_http_requests_total{method,code}; the partition metrics are
// cluster/assign's and the membership's package cluster's.
package control
