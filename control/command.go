package control

import (
	"encoding/json"
	"fmt"
)

// CommandType is the first byte of every Raft log entry written by eddy; the
// rest of the entry is the command's JSON.
type CommandType uint8

// Command types. Values are part of the on-disk log format: never reuse or
// renumber them.
const (
	TypeKVSet           CommandType = 1
	TypeKVDelete        CommandType = 2
	TypeJobPut          CommandType = 3
	TypeJobDelete       CommandType = 4
	TypeLeaseAcquire    CommandType = 5
	TypeLeaseRelease    CommandType = 6
	TypeCheckpointStart CommandType = 7
	TypeCheckpointAck   CommandType = 8
	TypeSetVoterTarget  CommandType = 9
	TypeLeaseRenew      CommandType = 14
	// 10..13 and 15 are left to lease commands.
	TypeCheckpointAbort CommandType = 16
)

// Command is a state change of the FSM. Validate checks everything that can
// be checked without the current state (syntax, ranges); a command that
// fails it is never proposed.
type Command interface {
	Type() CommandType
	Validate() error
}

// KVSet writes Value under Key.
//
// CAS, when set, makes it a compare-and-set: with *CAS == 0 the write only
// succeeds if the key does not exist (create-only); with *CAS == N > 0 only if
// the key exists with ModifyIndex N. A failed comparison returns ErrConflict
// and changes nothing.
type KVSet struct {
	Key   string  `json:"key"`
	Value string  `json:"value"`
	CAS   *uint64 `json:"cas,omitempty"`
}

// KVDelete removes Key. With CAS set, only if the key's ModifyIndex equals
// *CAS (ErrConflict otherwise). Deleting a missing key is not an error
// (Result.Deleted is false), unless CAS is set.
type KVDelete struct {
	Key string  `json:"key"`
	CAS *uint64 `json:"cas,omitempty"`
}

// JobPut stores or replaces the spec of job Name. Partitions is the job's
// number of device partitions (0..Partitions-1), normally the partition count
// of its source topic; 0 means "not given": the nodes learn it from the
// source themselves (cluster/assign Config.PartitionCount).
type JobPut struct {
	Name       string `json:"name"`
	Spec       string `json:"spec"`
	Partitions int32  `json:"partitions,omitempty"`
	// ResetState drops the job's checkpoints and handoff points with this
	// revision (eddy ctl job submit --allow-state-reset): its partitions
	// start again from source.start_offset with empty state. Needed for a
	// spec whose keyed state is incompatible with the checkpointed one.
	ResetState bool `json:"reset_state,omitempty"`
	// FromSavepoint, when not 0, starts every partition of this revision
	// from that complete savepoint of the job (eddy ctl job submit
	// --from-savepoint): its offsets and state, none of the other
	// checkpoints or handoff points. ErrNotFound when the job has no such
	// savepoint, ErrConflict when it is not complete. Excludes ResetState.
	FromSavepoint uint64 `json:"from_savepoint,omitempty"`
}

// MaxPartitions is the largest partition count a job may declare.
const MaxPartitions = 1 << 16

// JobDelete removes job Name (Result.Deleted reports whether it existed).
type JobDelete struct {
	Name string `json:"name"`
}

// LeaseAcquire asks for the lease of (Job, Partition) for Owner.
//
// Contract: the grant is atomic and deterministic. It succeeds iff the
// current epoch of the partition equals PrevEpoch (0 when no lease was ever
// granted) and one of these holds: no lease exists, the lease is released,
// its owner is Owner (a restarted owner re-acquires and fences its earlier
// incarnation), or Takeover is set and the holder's node lease has not been
// renewed since the renewal the caller saw expire: the holder's
// NodeLease.RenewIndex still equals HolderRenewIndex (0 when the holder
// never renewed). The caller sets Takeover only after that renewal has been
// the holder's newest for the holder's LeaseTTL + LeaseSafety on the
// caller's own clock (see package cluster/assign, Leases and time): the
// FSM never grants a takeover on a node's gossip view alone. On success the
// lease is {Owner, PrevEpoch+1, Released: false}, and the acquire counts as
// a renewal of Owner's node lease. Otherwise ErrConflict, and the caller
// re-reads the lease and decides again.
type LeaseAcquire struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	PrevEpoch uint64 `json:"prev_epoch"`
	Takeover  bool   `json:"takeover,omitempty"`
	// HolderRenewIndex is, for a takeover, the holder's NodeLease.RenewIndex
	// that the caller saw expire.
	HolderRenewIndex uint64 `json:"holder_renew_index,omitempty"`
	// TTLMs and SafetyMs are Owner's lease timing (cluster/assign
	// Config.LeaseTTL and LeaseSafety, in ms), recorded in its node lease
	// like a renewal.
	TTLMs    int64 `json:"ttl_ms,omitempty"`
	SafetyMs int64 `json:"safety_ms,omitempty"`
}

// LeaseRenew renews the node lease of Owner: the time bound of every
// partition lease Owner holds (Gray & Cheriton's leases, one record per node
// like a Chubby session). It always succeeds; it sets Owner's
// NodeLease{RenewIndex: the entry's index, TTLMs, SafetyMs} and returns in
// Result.Leases every lease Owner holds (unreleased), so that the holder
// extends exactly the leases Raft still says are its own. TTLMs and SafetyMs
// tell the other nodes how long to wait before a takeover.
type LeaseRenew struct {
	Owner    string `json:"owner"`
	TTLMs    int64  `json:"ttl_ms"`
	SafetyMs int64  `json:"safety_ms"`
}

// LeaseRelease gives the lease of (Job, Partition) up. It succeeds iff Owner
// holds it at Epoch and it is not yet released; the epoch is kept, so the
// next LeaseAcquire uses PrevEpoch = Epoch. ErrConflict otherwise.
//
// Handoff, when set, is the point from which the next owner resumes (the
// owner drained its last batch, snapshotted and committed up to it); it is
// stored in Lease.Handoff with Epoch = the released epoch (the Epoch given
// in Handoff is ignored). A release without Handoff keeps the lease's
// earlier handoff point.
type LeaseRelease struct {
	Job       string        `json:"job"`
	Partition int32         `json:"partition"`
	Owner     string        `json:"owner"`
	Epoch     uint64        `json:"epoch"`
	Handoff   *HandoffPoint `json:"handoff,omitempty"`
}

// CheckpointStart opens checkpoint ID of Job for Partitions partitions. ID
// must be greater than every id the job's name ever used, also by deleted
// revisions (ErrConflict otherwise; View.NextCheckpointID, the job's
// CheckpointCounter, which the start raises to ID). An earlier checkpoint still incomplete is aborted ("superseded
// by checkpoint ID").
//
// Retention: after the start, and again when the checkpoint completes
// (Checkpoint.Retain), the FSM applies checkpoint.Subsumed, the rule of eddy
// run too: it keeps the newest Retain complete checkpoints, the newest
// Retain incomplete or aborted ones after the newest complete checkpoint or
// savepoint (this one among them), and every savepoint not aborted; a run
// of incomplete or aborted checkpoints never evicts a complete one.
// Everything else goes. Retain 0 means RetainCheckpoints; it is the job
// spec's checkpoint.retain when the spec sets it.
type CheckpointStart struct {
	Job        string `json:"job"`
	ID         uint64 `json:"id"`
	Partitions int32  `json:"partitions"`
	StartedMs  int64  `json:"started_ms"`
	Retain     int    `json:"retain,omitempty"`
	// Savepoint makes it a savepoint (Checkpoint.Savepoint); the job must
	// exist (ErrNotFound). A start that is not a savepoint while the
	// newest checkpoint is a savepoint in progress is refused
	// (ErrConflict): a periodic checkpoint never supersedes a savepoint.
	Savepoint bool `json:"savepoint,omitempty"`
	// Cancel, with Savepoint, stops the job with the savepoint: the ack
	// that completes it also cancels the job (as JobCancel, in the same
	// Raft entry), so the job's last state is the savepoint's.
	Cancel bool `json:"cancel,omitempty"`
}

// MaxRetainCheckpoints bounds CheckpointStart.Retain.
const MaxRetainCheckpoints = 1000

// CheckpointAbort gives up checkpoint ID of Job: it takes no more acks and
// never completes; the partitions that had not acked are recorded in
// Checkpoint.Missing, Reason in Checkpoint.AbortReason. The coordinator
// aborts a checkpoint whose acks are missing past its ack timeout, then
// starts the next one. ErrNotFound for an unknown checkpoint, ErrConflict
// for a complete one; aborting an aborted checkpoint is a no-op success.
type CheckpointAbort struct {
	Job    string `json:"job"`
	ID     uint64 `json:"id"`
	Reason string `json:"reason"`
}

// CheckpointAck records that Partition has checkpointed ID: its state
// snapshot is at Snapshot and it resumes from Offset. It is fenced: accepted
// only if the partition's lease is held (not released) at exactly Epoch, and
// the checkpoint exists and is not complete; ErrConflict otherwise
// (ErrNotFound for an unknown checkpoint). Repeating an identical ack is a
// no-op success. The checkpoint completes when every partition has acked.
type CheckpointAck struct {
	Job       string `json:"job"`
	ID        uint64 `json:"id"`
	Partition int32  `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	Offset    int64  `json:"offset"`
	Snapshot  string `json:"snapshot"`
}

// SetVoterTarget sets Settings.VoterTarget (1..9).
type SetVoterTarget struct {
	Voters int `json:"voters"`
}

// RetainCheckpoints is the retain of a CheckpointStart that sets none: how
// many complete checkpoints per job the FSM keeps, and how many incomplete
// ones after them (see CheckpointStart).
const RetainCheckpoints = 10

func (KVSet) Type() CommandType           { return TypeKVSet }
func (KVDelete) Type() CommandType        { return TypeKVDelete }
func (JobPut) Type() CommandType          { return TypeJobPut }
func (JobDelete) Type() CommandType       { return TypeJobDelete }
func (LeaseAcquire) Type() CommandType    { return TypeLeaseAcquire }
func (LeaseRelease) Type() CommandType    { return TypeLeaseRelease }
func (CheckpointStart) Type() CommandType { return TypeCheckpointStart }
func (CheckpointAck) Type() CommandType   { return TypeCheckpointAck }
func (SetVoterTarget) Type() CommandType  { return TypeSetVoterTarget }
func (LeaseRenew) Type() CommandType      { return TypeLeaseRenew }
func (CheckpointAbort) Type() CommandType { return TypeCheckpointAbort }

// Validate implements Command.
func (c KVSet) Validate() error {
	if err := ValidateKey(c.Key); err != nil {
		return err
	}
	return ValidateValue(c.Key, c.Value)
}

// Validate implements Command.
func (c KVDelete) Validate() error { return ValidateKey(c.Key) }

// Validate implements Command.
func (c JobPut) Validate() error {
	if err := ValidateName("job", c.Name); err != nil {
		return err
	}
	if c.Partitions < 0 || c.Partitions > MaxPartitions {
		return fmt.Errorf("%w: job %q: partitions must be in 0..%d (0 = from the source), got %d", ErrInvalid, c.Name, MaxPartitions, c.Partitions)
	}
	if c.Spec == "" {
		return fmt.Errorf("%w: job %q: spec must not be empty", ErrInvalid, c.Name)
	}
	if c.ResetState && c.FromSavepoint != 0 {
		return fmt.Errorf("%w: job %q: reset state and from savepoint %d exclude each other", ErrInvalid, c.Name, c.FromSavepoint)
	}
	return ValidateValue("jobs/"+c.Name, c.Spec)
}

// Validate implements Command.
func (c JobDelete) Validate() error { return ValidateName("job", c.Name) }

func validateLeaseKey(job string, partition int32, owner string) error {
	if err := ValidateName("job", job); err != nil {
		return err
	}
	if partition < 0 {
		return fmt.Errorf("%w: partition must be >= 0, got %d", ErrInvalid, partition)
	}
	if owner == "" {
		return fmt.Errorf("%w: lease owner (node id) must not be empty", ErrInvalid)
	}
	return nil
}

// Validate implements Command.
func (c LeaseAcquire) Validate() error {
	if err := validateLeaseKey(c.Job, c.Partition, c.Owner); err != nil {
		return err
	}
	return validateLeaseTiming(c.TTLMs, c.SafetyMs, true)
}

// Validate implements Command.
func (c LeaseRenew) Validate() error {
	if c.Owner == "" {
		return fmt.Errorf("%w: lease owner (node id) must not be empty", ErrInvalid)
	}
	return validateLeaseTiming(c.TTLMs, c.SafetyMs, false)
}

// validateLeaseTiming checks a node's declared lease timing; zero is allowed
// in an acquire (older proposers; the taker then uses its own timing).
func validateLeaseTiming(ttl, safety int64, zeroOK bool) error {
	if zeroOK && ttl == 0 && safety == 0 {
		return nil
	}
	if ttl <= 0 || safety <= 0 || 2*safety >= ttl {
		return fmt.Errorf("%w: lease timing needs ttl > 2 × safety > 0, got ttl %d ms, safety %d ms", ErrInvalid, ttl, safety)
	}
	return nil
}

// Validate implements Command.
func (c LeaseRelease) Validate() error {
	if err := validateLeaseKey(c.Job, c.Partition, c.Owner); err != nil {
		return err
	}
	if c.Epoch == 0 {
		return fmt.Errorf("%w: lease epoch must be >= 1", ErrInvalid)
	}
	if h := c.Handoff; h != nil && (h.Offset < 0 || h.Snapshot == "") {
		return fmt.Errorf("%w: handoff point needs offset >= 0 and a snapshot location", ErrInvalid)
	}
	return nil
}

// Validate implements Command.
func (c CheckpointStart) Validate() error {
	if err := ValidateName("job", c.Job); err != nil {
		return err
	}
	if c.ID == 0 {
		return fmt.Errorf("%w: checkpoint id must be >= 1", ErrInvalid)
	}
	if c.Partitions <= 0 {
		return fmt.Errorf("%w: checkpoint partitions must be >= 1, got %d", ErrInvalid, c.Partitions)
	}
	if c.Retain < 0 || c.Retain > MaxRetainCheckpoints {
		return fmt.Errorf("%w: checkpoint retain must be in 0..%d (0 = %d), got %d", ErrInvalid, MaxRetainCheckpoints, RetainCheckpoints, c.Retain)
	}
	if c.Cancel && !c.Savepoint {
		return fmt.Errorf("%w: cancel applies to a savepoint only (stop with savepoint)", ErrInvalid)
	}
	return nil
}

// Validate implements Command.
func (c CheckpointAbort) Validate() error {
	if err := ValidateName("job", c.Job); err != nil {
		return err
	}
	if c.ID == 0 {
		return fmt.Errorf("%w: checkpoint id must be >= 1", ErrInvalid)
	}
	if len(c.Reason) > 1024 {
		return fmt.Errorf("%w: abort reason is %d bytes, at most 1024", ErrInvalid, len(c.Reason))
	}
	return nil
}

// Validate implements Command.
func (c CheckpointAck) Validate() error {
	if err := ValidateName("job", c.Job); err != nil {
		return err
	}
	if c.ID == 0 || c.Epoch == 0 || c.Partition < 0 || c.Offset < 0 {
		return fmt.Errorf("%w: checkpoint ack needs id >= 1, epoch >= 1, partition >= 0, offset >= 0", ErrInvalid)
	}
	return nil
}

// Validate implements Command.
func (c SetVoterTarget) Validate() error {
	if c.Voters < 1 || c.Voters > 9 {
		return fmt.Errorf("%w: voter target must be in 1..9, got %d", ErrInvalid, c.Voters)
	}
	return nil
}

// EncodeCommand returns the log entry of c: its type byte then its JSON.
func EncodeCommand(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("control: encode %T: %w", c, err)
	}
	out := make([]byte, 0, len(body)+1)
	out = append(out, byte(c.Type()))
	return append(out, body...), nil
}

// DecodeCommand parses a log entry written by EncodeCommand. Unknown types
// and bad JSON return an error wrapping ErrInvalid.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalid)
	}
	var c Command
	switch CommandType(data[0]) {
	case TypeKVSet:
		c = &KVSet{}
	case TypeKVDelete:
		c = &KVDelete{}
	case TypeJobPut:
		c = &JobPut{}
	case TypeJobDelete:
		c = &JobDelete{}
	case TypeLeaseAcquire:
		c = &LeaseAcquire{}
	case TypeLeaseRelease:
		c = &LeaseRelease{}
	case TypeCheckpointStart:
		c = &CheckpointStart{}
	case TypeCheckpointAck:
		c = &CheckpointAck{}
	case TypeSetVoterTarget:
		c = &SetVoterTarget{}
	case TypeLeaseRenew:
		c = &LeaseRenew{}
	case TypeCheckpointAbort:
		c = &CheckpointAbort{}
	case TypeJobReport:
		c = &JobReport{}
	case TypeJobCancel:
		c = &JobCancel{}
	case TypeSavepointDelete:
		c = &SavepointDelete{}
	default:
		return nil, fmt.Errorf("%w: unknown command type %d", ErrInvalid, data[0])
	}
	if err := json.Unmarshal(data[1:], c); err != nil {
		return nil, fmt.Errorf("%w: command type %d: %v", ErrInvalid, data[0], err)
	}
	return deref(c), nil
}

// deref turns the pointer filled by DecodeCommand into the value type, so
// that decoded commands compare equal to the ones encoded.
func deref(c Command) Command {
	switch v := c.(type) {
	case *KVSet:
		return *v
	case *KVDelete:
		return *v
	case *JobPut:
		return *v
	case *JobDelete:
		return *v
	case *LeaseAcquire:
		return *v
	case *LeaseRelease:
		return *v
	case *CheckpointStart:
		return *v
	case *CheckpointAck:
		return *v
	case *SetVoterTarget:
		return *v
	case *LeaseRenew:
		return *v
	case *CheckpointAbort:
		return *v
	case *JobReport:
		return *v
	case *JobCancel:
		return *v
	case *SavepointDelete:
		return *v
	}
	return c
}
