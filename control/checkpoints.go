package control

import (
	"context"
	"fmt"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

// The Raft ports of the checkpoint coordinator (checkpoint.CheckpointCoordinator):
// the id counter and the completed checkpoint store of a cluster job are
// the FSM's. The coordinator runs on the leader (cluster/jobs); the FSM
// stays the deterministic judge of every step: CheckpointStart takes an id
// only above the job's counter, CheckpointAck only under the partition's
// lease epoch, and the ack that completes the set completes the checkpoint
// in the same apply.

// CheckpointCounter is the FSM's checkpoint id counter of one job: the
// largest id a CheckpointStart of the job ever used. It outlives the job's
// deletion and the reset of its state (JobPut.ResetState, FromSavepoint),
// so that ids are never reused by a later revision or a job submitted again
// under the name: a transactional sink that committed checkpoint 7 of the
// old job must not take checkpoint 7 of the new one as committed.
type CheckpointCounter struct {
	Job  string `json:"job"`
	Last uint64 `json:"last"`
}

func (t *txn) ckptIDTxn() *iradix.Txn {
	if t.ckptIDs == nil {
		t.ckptIDs = t.st.ckptIDs.Txn()
	}
	return t.ckptIDs
}

// lastCheckpointID returns the largest id job used: its counter, or the
// newest of cps (the job's records, ascending) for a state restored from a
// snapshot written before the counter existed.
func (t *txn) lastCheckpointID(job string, cps []*Checkpoint) uint64 {
	var last uint64
	if v, ok := t.ckptIDTxn().Get([]byte(job)); ok {
		last = v.(*CheckpointCounter).Last
	}
	if n := len(cps); n > 0 {
		last = max(last, cps[n-1].ID)
	}
	return last
}

// useCheckpointID raises job's counter to id.
func (t *txn) useCheckpointID(job string, id uint64) {
	if v, ok := t.ckptIDTxn().Get([]byte(job)); ok && v.(*CheckpointCounter).Last >= id {
		return
	}
	t.ckptIDTxn().Insert([]byte(job), &CheckpointCounter{Job: job, Last: id})
}

// NextCheckpointID returns the id the next CheckpointStart of job must
// carry: one above every id the job (under this name, also deleted
// revisions) used; 1 for a job that never checkpointed.
func (v View) NextCheckpointID(job string) uint64 {
	var last uint64
	if c, ok := v.st.ckptIDs.Get([]byte(job)); ok {
		last = c.(*CheckpointCounter).Last
	}
	if cps := v.Checkpoints(job); len(cps) > 0 {
		last = max(last, cps[len(cps)-1].ID)
	}
	return last + 1
}

// CheckpointIDs is the checkpoint.CheckpointIDCounter of a cluster job: the
// FSM's counter (CheckpointCounter). Next reads the local FSM; the id is
// taken when the CheckpointStart carrying it applies — a second start of
// the same id fails with ErrConflict, so two proposers never share one.
type CheckpointIDs struct {
	fsm *FSM
	job string
}

var _ checkpoint.CheckpointIDCounter = (*CheckpointIDs)(nil)

// NewCheckpointIDs returns the id counter of job in fsm.
func NewCheckpointIDs(fsm *FSM, job string) *CheckpointIDs { return &CheckpointIDs{fsm: fsm, job: job} }

// Next implements checkpoint.CheckpointIDCounter (View.NextCheckpointID).
func (c *CheckpointIDs) Next(context.Context) (uint64, error) {
	return c.fsm.View().NextCheckpointID(c.job), nil
}

// CheckpointStore is the checkpoint.CompletedCheckpointStore of a cluster
// job: its complete Checkpoint records in the FSM, as manifests (the
// snapshot of an ack is its FormatSnapshotRef string, as in the record).
// The FSM completes a checkpoint in the apply of its last CheckpointAck and
// applies retention (checkpoint.Subsumed with the start's Retain) in every
// CheckpointStart and completion, so Add confirms and Subsume has nothing
// left to do.
type CheckpointStore struct {
	fsm *FSM
	job string
}

var _ checkpoint.CompletedCheckpointStore = (*CheckpointStore)(nil)

// NewCheckpointStore returns the completed checkpoint store of job in fsm.
func NewCheckpointStore(fsm *FSM, job string) *CheckpointStore {
	return &CheckpointStore{fsm: fsm, job: job}
}

// Add implements checkpoint.CompletedCheckpointStore: it waits until the
// local FSM holds m.ID complete (the acks of m went through Raft);
// ErrConflict when the record is aborted or gone, ctx's error when it does
// not complete in time.
func (s *CheckpointStore) Add(ctx context.Context, m *checkpoint.Manifest) error {
	var cp Checkpoint
	var found bool
	_, err := s.fsm.Wait(ctx, func(v View) bool {
		cp, found = v.checkpoint(s.job, m.ID)
		return !found || cp.Complete || cp.Aborted
	})
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("%w: checkpoint %d of job %s is gone", ErrConflict, m.ID, s.job)
	case cp.Aborted:
		return fmt.Errorf("%w: checkpoint %d of job %s was aborted (%s)", ErrConflict, m.ID, s.job, cp.AbortReason)
	}
	return nil
}

// Completed implements checkpoint.CompletedCheckpointStore: the complete
// checkpoints and savepoints the job's partitions may restore from
// (View.RestorableCheckpoints), newest first.
func (s *CheckpointStore) Completed(context.Context) ([]*checkpoint.Manifest, error) {
	var out []*checkpoint.Manifest
	for _, cp := range s.fsm.View().RestorableCheckpoints(s.job, true) {
		out = append(out, cp.Manifest())
	}
	return out, nil
}

// RestorableCheckpoints returns the retained checkpoint records of job that
// its partitions may restore from, newest first: "what restores" on a
// cluster, for CheckpointStore.Completed (the coordinator's store) and for
// the partitions' restore (cluster/jobs). completeOnly (a job with
// transactional sinks) keeps the complete checkpoints and savepoints;
// otherwise incomplete and aborted ones count too, each for the partitions
// that acked it (SQL sinks are idempotent upserts). Job.Restorable filters
// them (a job submitted from a savepoint restores that savepoint or a later
// checkpoint); a deleted job's records all count.
func (v View) RestorableCheckpoints(job string, completeOnly bool) []Checkpoint {
	j, exists := v.Job(job)
	cps := v.Checkpoints(job)
	var out []Checkpoint
	for i := len(cps) - 1; i >= 0; i-- {
		if cp := cps[i]; (cp.Complete || !completeOnly) && (!exists || j.Restorable(cp)) {
			out = append(out, cp)
		}
	}
	return out
}

// Savepoint implements checkpoint.CompletedCheckpointStore.
func (s *CheckpointStore) Savepoint(_ context.Context, id uint64) (*checkpoint.Manifest, error) {
	cp, ok := s.fsm.View().checkpoint(s.job, id)
	if !ok || !cp.Savepoint || !cp.Complete {
		return nil, fmt.Errorf("%w: savepoint %d of job %s (or it is incomplete)", checkpoint.ErrNotExist, id, s.job)
	}
	return cp.Manifest(), nil
}

// Subsume implements checkpoint.CompletedCheckpointStore: the FSM already
// applied the retention of the job's checkpoint.retain when the newest
// checkpoint started and when it completed (evictCheckpoints), and the
// leader's snapshot collection deletes the evicted snapshots. It removes
// nothing.
func (s *CheckpointStore) Subsume(context.Context, int) ([]string, error) { return nil, nil }

// checkpoint returns checkpoint record id of job.
func (v View) checkpoint(job string, id uint64) (Checkpoint, bool) {
	c, ok := v.st.checkpoints.Get(checkpointKey(job, id))
	if !ok {
		return Checkpoint{}, false
	}
	return *c.(*Checkpoint), true
}

// Manifest returns cp as a checkpoint manifest (Kind from Savepoint, one
// PartitionAck per ack with its epoch, offset and snapshot reference).
func (cp Checkpoint) Manifest() *checkpoint.Manifest {
	m := &checkpoint.Manifest{
		Version: checkpoint.ManifestVersion, Job: cp.Job, ID: cp.ID, Kind: checkpoint.KindCheckpoint,
		StartedMs: cp.StartedMs, CompletedMs: cp.CompletedMs,
	}
	if cp.Savepoint {
		m.Kind = checkpoint.KindSavepoint
	}
	m.Partitions = cp.partitionAcks()
	return m
}

// partitionAcks returns cp's acks as checkpoint.PartitionAcks (End -1: a
// cluster partition is unbounded).
func (cp Checkpoint) partitionAcks() []checkpoint.PartitionAck {
	out := make([]checkpoint.PartitionAck, 0, len(cp.Acks))
	for _, a := range cp.Acks {
		out = append(out, checkpoint.PartitionAck{Partition: a.Partition, Epoch: a.Epoch, Offset: a.Offset, End: -1, Snapshot: a.Snapshot})
	}
	return out
}

// Observed returns cp as the coordinator's view of a checkpoint record
// (checkpoint.CheckpointCoordinator.Observe).
func (cp Checkpoint) Observed() *checkpoint.Observed {
	o := &checkpoint.Observed{ID: cp.ID, Kind: checkpoint.KindCheckpoint, Started: time.UnixMilli(cp.StartedMs), Complete: cp.Complete, Aborted: cp.Aborted}
	if cp.Savepoint {
		o.Kind = checkpoint.KindSavepoint
	}
	o.Acks = cp.partitionAcks()
	return o
}
