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
)

// Coordinator runs the checkpoint protocol of one job (Flink's
// CheckpointCoordinator, Chandy–Lamport barriers without alignment since
// a partition has one input):
//
//  1. Begin(kind, final) numbers checkpoint n (larger than every id
//     before); the job sends a barrier for n to every partition actor.
//     final marks the last checkpoint of a bounded run (Manifest.Final).
//  2. Each partition, between two batches, pre-commits its sinks, snapshots
//     its state to SnapshotKey(n, p) and calls Ack(n, ack) with its source
//     offset and the snapshot's size and checksum.
//  3. The Ack that completes the set stores the manifest — n is complete —
//     and returns it; then transactional sinks commit n and each partition
//     records that with Committed(n, p).
//  4. Abort(n) gives n up (a partition failed, or it took too long).
//
// On one node this is Local. In a cluster the coordinator moves onto the
// Raft leader and acks travel through Raft (control/'s checkpoint records);
// the storage layout stays the same. Implementations are safe for
// concurrent use.
type Coordinator interface {
	Begin(ctx context.Context, kind Kind, final bool) (id int64, err error)
	SnapshotKey(id int64, partition int32) (string, error)
	Ack(ctx context.Context, id int64, ack PartitionAck) (*Manifest, error)
	Abort(ctx context.Context, id int64) error
	Committed(ctx context.Context, id int64, partition int32) error
}

// LocalConfig configures a Local coordinator.
type LocalConfig struct {
	// Job is the job name; required.
	Job string
	// Partitions are the device partitions every checkpoint must include;
	// at least one.
	Partitions []int32
	// Retain is how many complete checkpoints to keep; >= 1; default 3.
	// Savepoints are kept until deleted.
	Retain int
	// Transactional: the job writes to transactional sinks (see
	// Manifest.Transactional).
	Transactional bool
}

// DefaultRetain is the default LocalConfig.Retain.
const DefaultRetain = 3

// Local is the Coordinator of a job that runs on one node: checkpoint
// metadata lives in checkpoint storage only (the manifest per checkpoint,
// written last and atomically).
type Local struct {
	cat *Catalog
	cfg LocalConfig

	mu      sync.Mutex
	last    int64 // largest id handed out or found in storage
	pending map[int64]*pending
	// kinds of ids handed out, for Committed after completion
	done map[int64]Kind
}

type pending struct {
	kind    Kind
	final   bool
	started time.Time
	acks    map[int32]PartitionAck
}

var _ Coordinator = (*Local)(nil)

// NewLocal returns the local coordinator of cfg.Job over cat's storage. It
// continues the id sequence found there. Call cat.DeleteIncomplete first
// to clean up after a crashed run.
func NewLocal(ctx context.Context, cat *Catalog, cfg LocalConfig) (*Local, error) {
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	switch {
	case cfg.Job == "":
		return nil, errors.New("checkpoint: LocalConfig.Job is empty")
	case len(cfg.Partitions) == 0:
		return nil, errors.New("checkpoint: LocalConfig.Partitions is empty")
	case cfg.Retain < 1:
		return nil, fmt.Errorf("checkpoint: Retain is %d; must be >= 1", cfg.Retain)
	}
	last, err := cat.MaxID(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Partitions = slices.Clone(cfg.Partitions)
	slices.Sort(cfg.Partitions)
	return &Local{cat: cat, cfg: cfg, last: last, pending: map[int64]*pending{}, done: map[int64]Kind{}}, nil
}

// Catalog returns the catalog the coordinator writes to.
func (l *Local) Catalog() *Catalog { return l.cat }

// NextID reserves and returns the next id without starting a checkpoint
// (for Catalog.Adopt).
func (l *Local) NextID() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	return l.last
}

// Reserve makes every id handed out from now on greater than id: a job
// whose transactional sinks committed checkpoint id (as their
// CommitTracker says) must not number a new checkpoint id or lower, even if
// checkpoint storage lost that history.
func (l *Local) Reserve(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = max(l.last, id)
}

// Begin implements Coordinator.
func (l *Local) Begin(_ context.Context, kind Kind, final bool) (int64, error) {
	if kind != KindCheckpoint && kind != KindSavepoint {
		return 0, fmt.Errorf("checkpoint: unknown kind %q", kind)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	l.pending[l.last] = &pending{kind: kind, final: final, started: time.Now(), acks: map[int32]PartitionAck{}}
	return l.last, nil
}

// SnapshotKey implements Coordinator.
func (l *Local) SnapshotKey(id int64, p int32) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pc, ok := l.pending[id]
	if !ok {
		return "", fmt.Errorf("%w: %d", ErrUnknownCheckpoint, id)
	}
	return l.cat.SnapshotKey(pc.kind, id, p), nil
}

// Ack implements Coordinator. The manifest is written while no other call
// of l proceeds.
func (l *Local) Ack(ctx context.Context, id int64, ack PartitionAck) (*Manifest, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pc, ok := l.pending[id]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCheckpoint, id)
	}
	if _, member := slices.BinarySearch(l.cfg.Partitions, ack.Partition); !member {
		return nil, fmt.Errorf("%w: partition %d is not part of job %s", ErrBadAck, ack.Partition, l.cfg.Job)
	}
	if prev, dup := pc.acks[ack.Partition]; dup {
		if prev != ack {
			return nil, fmt.Errorf("%w: partition %d acked checkpoint %d twice, differently", ErrBadAck, ack.Partition, id)
		}
		return nil, nil
	}
	pc.acks[ack.Partition] = ack
	if len(pc.acks) < len(l.cfg.Partitions) {
		return nil, nil
	}
	m := &Manifest{
		Version:       ManifestVersion,
		Job:           l.cfg.Job,
		ID:            id,
		Kind:          pc.kind,
		StartedMs:     pc.started.UnixMilli(),
		CompletedMs:   time.Now().UnixMilli(),
		Final:         pc.final,
		Transactional: l.cfg.Transactional,
	}
	for _, p := range l.cfg.Partitions {
		m.Partitions = append(m.Partitions, pc.acks[p])
	}
	if err := l.cat.WriteManifest(ctx, m); err != nil {
		return nil, err
	}
	delete(l.pending, id)
	l.done[id] = pc.kind
	for old := range l.done {
		if old < id-1000 {
			delete(l.done, old)
		}
	}
	return m, nil
}

// Abort implements Coordinator: it forgets id and deletes what was stored
// for it.
func (l *Local) Abort(ctx context.Context, id int64) error {
	l.mu.Lock()
	pc, ok := l.pending[id]
	delete(l.pending, id)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	return l.cat.Delete(ctx, pc.kind, id)
}

// Committed implements Coordinator.
func (l *Local) Committed(ctx context.Context, id int64, p int32) error {
	l.mu.Lock()
	kind, ok := l.done[id]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d is not complete", ErrUnknownCheckpoint, id)
	}
	return l.cat.MarkCommitted(ctx, kind, id, p)
}

// Retain applies the retention of LocalConfig.Retain (see Catalog.Retain)
// and returns the deleted directory names.
func (l *Local) Retain(ctx context.Context) ([]string, error) {
	return l.cat.Retain(ctx, l.cfg.Retain, l.cfg.Partitions)
}
