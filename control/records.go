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
	Name        string `json:"name"`
	Spec        string `json:"spec"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
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
	Released    bool   `json:"released,omitempty"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Checkpoint is the record of checkpoint ID of a job: which partitions have
// acknowledged it, with what offset and state snapshot. It is Complete when
// all Partitions partitions have acknowledged.
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
}
