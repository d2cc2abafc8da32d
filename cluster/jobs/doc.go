// Package jobs runs the jobs stored in the control plane on one node: it is
// the wiring between packages control (Raft leases, checkpoint records),
// cluster/assign (placement, the partition assigner) and actors (partition
// actors, snapshots, restore).
//
// Every `eddy node` starts one Service. It attaches an assign.Assigner to
// the node, with a Runner that keeps, per job, one actors.Runtime: a Kafka
// client, an actor system, the job's sinks and a pebble state store shared
// by the partitions this node runs. The Assigner decides which partitions
// run here (the lease decides, never activation alone); the Runner starts,
// hands off and stops them:
//
//   - Start(lease) restores the partition from the newest usable of: the
//     handoff point in the lease (a live handoff), and its acks of the
//     checkpoints in Raft — only complete checkpoints whose transactions
//     committed when the job has transactional sinks; any acked checkpoint
//     otherwise (SQL sinks are idempotent upserts). Corrupt or missing
//     snapshots fall back to the next point. The source is sought to the
//     point's offset.
//   - Handoff finishes the batch in flight, snapshots the partition to
//     checkpoint storage, flushes the sinks and stops; the point goes into
//     the lease release.
//   - Stop stops at once (fencing, lease lost, kill-like Close).
//
// # Checkpoints
//
// The checkpoint coordinator is checkpoint.CheckpointCoordinator, the one
// eddy run uses, over the Raft ports of package control
// (control.CheckpointIDs, control.CheckpointStore). The leader loop
// (Service.lead) is a thin driver of one coordinator per job: on every
// wake-up it feeds it the job's newest checkpoint record (Observe: in a
// cluster the pending checkpoint and its acks are Raft records, because the
// FSM must judge each ack's lease epoch deterministically) and proposes
// what the coordinator says is due. The driver stays here and not in
// package control because its inputs are here: the job spec (interval, ack
// timeout, retain) and the partition count the Assigner learned from the
// source; control keeps the stores and the deterministic judge. Every
// job's checkpoint.interval the leader appends CheckpointStart{next id of
// the job's Raft counter} once the previous checkpoint completed, and at
// once after one was aborted. Ids never repeat under one job name (the
// counter outlives a cancel, a resubmission and a start from a savepoint),
// so a transactional sink never mistakes a new checkpoint for one it
// committed for an earlier revision. A checkpoint whose acks
// are still missing after the job's checkpoint.ack_timeout (default
// max(3 x interval, 30 s), at most checkpoint.timeout) is aborted in Raft
// (CheckpointAbort: every node sees it; eddy ctl checkpoints shows
// "aborted (missing 1,4: ...)") and the next one starts at once; a
// partition whose snapshot failed takes a new one at that next barrier. With
// transactional sinks the partitions that got the aborted checkpoint's
// barrier are restarted from their last committed checkpoint, which aborts
// their open Kafka transaction instead of leaving it to the broker's
// transaction timeout (keep interval + ack_timeout below it; 60 s by
// default).
// Every node sends a barrier of the newest incomplete checkpoint to each
// partition it runs that has not acked it (a partition started later acks
// it as soon as it runs); each partition snapshots between two batches and
// the node appends CheckpointAck{id, partition, epoch, offset, snapshot},
// which the FSM accepts only under the partition's current lease epoch.
// The FSM completes a checkpoint when all partitions acked; nodes then tell
// the transactional sinks to commit. A new leader continues from the
// records in the log: a leader change loses no ack and no checkpoint.
// The leader also commits the complete checkpoint's offsets to the job's
// Kafka consumer group (source.group_id, actors.OffsetCommitter), so lag
// tools see the job's lag; recovery never reads them.
//
// # Limits
//
// The FSM retains per job what checkpoint.Subsumed keeps with
// checkpoint.retain (the spec's default, 3; the rule of eddy run): the
// newest checkpoint.retain complete checkpoints, as many incomplete or
// aborted ones after them, and every savepoint
// (control.Checkpoint.Savepoint: a checkpoint started on demand by POST
// /v1/jobs/{name}/savepoints, kept until deleted, also when the job is
// cancelled). Every Config.SnapshotGCInterval the leader deletes from
// checkpoint storage the snapshots no retained checkpoint references (below
// the newest checkpoint, whose uploads may be in flight), the handoff
// snapshots of older lease epochs that are not a lease's handoff point, and
// everything but the savepoints of a job deleted while this node knew it (a
// leader elected after the delete does not know the deleted job's storage:
// those snapshots stay, and so do those of a savepoint deleted after the
// job until the job is submitted again). A job submitted with
// control.JobPut.FromSavepoint restores every partition from that savepoint
// or a later checkpoint (control.Job.Restorable), never an older one or a
// handoff point of the earlier revision. Each partition runs as a local actor on the
// node holding its lease; with `eddy node --actor-addr` it is also a
// protoactor-go virtual actor addressable by identity from any node
// (package cluster/virtual). A changed job spec is picked up when the job's
// runtime is recreated (every partition of the job moved away from the
// node), not at once. The metrics of a job register only for the first
// runtime of that job name in the process.
package jobs
