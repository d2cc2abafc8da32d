package control

// KVEntry is one configuration key/value with its revisions. Revisions are
// Raft log indexes: CreateIndex is the index of the write that created the
// key (a delete followed by a put creates it again), ModifyIndex the index
// of the last write. ModifyIndex is the revision compared by
// compare-and-set. Entries handed out by this package are immutable.
type KVEntry struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Job is a stored job spec (the YAML text of a job declaration, opaque to the
// control plane).
type Job struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
	// Partitions is the number of device partitions, 0..Partitions-1; 0 =
	// not declared, the nodes ask the source (cluster/assign Config.PartitionCount).
	Partitions  int32  `json:"partitions,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	// StateReset is set when this revision was submitted with
	// JobPut.ResetState: its partitions restore no state of earlier ones.
	StateReset bool `json:"state_reset,omitempty"`
	// FromSavepoint is the savepoint (a Checkpoint id with Savepoint set)
	// the job's partitions restore from, set by the revision submitted
	// with JobPut.FromSavepoint and kept by later revisions; 0 = none.
	FromSavepoint uint64 `json:"from_savepoint,omitempty"`
	// RestoreIndex is the Raft index of the revision that last decided
	// where the job's state comes from: its creation, a JobPut with
	// ResetState or with FromSavepoint. Checkpoints started at or before
	// it are not restore points (except savepoint FromSavepoint); 0 (a
	// record written before savepoints existed) = every checkpoint is.
	RestoreIndex uint64 `json:"restore_index,omitempty"`
}

// Restorable reports whether the partitions of j may restore from cp.
func (j Job) Restorable(cp Checkpoint) bool {
	return cp.StartIndex > j.RestoreIndex || cp.Savepoint && cp.ID == j.FromSavepoint
}

// Lease is the ownership record of one device partition of one job: only
// Owner may process or write for the partition while the lease is held, and
// Epoch is the fencing token its sink writes and checkpoint acks carry.
// Epochs of a partition only grow: every grant is the previous epoch + 1.
type Lease struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	// Released is set when the owner gave the lease up (hand-off); the
	// next acquire needs no takeover.
	Released bool `json:"released,omitempty"`
	// Handoff is the last handoff point recorded by a release (nil if none
	// ever was). It survives later acquires, so that every following owner
	// can compare it with the last complete checkpoint and restore from the
	// newer of the two (the higher offset).
	Handoff     *HandoffPoint `json:"handoff,omitempty"`
	ModifyIndex uint64        `json:"modify_index"`
}

// HandoffPoint is where a partition resumes after a live handoff: its owner
// finished its last batch, snapshotted the partition's state to Snapshot and
// committed its sinks up to Offset, then released the lease of Epoch.
type HandoffPoint struct {
	// Epoch of the lease that was released with this point (set by the FSM).
	Epoch uint64 `json:"epoch"`
	// Offset is the source offset from which the next owner consumes.
	Offset int64 `json:"offset"`
	// Snapshot locates the state snapshot in checkpoint storage.
	Snapshot string `json:"snapshot"`
}

// NodeLease is the time bound of every partition lease a node holds: the
// node renews it through Raft (LeaseRenew, and every LeaseAcquire it makes)
// about every TTL/4. The FSM holds no clock: RenewIndex is the only thing
// other nodes compare. A node that sees RenewIndex unchanged for TTL +
// Safety on its own clock may take the node's partition leases over (see
// package cluster/assign, Leases and time).
type NodeLease struct {
	Node string `json:"node"`
	// RenewIndex is the Raft index of the node's last renewal.
	RenewIndex uint64 `json:"renew_index"`
	// TTLMs and SafetyMs are the node's lease timing, ms.
	TTLMs    int64 `json:"ttl_ms"`
	SafetyMs int64 `json:"safety_ms"`
	// RenewedMs is the leader's append time of the renewal (Unix ms;
	// informational, never used to decide).
	RenewedMs int64 `json:"renewed_ms,omitempty"`
}

// Lease event kinds (LeaseEvent.Kind).
const (
	// LeaseGranted: an acquire of a free, released or own lease.
	LeaseGranted = "acquire"
	// LeaseTakenOver: an acquire with Takeover of a lease another node
	// still held, after that node's lease expired (it stopped renewing).
	LeaseTakenOver = "takeover"
	// LeaseReleased: the holder gave the lease up.
	LeaseReleased = "release"
)

// LeaseEvent is one change of a lease, as applied by the FSM: the lease
// history that proves that every partition had one holder at a time. The
// FSM keeps the last LeaseHistoryLimit events (all jobs together).
type LeaseEvent struct {
	// Index is the Raft index of the command: events are totally ordered.
	Index uint64 `json:"index"`
	// TimeMs is when the leader appended the command to its log (Unix ms,
	// the leader's clock); 0 when unknown.
	TimeMs    int64  `json:"time_ms"`
	Kind      string `json:"kind"` // LeaseGranted, LeaseTakenOver or LeaseReleased
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	// PrevOwner is the holder an acquire replaced ("" if the lease was
	// free or released).
	PrevOwner string `json:"prev_owner,omitempty"`
}

// LeaseHistoryLimit is how many lease events the FSM keeps.
const LeaseHistoryLimit = 10000

// Checkpoint is the record of checkpoint ID of a job: which partitions have
// acknowledged it, with what offset and state snapshot. It is Complete when
// all Partitions partitions have acknowledged, Aborted when the coordinator
// gave up on it (CheckpointAbort) or a newer checkpoint started before it
// completed; an aborted checkpoint takes no more acks and never completes.
type Checkpoint struct {
	Job        string `json:"job"`
	ID         uint64 `json:"id"`
	Partitions int32  `json:"partitions"`
	// StartedMs is when the coordinator started it (Unix ms, proposer's
	// clock; informational).
	StartedMs int64 `json:"started_ms"`
	// Acks sorted by partition, at most one per partition.
	Acks          []PartitionAck `json:"acks"`
	Complete      bool           `json:"complete"`
	StartIndex    uint64         `json:"start_index"`
	CompleteIndex uint64         `json:"complete_index,omitempty"`
	// CompletedMs is when the last ack completed it: the leader's append
	// time of that ack (Unix ms, informational); 0 while incomplete or
	// when unknown (records written before this field existed).
	CompletedMs int64 `json:"completed_ms,omitempty"`
	// Aborted is set by CheckpointAbort, or by the CheckpointStart of a
	// newer checkpoint while this one was incomplete.
	Aborted bool `json:"aborted,omitempty"`
	// AbortReason says why, e.g. "acks missing after 30s" or "superseded
	// by checkpoint 12".
	AbortReason string `json:"abort_reason,omitempty"`
	// Missing lists the partitions that had not acked when it was
	// aborted, ascending.
	Missing    []int32 `json:"missing,omitempty"`
	AbortIndex uint64  `json:"abort_index,omitempty"`
	// Savepoint marks a checkpoint taken on demand (POST
	// /v1/jobs/{name}/savepoints): retention never evicts it once complete,
	// the job's deletion keeps it, and its snapshots stay in checkpoint
	// storage until SavepointDelete.
	Savepoint bool `json:"savepoint,omitempty"`
	// CancelJob: the job is cancelled when this savepoint completes
	// (CheckpointStart.Cancel, stop with savepoint).
	CancelJob bool `json:"cancel_job,omitempty"`
	// Retain is the CheckpointStart's Retain: the retention applied when
	// it completes (0 = RetainCheckpoints).
	Retain int `json:"retain,omitempty"`
}

// PartitionAck is one partition's acknowledgement of a checkpoint.
type PartitionAck struct {
	Partition int32 `json:"partition"`
	// Epoch of the partition's lease when the ack was made (fencing token).
	Epoch uint64 `json:"epoch"`
	// Offset is the source offset from which the partition resumes when
	// restored from this checkpoint.
	Offset int64 `json:"offset"`
	// Snapshot locates the partition's state snapshot in checkpoint storage.
	Snapshot string `json:"snapshot"`
}

// Settings are cluster-wide control-plane settings kept in the FSM.
type Settings struct {
	// VoterTarget is the number of Raft voters autopilot keeps (by promoting
	// healthy non-voters); set once from --bootstrap-expect by the first
	// leader. 0 = unset (autopilot only removes dead servers).
	VoterTarget int `json:"voter_target"`
}

// Result is what a successfully applied Command returns. Only the fields
// relevant to the command are set.
type Result struct {
	// Index is the Raft log index at which the command was applied.
	Index uint64 `json:"index"`
	// Entry: the written entry (KVSet) or the entry that was deleted
	// (KVDelete, when Deleted).
	Entry *KVEntry `json:"entry,omitempty"`
	// Deleted reports whether a KVDelete or JobDelete removed something.
	Deleted    bool        `json:"deleted"`
	Job        *Job        `json:"job,omitempty"`
	Lease      *Lease      `json:"lease,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Leases: LeaseRenew's every lease the owner holds (unreleased).
	Leases []Lease `json:"leases,omitempty"`
}
