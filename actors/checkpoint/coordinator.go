package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

var (
	// ErrUnknownCheckpoint is returned for an id that is not in progress.
	ErrUnknownCheckpoint = errors.New("checkpoint: not in progress")
	// ErrBadAck is returned for an ack of a partition the checkpoint does
	// not include, or a second, different ack of the same partition.
	ErrBadAck = errors.New("checkpoint: bad ack")
	// ErrPending is returned by CheckpointCoordinator.Trigger while another
	// checkpoint is in progress (one at a time).
	ErrPending = errors.New("checkpoint: a checkpoint is in progress")
)

// CheckpointIDCounter hands out checkpoint and savepoint ids (Flink's
// CheckpointIDCounter). Ids of one job only grow: Next returns an id greater
// than every id the job used before, also across restarts, cancel and
// resubmit, and a run from a savepoint, so that a transactional sink that
// committed checkpoint n of an earlier run never sees a new checkpoint n
// again. StorageIDCounter is the counter of eddy run (the largest id in
// checkpoint storage); the cluster's is in Raft (control.CheckpointIDs).
type CheckpointIDCounter interface {
	// Next returns the next id; >= 1.
	Next(ctx context.Context) (uint64, error)
}

// CompletedCheckpointStore holds the complete checkpoints and savepoints of
// one job (Flink's CompletedCheckpointStore): what a partition may restore
// from. StorageCheckpointStore keeps them as manifests in checkpoint storage
// (eddy run); the cluster's keeps them as Raft records
// (control.CheckpointStore).
type CompletedCheckpointStore interface {
	// Add stores m, the manifest of a checkpoint or savepoint whose every
	// partition acked: once it returns nil, m is complete and listed by
	// Completed.
	Add(ctx context.Context, m *Manifest) error
	// Completed returns the complete checkpoints and savepoints, newest
	// first: the candidates to restore from.
	Completed(ctx context.Context) ([]*Manifest, error)
	// Savepoint returns complete savepoint id (an error wrapping
	// ErrNotExist when there is none).
	Savepoint(ctx context.Context, id uint64) (*Manifest, error)
	// Subsume removes what retention (Subsumed, with retain >= 1) no
	// longer keeps: it keeps the newest retain complete checkpoints, each
	// partition's restore point, the newest retain incomplete ones after
	// them and the savepoints (until deleted). It returns the names of
	// what it removed.
	Subsume(ctx context.Context, retain int) ([]string, error)
}

// CoordinatorConfig configures a CheckpointCoordinator.
type CoordinatorConfig struct {
	// Job is the job name; required.
	Job string
	// Partitions are the device partitions every checkpoint must include;
	// at least one.
	Partitions []int32
	// Interval between the starts of two periodic checkpoints; > 0.
	Interval time.Duration
	// AckTimeout: a checkpoint whose acks are still missing this long after
	// its start is aborted (and the next one is due at once); > 0.
	AckTimeout time.Duration
	// Retain is how many complete checkpoints to keep (see Subsumed);
	// >= 1; default 3. Savepoints are kept until deleted.
	Retain int
	// Transactional: the job writes to transactional sinks (see
	// Manifest.Transactional).
	Transactional bool
}

// DefaultRetain is the default CoordinatorConfig.Retain.
const DefaultRetain = 3

// PendingCheckpoint is the checkpoint in progress.
type PendingCheckpoint struct {
	ID      uint64
	Kind    Kind
	Final   bool // the last checkpoint of a bounded run (Manifest.Final)
	Started time.Time
	// Acks by partition; read-only for callers.
	Acks map[int32]PartitionAck
}

// Missing returns the partitions of partitions that have not acked p,
// ascending.
func (p *PendingCheckpoint) Missing(partitions []int32) []int32 {
	var out []int32
	for _, q := range partitions {
		if _, ok := p.Acks[q]; !ok {
			out = append(out, q)
		}
	}
	return out
}

// Decision is what a CheckpointCoordinator says is due (Due).
type Decision struct {
	// Trigger: the next periodic checkpoint is due.
	Trigger bool
	// Expired is the id of the checkpoint in progress whose ack timeout
	// passed: abort it; 0 none.
	Expired uint64
}

// Observed is a checkpoint record kept outside the coordinator (the
// cluster's Raft records), fed to CheckpointCoordinator.Observe.
type Observed struct {
	ID       uint64
	Kind     Kind
	Started  time.Time
	Complete bool
	Aborted  bool
	// Acks of the partitions that acked it (the FSM accepted them under
	// each partition's lease epoch).
	Acks []PartitionAck
}

// CheckpointCoordinator runs the checkpoint protocol of one job (Flink's
// CheckpointCoordinator; Chandy–Lamport barriers without alignment since a
// partition has one input), in eddy run and on the cluster's Raft leader:
//
//  1. Due says when the next periodic checkpoint starts (Interval after
//     the start of the previous one; at once after an ack timeout) and
//     which checkpoint's ack timeout passed. One checkpoint is in
//     progress at a time; savepoints are triggered on demand.
//  2. Trigger(kind, final) numbers checkpoint n with the
//     CheckpointIDCounter; the mode sends a barrier for n to every
//     partition. Each partition, between two batches, pre-commits its
//     sinks, snapshots its state and acks n with its source offset and the
//     snapshot's size and checksum.
//  3. Ack collects the acks; the one that completes the set stores the
//     manifest in the CompletedCheckpointStore — n is complete — and
//     returns it; the mode then lets transactional sinks commit n and
//     calls Subsume (retention).
//  4. Abort(n) gives n up (a partition failed, or its ack timeout passed).
//
// The pending-ack side is fed by the mode: eddy run calls Trigger and Ack
// with in-process acks; on the cluster the pending checkpoint and its acks
// are Raft records (the FSM is the judge of lease epochs and completes a
// checkpoint in the apply of its last ack), and the leader feeds the newest
// record to Observe. Safe for concurrent use.
type CheckpointCoordinator struct {
	cfg   CoordinatorConfig
	ids   CheckpointIDCounter
	store CompletedCheckpointStore

	mu      sync.Mutex
	pending *PendingCheckpoint
	last    time.Time // start of the newest checkpoint; zero: none yet
	now     bool      // the next checkpoint is due at once (after an ack timeout)
}

// NewCheckpointCoordinator returns the coordinator of cfg.Job over ids and
// store. The first periodic checkpoint is due Interval after now.
func NewCheckpointCoordinator(cfg CoordinatorConfig, ids CheckpointIDCounter, store CompletedCheckpointStore, now time.Time) (*CheckpointCoordinator, error) {
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	switch {
	case cfg.Job == "":
		return nil, errors.New("checkpoint: CoordinatorConfig.Job is empty")
	case len(cfg.Partitions) == 0:
		return nil, errors.New("checkpoint: CoordinatorConfig.Partitions is empty")
	case cfg.Retain < 1:
		return nil, fmt.Errorf("checkpoint: Retain is %d; must be >= 1", cfg.Retain)
	case cfg.Interval <= 0:
		return nil, fmt.Errorf("checkpoint: Interval is %s; must be > 0", cfg.Interval)
	case cfg.AckTimeout <= 0:
		return nil, fmt.Errorf("checkpoint: AckTimeout is %s; must be > 0", cfg.AckTimeout)
	case ids == nil || store == nil:
		return nil, errors.New("checkpoint: the coordinator needs an id counter and a completed checkpoint store")
	}
	cfg.Partitions = slices.Clone(cfg.Partitions)
	slices.Sort(cfg.Partitions)
	return &CheckpointCoordinator{cfg: cfg, ids: ids, store: store, last: now}, nil
}

// Config returns the coordinator's configuration (Retain defaulted,
// Partitions sorted).
func (c *CheckpointCoordinator) Config() CoordinatorConfig { return c.cfg }

// Store returns the completed checkpoint store.
func (c *CheckpointCoordinator) Store() CompletedCheckpointStore { return c.store }

// Pending returns a copy of the checkpoint in progress; nil none.
func (c *CheckpointCoordinator) Pending() *PendingCheckpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return nil
	}
	p := *c.pending
	p.Acks = make(map[int32]PartitionAck, len(c.pending.Acks))
	for k, v := range c.pending.Acks {
		p.Acks[k] = v
	}
	return &p
}

// Due returns what is due at now: the next periodic checkpoint when none
// is in progress and Interval passed since the start of the previous one
// (or that one's ack timeout passed), or the abort of the checkpoint in
// progress whose ack timeout passed.
func (c *CheckpointCoordinator) Due(now time.Time) Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		if now.Sub(c.pending.Started) >= c.cfg.AckTimeout {
			return Decision{Expired: c.pending.ID}
		}
		return Decision{}
	}
	return Decision{Trigger: c.now || now.Sub(c.last) >= c.cfg.Interval}
}

// Wake returns when Due next changes: the next checkpoint's start or the
// ack timeout of the one in progress.
func (c *CheckpointCoordinator) Wake() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.pending != nil:
		return c.pending.Started.Add(c.cfg.AckTimeout)
	case c.now:
		return c.last
	}
	return c.last.Add(c.cfg.Interval)
}

// Trigger starts checkpoint kind at now: it numbers it with the id counter
// and makes it the pending checkpoint. final marks the last checkpoint of a
// bounded run. ErrPending while one is in progress.
func (c *CheckpointCoordinator) Trigger(ctx context.Context, kind Kind, final bool, now time.Time) (uint64, error) {
	if kind != KindCheckpoint && kind != KindSavepoint {
		return 0, fmt.Errorf("checkpoint: unknown kind %q", kind)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		return 0, fmt.Errorf("%w: %d", ErrPending, c.pending.ID)
	}
	id, err := c.ids.Next(ctx)
	if err != nil {
		return 0, err
	}
	c.pending = &PendingCheckpoint{ID: id, Kind: kind, Final: final, Started: now, Acks: map[int32]PartitionAck{}}
	c.last, c.now = now, false
	return id, nil
}

// Ack records partition ack.Partition's ack of checkpoint id. The ack that
// completes the set stores the manifest in the completed checkpoint store
// (while no other call of c proceeds) and returns it; nil before. A repeated
// identical ack is ignored; ErrUnknownCheckpoint for an id not in progress,
// ErrBadAck for a partition the job does not have or a different second ack.
func (c *CheckpointCoordinator) Ack(ctx context.Context, id uint64, ack PartitionAck, now time.Time) (*Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pending
	if pc == nil || pc.ID != id {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCheckpoint, id)
	}
	if _, member := slices.BinarySearch(c.cfg.Partitions, ack.Partition); !member {
		return nil, fmt.Errorf("%w: partition %d is not part of job %s", ErrBadAck, ack.Partition, c.cfg.Job)
	}
	if prev, dup := pc.Acks[ack.Partition]; dup {
		if prev != ack {
			return nil, fmt.Errorf("%w: partition %d acked checkpoint %d twice, differently", ErrBadAck, ack.Partition, id)
		}
		return nil, nil
	}
	pc.Acks[ack.Partition] = ack
	if len(pc.Acks) < len(c.cfg.Partitions) {
		return nil, nil
	}
	m := &Manifest{
		Version:       ManifestVersion,
		Job:           c.cfg.Job,
		ID:            id,
		Kind:          pc.Kind,
		StartedMs:     pc.Started.UnixMilli(),
		CompletedMs:   now.UnixMilli(),
		Final:         pc.Final,
		Transactional: c.cfg.Transactional,
	}
	for _, p := range c.cfg.Partitions {
		m.Partitions = append(m.Partitions, pc.Acks[p])
	}
	if err := c.store.Add(ctx, m); err != nil {
		return nil, err
	}
	c.pending = nil
	return m, nil
}

// Abort gives up checkpoint id if it is in progress and returns it (nil
// otherwise). timedOut: its ack timeout passed, and the next checkpoint is
// due at once; otherwise (a partition failed) at the next interval.
func (c *CheckpointCoordinator) Abort(id uint64, timedOut bool) *PendingCheckpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pending
	if pc == nil || pc.ID != id {
		return nil
	}
	c.pending = nil
	c.now = c.now || timedOut
	return pc
}

// Observe feeds the coordinator the newest checkpoint record kept outside
// it (the cluster's Raft records): an incomplete, unaborted one is the
// pending checkpoint, and pacing continues from its start — at once after
// an aborted one. nil: the job has no record, the first checkpoint is due
// at once.
func (c *CheckpointCoordinator) Observe(rec *Observed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec == nil {
		c.pending, c.now = nil, true
		return
	}
	c.last = rec.Started
	c.now = rec.Aborted
	if rec.Complete || rec.Aborted {
		c.pending = nil
		return
	}
	pc := &PendingCheckpoint{ID: rec.ID, Kind: rec.Kind, Started: rec.Started, Acks: make(map[int32]PartitionAck, len(rec.Acks))}
	for _, a := range rec.Acks {
		pc.Acks[a.Partition] = a
	}
	c.pending = pc
}

// Subsume applies the retention of CoordinatorConfig.Retain to the
// completed checkpoint store (CompletedCheckpointStore.Subsume) and returns
// what it removed.
func (c *CheckpointCoordinator) Subsume(ctx context.Context) ([]string, error) {
	return c.store.Subsume(ctx, c.cfg.Retain)
}

// Restorable returns the complete checkpoints and savepoints a partition
// may restore from, newest first (CompletedCheckpointStore.Completed); with
// transactional sinks a partition further keeps only those whose commit it
// made (see Catalog.Committed).
func (c *CheckpointCoordinator) Restorable(ctx context.Context) ([]*Manifest, error) {
	return c.store.Completed(ctx)
}
