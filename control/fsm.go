package control

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/hashicorp/raft"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

// maxTombstones bounds the delete markers kept for watches; beyond it they
// are dropped and replaced by one floor index (watchers then wake up once
// spuriously, which the blocking-query contract allows).
const maxTombstones = 10000

// FSM is eddy's Raft state machine: configuration key/values with revisions,
// job specs, partition leases, checkpoint records and cluster settings.
//
// Every applied batch publishes a new immutable View (copy-on-write radix
// trees), so reads never block Apply and never see a half-applied batch.
// Apply, ApplyBatch, Snapshot and Restore are called by Raft from its FSM
// goroutine; View, Wait and Devices are safe for concurrent use from any
// goroutine.
type FSM struct {
	log      *slog.Logger
	state    atomic.Pointer[state]
	devices  *DeviceLookup
	restores atomic.Uint64

	mu     sync.Mutex
	notify chan struct{} // closed and replaced on every publish
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// NewFSM returns an empty FSM. logger may be nil.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{log: logger, devices: newDeviceLookup(), notify: make(chan struct{})}
	f.state.Store(emptyState())
	return f
}

// state is one immutable version of the FSM.
type state struct {
	index       uint64       // last applied Raft index
	kv          *iradix.Tree // key → *KVEntry
	kvBytes     int64        // sum of len(key)+len(value)
	tombs       *iradix.Tree // deleted key → delete index (uint64)
	tombFloor   uint64       // index of the last tombstone purge
	jobs        *iradix.Tree // name → *Job
	leases      *iradix.Tree // leaseKey → *Lease
	checkpoints *iradix.Tree // checkpointKey → *Checkpoint
	ckptIDs     *iradix.Tree // job name → *CheckpointCounter (checkpoints.go)
	history     *iradix.Tree // big-endian Raft index → *LeaseEvent
	jobStatus   *iradix.Tree // name → *JobStatus (jobstatus.go)
	historyLen  int
	nodeLeases  *iradix.Tree // node id → *NodeLease
	devVersions *iradix.Tree // pboxid → *deviceVersions
	settings    Settings
}

func emptyState() *state {
	return &state{kv: iradix.New(), tombs: iradix.New(), jobs: iradix.New(), leases: iradix.New(), checkpoints: iradix.New(), ckptIDs: iradix.New(), history: iradix.New(), nodeLeases: iradix.New(), devVersions: iradix.New(), jobStatus: iradix.New()}
}

func leaseKey(job string, partition int32) []byte {
	k := make([]byte, 0, len(job)+5)
	k = append(k, job...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

func checkpointKey(job string, id uint64) []byte {
	k := make([]byte, 0, len(job)+9)
	k = append(k, job...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

func jobPrefix(job string) []byte { return append([]byte(job), 0) }

// Devices returns the DeviceLookup fed by this FSM's devices/ keys.
func (f *FSM) Devices() *DeviceLookup { return f.devices }

// Restores returns how many times the FSM was restored from a snapshot
// (at start-up from its own snapshot, or installed from the leader).
func (f *FSM) Restores() uint64 { return f.restores.Load() }

// View returns the current state.
func (f *FSM) View() View { return View{f.state.Load()} }

// Wait blocks until cond returns true for the current state and returns
// that state, or returns ctx's error. cond is called again after every
// applied batch; it must be fast and must not block.
func (f *FSM) Wait(ctx context.Context, cond func(View) bool) (View, error) {
	for {
		f.mu.Lock()
		ch := f.notify
		v := View{f.state.Load()}
		f.mu.Unlock()
		if cond(v) {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return View{f.state.Load()}, ctx.Err()
		}
	}
}

// WaitApplied blocks until the FSM has applied index, or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	_, err := f.Wait(ctx, func(v View) bool { return v.Index() >= index })
	return err
}

func (f *FSM) publish(st *state, changedDevices map[string]struct{}, restored bool) {
	if restored {
		f.devices.rebuild(st, f.log)
	} else if len(changedDevices) > 0 {
		f.devices.update(st, changedDevices, f.log)
	}
	f.mu.Lock()
	f.state.Store(st)
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// applyResponse is what Apply hands back through raft's ApplyFuture.
type applyResponse struct {
	Result Result
	Err    error
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: the whole batch is published as
// one new state.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	tx := newTxn(f.state.Load())
	for i, l := range logs {
		tx.index = l.Index
		tx.appendedAt = l.AppendedAt
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := DecodeCommand(l.Data)
		if err != nil {
			// A command this version cannot read: never fail the FSM,
			// report it to the proposer.
			f.log.Error("skipping undecodable log entry", "index", l.Index, "err", err)
			out[i] = &applyResponse{Err: err}
			continue
		}
		res, err := tx.apply(cmd)
		res.Index = l.Index
		out[i] = &applyResponse{Result: res, Err: err}
	}
	st := tx.commit()
	f.publish(st, tx.devices, false)
	return out
}

// txn accumulates one batch of changes.
type txn struct {
	st      state // copy of the base state, fields replaced on commit
	index   uint64
	kv      *iradix.Txn
	tombs   *iradix.Txn
	jobs    *iradix.Txn
	leases  *iradix.Txn
	ckpts   *iradix.Txn
	ckptIDs *iradix.Txn
	history *iradix.Txn
	jstatus *iradix.Txn
	nodes   *iradix.Txn
	devVers *iradix.Txn
	devices map[string]struct{} // pboxids whose key changed
	// appendedAt is the leader's append time of the log being applied.
	appendedAt time.Time
}

func newTxn(base *state) *txn {
	return &txn{st: *base, index: base.index}
}

func (t *txn) kvTxn() *iradix.Txn {
	if t.kv == nil {
		t.kv = t.st.kv.Txn()
		t.tombs = t.st.tombs.Txn()
	}
	return t.kv
}

func (t *txn) commit() *state {
	st := t.st
	st.index = t.index
	if t.kv != nil {
		st.kv = t.kv.CommitOnly()
		st.tombs = t.tombs.CommitOnly()
		if st.tombs.Len() > maxTombstones {
			st.tombs = iradix.New()
			st.tombFloor = t.index
		}
	}
	if t.jobs != nil {
		st.jobs = t.jobs.CommitOnly()
	}
	if t.leases != nil {
		st.leases = t.leases.CommitOnly()
	}
	if t.ckpts != nil {
		st.checkpoints = t.ckpts.CommitOnly()
	}
	if t.ckptIDs != nil {
		st.ckptIDs = t.ckptIDs.CommitOnly()
	}
	if t.history != nil {
		st.history = t.history.CommitOnly()
	}
	if t.jstatus != nil {
		st.jobStatus = t.jstatus.CommitOnly()
	}
	if t.nodes != nil {
		st.nodeLeases = t.nodes.CommitOnly()
	}
	if t.devVers != nil {
		st.devVersions = t.devVers.CommitOnly()
	}
	return &st
}

func (t *txn) touchDevice(key string) {
	if !strings.HasPrefix(key, DevicesPrefix) {
		return
	}
	if t.devices == nil {
		t.devices = make(map[string]struct{})
	}
	t.devices[key[len(DevicesPrefix):]] = struct{}{}
}

func (t *txn) apply(cmd Command) (Result, error) {
	switch c := cmd.(type) {
	case KVSet:
		return t.kvSet(c)
	case KVDelete:
		return t.kvDelete(c)
	case JobPut:
		return t.jobPut(c)
	case JobDelete:
		return t.jobDelete(c)
	case LeaseAcquire:
		return t.leaseAcquire(c)
	case LeaseRelease:
		return t.leaseRelease(c)
	case CheckpointStart:
		return t.checkpointStart(c)
	case CheckpointAck:
		return t.checkpointAck(c)
	case CheckpointAbort:
		return t.checkpointAbort(c)
	case SetVoterTarget:
		t.st.settings.VoterTarget = c.Voters
		return Result{}, nil
	case LeaseRenew:
		return t.leaseRenew(c), nil
	case JobReport:
		return t.jobReport(c)
	case JobCancel:
		return t.jobCancel(c)
	case SavepointDelete:
		return t.savepointDelete(c)
	}
	return Result{}, fmt.Errorf("%w: command %T has no apply", ErrInvalid, cmd)
}

func (t *txn) kvSet(c KVSet) (Result, error) {
	kv := t.kvTxn()
	k := []byte(c.Key)
	var prev *KVEntry
	if v, ok := kv.Get(k); ok {
		prev = v.(*KVEntry)
	}
	if c.CAS != nil {
		switch {
		case *c.CAS == 0 && prev != nil:
			return Result{}, fmt.Errorf("%w: key %q already exists (revision %d); cas=0 only creates", ErrConflict, c.Key, prev.ModifyIndex)
		case *c.CAS != 0 && prev == nil:
			return Result{}, fmt.Errorf("%w: key %q does not exist, expected revision %d", ErrConflict, c.Key, *c.CAS)
		case *c.CAS != 0 && prev.ModifyIndex != *c.CAS:
			return Result{}, fmt.Errorf("%w: key %q is at revision %d, expected %d", ErrConflict, c.Key, prev.ModifyIndex, *c.CAS)
		}
	}
	e := &KVEntry{Key: c.Key, Value: c.Value, CreateIndex: t.index, ModifyIndex: t.index}
	if prev != nil {
		e.CreateIndex = prev.CreateIndex
		t.st.kvBytes -= int64(len(prev.Key) + len(prev.Value))
	}
	t.st.kvBytes += int64(len(e.Key) + len(e.Value))
	kv.Insert(k, e)
	t.tombs.Delete(k)
	t.touchDevice(c.Key)
	t.versionDevice(c.Key, prev, e)
	return Result{Entry: e}, nil
}

func (t *txn) kvDelete(c KVDelete) (Result, error) {
	kv := t.kvTxn()
	k := []byte(c.Key)
	v, ok := kv.Get(k)
	if !ok {
		if c.CAS != nil && *c.CAS != 0 {
			return Result{}, fmt.Errorf("%w: key %q does not exist, expected revision %d", ErrConflict, c.Key, *c.CAS)
		}
		return Result{Deleted: false}, nil
	}
	prev := v.(*KVEntry)
	if c.CAS != nil && prev.ModifyIndex != *c.CAS {
		return Result{}, fmt.Errorf("%w: key %q is at revision %d, expected %d", ErrConflict, c.Key, prev.ModifyIndex, *c.CAS)
	}
	kv.Delete(k)
	t.tombs.Insert(k, t.index)
	t.st.kvBytes -= int64(len(prev.Key) + len(prev.Value))
	t.touchDevice(c.Key)
	t.versionDevice(c.Key, prev, nil)
	return Result{Entry: prev, Deleted: true}, nil
}

func (t *txn) jobTxn() *iradix.Txn {
	if t.jobs == nil {
		t.jobs = t.st.jobs.Txn()
	}
	return t.jobs
}

func (t *txn) jobPut(c JobPut) (Result, error) {
	jobs := t.jobTxn()
	j := &Job{Name: c.Name, Spec: c.Spec, Partitions: c.Partitions, CreateIndex: t.index, ModifyIndex: t.index, StateReset: c.ResetState, RestoreIndex: t.index}
	if c.FromSavepoint != 0 {
		if err := t.checkSavepoint(c.Name, c.FromSavepoint); err != nil {
			return Result{}, err
		}
	}
	prev, exists := jobs.Get([]byte(c.Name))
	if exists {
		j.CreateIndex = prev.(*Job).CreateIndex
	}
	switch {
	case c.FromSavepoint != 0:
		j.FromSavepoint = c.FromSavepoint
		t.resetState(c.Name)
	case exists && c.ResetState:
		t.resetState(c.Name)
	case exists:
		j.FromSavepoint, j.RestoreIndex = prev.(*Job).FromSavepoint, prev.(*Job).RestoreIndex
	default:
		t.dropHandoffs(c.Name)
	}
	jobs.Insert([]byte(c.Name), j)
	t.jobSubmitted(j)
	return Result{Job: j}, nil
}

// jobDelete removes a job and its checkpoint records but its complete
// savepoints (a job submitted again may start from one). Its leases stay:
// the holders release them (with handoff points) as their partitions stop,
// and they remain the floor of the partitions' epochs, so that a job
// submitted again under the name continues above the old epochs and a
// fencing token is never issued twice (a sink that stored rows at epoch 7
// of the old job must not see a new writer at epoch 1 as older). The
// handoff points are dropped when the job is submitted again (jobPut).
func (t *txn) jobDelete(c JobDelete) (Result, error) {
	v, ok := t.jobTxn().Delete([]byte(c.Name))
	if !ok {
		return Result{}, nil
	}
	t.dropCheckpoints(c.Name)
	t.jobStatusDeleted(c.Name)
	return Result{Job: v.(*Job), Deleted: true}, nil
}

// dropHandoffs clears the handoff points of job's leases: a job submitted
// anew must not resume from the snapshots of a deleted job of that name.
func (t *txn) dropHandoffs(job string) {
	var stale []*Lease
	t.leaseTxn().Root().WalkPrefix(jobPrefix(job), func(k []byte, v interface{}) bool {
		if l := v.(*Lease); l.Handoff != nil {
			stale = append(stale, l)
		}
		return false
	})
	for _, l := range stale {
		n := *l
		n.Handoff, n.ModifyIndex = nil, t.index
		t.leaseTxn().Insert(leaseKey(n.Job, n.Partition), &n)
	}
}

func (t *txn) leaseTxn() *iradix.Txn {
	if t.leases == nil {
		t.leases = t.st.leases.Txn()
	}
	return t.leases
}

func (t *txn) lease(job string, partition int32) *Lease {
	if v, ok := t.leaseTxn().Get(leaseKey(job, partition)); ok {
		return v.(*Lease)
	}
	return nil
}

// leaseAcquire grants a lease. Fencing invariant: the epoch of a partition
// strictly increases with every grant (PrevEpoch must equal the current
// epoch and the grant is PrevEpoch+1), so no two grants of a partition ever
// share an epoch, and at most one lease record — one holder — exists per
// partition at any Raft index.
func (t *txn) leaseAcquire(c LeaseAcquire) (Result, error) {
	cur := t.lease(c.Job, c.Partition)
	var epoch uint64
	if cur != nil {
		epoch = cur.Epoch
	}
	if epoch != c.PrevEpoch {
		return Result{Lease: cur}, fmt.Errorf("%w: lease %s/%d is at epoch %d, not %d", ErrConflict, c.Job, c.Partition, epoch, c.PrevEpoch)
	}
	held := cur != nil && !cur.Released
	if held && cur.Owner != c.Owner {
		if !c.Takeover {
			return Result{Lease: cur}, fmt.Errorf("%w: lease %s/%d is held by %s at epoch %d", ErrConflict, c.Job, c.Partition, cur.Owner, cur.Epoch)
		}
		if hl := t.nodeLease(cur.Owner); hl.RenewIndex != c.HolderRenewIndex {
			return Result{Lease: cur}, fmt.Errorf("%w: lease %s/%d: holder %s renewed its node lease at index %d, after the renewal %d the takeover saw expire", ErrConflict, c.Job, c.Partition, cur.Owner, hl.RenewIndex, c.HolderRenewIndex)
		}
	}
	t.renew(c.Owner, c.TTLMs, c.SafetyMs)
	l := &Lease{Job: c.Job, Partition: c.Partition, Owner: c.Owner, Epoch: epoch + 1, ModifyIndex: t.index}
	ev := &LeaseEvent{Kind: LeaseGranted, Job: c.Job, Partition: c.Partition, Owner: c.Owner, Epoch: l.Epoch}
	if cur != nil {
		l.Handoff = cur.Handoff
	}
	if held {
		ev.PrevOwner = cur.Owner
		if cur.Owner != c.Owner {
			ev.Kind = LeaseTakenOver
		}
	}
	t.leaseTxn().Insert(leaseKey(c.Job, c.Partition), l)
	t.record(ev)
	return Result{Lease: l}, nil
}

// record appends ev to the lease history, dropping the oldest events beyond
// LeaseHistoryLimit.
func (t *txn) record(ev *LeaseEvent) {
	if t.history == nil {
		t.history = t.st.history.Txn()
	}
	ev.Index = t.index
	if !t.appendedAt.IsZero() {
		ev.TimeMs = t.appendedAt.UnixMilli()
	}
	if _, existed := t.history.Insert(binary.BigEndian.AppendUint64(nil, t.index), ev); !existed {
		t.st.historyLen++
	}
	for t.st.historyLen > LeaseHistoryLimit {
		k, _, ok := t.history.Root().Minimum()
		if !ok {
			break
		}
		t.history.Delete(k)
		t.st.historyLen--
	}
}

func (t *txn) leaseRelease(c LeaseRelease) (Result, error) {
	cur := t.lease(c.Job, c.Partition)
	if cur == nil || cur.Released || cur.Owner != c.Owner || cur.Epoch != c.Epoch {
		return Result{Lease: cur}, fmt.Errorf("%w: lease %s/%d is not held by %s at epoch %d", ErrConflict, c.Job, c.Partition, c.Owner, c.Epoch)
	}
	l := *cur
	l.Released = true
	l.ModifyIndex = t.index
	if j, ok := t.jobTxn().Get([]byte(c.Job)); ok && cur.ModifyIndex < j.(*Job).RestoreIndex {
		// Acquired for a deleted job or a revision whose state was reset
		// or set from a savepoint since: its handoff is not the job's.
		l.Handoff = nil
	} else if c.Handoff != nil {
		l.Handoff = &HandoffPoint{Epoch: cur.Epoch, Offset: c.Handoff.Offset, Snapshot: c.Handoff.Snapshot}
	}
	t.leaseTxn().Insert(leaseKey(c.Job, c.Partition), &l)
	t.record(&LeaseEvent{Kind: LeaseReleased, Job: c.Job, Partition: c.Partition, Owner: c.Owner, Epoch: c.Epoch})
	return Result{Lease: &l}, nil
}

func (t *txn) ckptTxn() *iradix.Txn {
	if t.ckpts == nil {
		t.ckpts = t.st.checkpoints.Txn()
	}
	return t.ckpts
}

// checkpointStart opens a checkpoint, aborts the incomplete earlier ones
// and applies the retention of CheckpointStart.
func (t *txn) checkpointStart(c CheckpointStart) (Result, error) {
	ck := t.ckptTxn()
	// Existing checkpoints of the job, ascending by id.
	var cps []*Checkpoint
	ck.Root().WalkPrefix(jobPrefix(c.Job), func(k []byte, v interface{}) bool {
		cps = append(cps, v.(*Checkpoint))
		return false
	})
	if last := t.lastCheckpointID(c.Job, cps); last >= c.ID {
		return Result{}, fmt.Errorf("%w: checkpoint %d of job %s is not newer than checkpoint %d", ErrConflict, c.ID, c.Job, last)
	}
	if n := len(cps); n > 0 && !c.Savepoint && cps[n-1].Savepoint && !cps[n-1].Complete && !cps[n-1].Aborted {
		return Result{}, fmt.Errorf("%w: savepoint %d of job %s is in progress", ErrConflict, cps[n-1].ID, c.Job)
	}
	if _, ok := t.jobTxn().Get([]byte(c.Job)); c.Savepoint && !ok {
		return Result{}, fmt.Errorf("%w: job %q", ErrNotFound, c.Job)
	}
	for _, old := range cps {
		if !old.Complete && !old.Aborted {
			t.abortCheckpoint(old, fmt.Sprintf("superseded by checkpoint %d", c.ID))
		}
	}
	cp := &Checkpoint{Job: c.Job, ID: c.ID, Partitions: c.Partitions, StartedMs: c.StartedMs, Acks: []PartitionAck{}, StartIndex: t.index, Savepoint: c.Savepoint, CancelJob: c.Savepoint && c.Cancel, Retain: c.Retain}
	ck.Insert(checkpointKey(c.Job, c.ID), cp)
	t.useCheckpointID(c.Job, c.ID)
	t.retainCheckpoints(c.Job, c.Retain)
	return Result{Checkpoint: cp}, nil
}

// evictCheckpoints returns the ids of cps (one job's) that retention
// drops: checkpoint.Subsumed with retain (0 = RetainCheckpoints) — the
// newest retain complete checkpoints, the newest retain incomplete ones
// after the newest complete one, and every savepoint not aborted stay.
func evictCheckpoints(cps []*Checkpoint, retain int) []uint64 {
	if retain <= 0 {
		retain = RetainCheckpoints
	}
	recs := make([]checkpoint.Record, len(cps))
	for i, cp := range cps {
		recs[i] = checkpoint.Record{ID: cp.ID, Savepoint: cp.Savepoint, Complete: cp.Complete, Aborted: cp.Aborted}
	}
	return checkpoint.Subsumed(recs, retain)
}

// retainCheckpoints applies retention (evictCheckpoints) to job's
// checkpoint records with retain.
func (t *txn) retainCheckpoints(job string, retain int) {
	ck := t.ckptTxn()
	var cps []*Checkpoint
	ck.Root().WalkPrefix(jobPrefix(job), func(k []byte, v interface{}) bool {
		cps = append(cps, v.(*Checkpoint))
		return false
	})
	for _, id := range evictCheckpoints(cps, retain) {
		ck.Delete(checkpointKey(job, id))
	}
}

// abortCheckpoint stores cp as aborted with reason and its missing
// partitions, and returns the new record.
func (t *txn) abortCheckpoint(cp *Checkpoint, reason string) *Checkpoint {
	n := *cp
	n.Aborted, n.AbortReason, n.AbortIndex = true, reason, t.index
	n.Missing = []int32{}
	acked := make(map[int32]bool, len(cp.Acks))
	for _, a := range cp.Acks {
		acked[a.Partition] = true
	}
	for p := int32(0); p < cp.Partitions; p++ {
		if !acked[p] {
			n.Missing = append(n.Missing, p)
		}
	}
	t.ckptTxn().Insert(checkpointKey(cp.Job, cp.ID), &n)
	return &n
}

func (t *txn) checkpointAbort(c CheckpointAbort) (Result, error) {
	v, ok := t.ckptTxn().Get(checkpointKey(c.Job, c.ID))
	if !ok {
		return Result{}, fmt.Errorf("%w: checkpoint %d of job %s", ErrNotFound, c.ID, c.Job)
	}
	cp := v.(*Checkpoint)
	switch {
	case cp.Aborted:
		return Result{Checkpoint: cp}, nil
	case cp.Complete:
		return Result{Checkpoint: cp}, fmt.Errorf("%w: checkpoint %d of job %s is already complete", ErrConflict, c.ID, c.Job)
	}
	reason := c.Reason
	if reason == "" {
		reason = "aborted"
	}
	return Result{Checkpoint: t.abortCheckpoint(cp, reason)}, nil
}

func (t *txn) checkpointAck(c CheckpointAck) (Result, error) {
	ck := t.ckptTxn()
	v, ok := ck.Get(checkpointKey(c.Job, c.ID))
	if !ok {
		return Result{}, fmt.Errorf("%w: checkpoint %d of job %s", ErrNotFound, c.ID, c.Job)
	}
	cp := v.(*Checkpoint)
	if c.Partition >= cp.Partitions {
		return Result{Checkpoint: cp}, fmt.Errorf("%w: partition %d is out of range for checkpoint %d (%d partitions)", ErrConflict, c.Partition, c.ID, cp.Partitions)
	}
	l := t.lease(c.Job, c.Partition)
	if l == nil || l.Released || l.Epoch != c.Epoch {
		return Result{Checkpoint: cp}, fmt.Errorf("%w: ack of checkpoint %d for %s/%d at epoch %d is fenced: lease is %s", ErrConflict, c.ID, c.Job, c.Partition, c.Epoch, describeLease(l))
	}
	ack := PartitionAck{Partition: c.Partition, Epoch: c.Epoch, Offset: c.Offset, Snapshot: c.Snapshot}
	i := 0
	for i < len(cp.Acks) && cp.Acks[i].Partition < c.Partition {
		i++
	}
	if i < len(cp.Acks) && cp.Acks[i].Partition == c.Partition {
		if cp.Acks[i] == ack {
			return Result{Checkpoint: cp}, nil
		}
		return Result{Checkpoint: cp}, fmt.Errorf("%w: partition %d already acked checkpoint %d with a different record", ErrConflict, c.Partition, c.ID)
	}
	if cp.Complete {
		return Result{Checkpoint: cp}, fmt.Errorf("%w: checkpoint %d is already complete", ErrConflict, c.ID)
	}
	if cp.Aborted {
		return Result{Checkpoint: cp}, fmt.Errorf("%w: checkpoint %d of job %s was aborted (%s)", ErrConflict, c.ID, c.Job, cp.AbortReason)
	}
	n := *cp
	n.Acks = make([]PartitionAck, 0, len(cp.Acks)+1)
	n.Acks = append(n.Acks, cp.Acks[:i]...)
	n.Acks = append(n.Acks, ack)
	n.Acks = append(n.Acks, cp.Acks[i:]...)
	if int32(len(n.Acks)) == n.Partitions {
		n.Complete = true
		n.CompleteIndex = t.index
		n.CompletedMs = t.nowMs()
	}
	ck.Insert(checkpointKey(c.Job, c.ID), &n)
	if n.Complete {
		// A new complete checkpoint can subsume older ones.
		t.retainCheckpoints(c.Job, n.Retain)
	}
	if n.Complete && n.CancelJob {
		if _, err := t.jobCancel(JobCancel{Name: c.Job}); err != nil && !errors.Is(err, ErrNotFound) {
			return Result{}, err
		}
	}
	return Result{Checkpoint: &n}, nil
}

func describeLease(l *Lease) string {
	switch {
	case l == nil:
		return "not granted"
	case l.Released:
		return fmt.Sprintf("released at epoch %d", l.Epoch)
	}
	return fmt.Sprintf("held by %s at epoch %d", l.Owner, l.Epoch)
}

// Snapshot implements raft.FSM: it captures the current immutable state.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{st: f.state.Load()}, nil
}

// snapshotVersion is the format version of persisted snapshots.
const snapshotVersion = 1

type snapHeader struct {
	Version  int      `json:"version"`
	Index    uint64   `json:"index"`
	Settings Settings `json:"settings"`
	Keys     int      `json:"keys"`
}

type snapRecord struct {
	KV         *KVEntry    `json:"kv,omitempty"`
	Job        *Job        `json:"job,omitempty"`
	Lease      *Lease      `json:"lease,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// CheckpointIDs: absent in snapshots written before the counter existed
	// (the records' ids are the floor then).
	CheckpointIDs *CheckpointCounter `json:"checkpoint_ids,omitempty"`
	LeaseEvent    *LeaseEvent        `json:"lease_event,omitempty"`
	NodeLease     *NodeLease         `json:"node_lease,omitempty"`
	Device        *deviceVersions    `json:"device_versions,omitempty"`
	JobStatus     *JobStatus         `json:"job_status,omitempty"`
}

type fsmSnapshot struct{ st *state }

// Persist writes the state as JSON lines: a header, then one record per key,
// job, lease and checkpoint. It runs concurrently with Apply, which is safe
// because the state is immutable.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("control: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapHeader{Version: snapshotVersion, Index: s.st.index, Settings: s.st.settings, Keys: s.st.kv.Len()}); err != nil {
		return err
	}
	var err error
	walk := func(tree *iradix.Tree, rec func(v interface{}) snapRecord) {
		tree.Root().Walk(func(k []byte, v interface{}) bool {
			err = enc.Encode(rec(v))
			return err != nil
		})
	}
	walk(s.st.kv, func(v interface{}) snapRecord { return snapRecord{KV: v.(*KVEntry)} })
	walk(s.st.jobs, func(v interface{}) snapRecord { return snapRecord{Job: v.(*Job)} })
	walk(s.st.leases, func(v interface{}) snapRecord { return snapRecord{Lease: v.(*Lease)} })
	walk(s.st.checkpoints, func(v interface{}) snapRecord { return snapRecord{Checkpoint: v.(*Checkpoint)} })
	walk(s.st.ckptIDs, func(v interface{}) snapRecord { return snapRecord{CheckpointIDs: v.(*CheckpointCounter)} })
	walk(s.st.history, func(v interface{}) snapRecord { return snapRecord{LeaseEvent: v.(*LeaseEvent)} })
	walk(s.st.nodeLeases, func(v interface{}) snapRecord { return snapRecord{NodeLease: v.(*NodeLease)} })
	walk(s.st.devVersions, func(v interface{}) snapRecord { return snapRecord{Device: v.(*deviceVersions)} })
	walk(s.st.jobStatus, func(v interface{}) snapRecord { return snapRecord{JobStatus: v.(*JobStatus)} })
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("control: restore snapshot: %w", err)
	}
	f.restores.Add(1)
	f.publish(st, nil, true)
	f.log.Info("restored FSM from snapshot", "index", st.index, "keys", st.kv.Len())
	return nil
}

func readSnapshot(r io.Reader) (*state, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Version != snapshotVersion {
		return nil, fmt.Errorf("unsupported snapshot version %d (this build reads %d)", h.Version, snapshotVersion)
	}
	st := emptyState()
	st.index, st.settings, st.tombFloor = h.Index, h.Settings, h.Index
	kv, jobs, leases, ckpts, hist, nodes := st.kv.Txn(), st.jobs.Txn(), st.leases.Txn(), st.checkpoints.Txn(), st.history.Txn(), st.nodeLeases.Txn()
	devs, jstat, cids := st.devVersions.Txn(), st.jobStatus.Txn(), st.ckptIDs.Txn()
	for {
		var rec snapRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		switch {
		case rec.KV != nil:
			kv.Insert([]byte(rec.KV.Key), rec.KV)
			st.kvBytes += int64(len(rec.KV.Key) + len(rec.KV.Value))
		case rec.Job != nil:
			jobs.Insert([]byte(rec.Job.Name), rec.Job)
		case rec.Lease != nil:
			leases.Insert(leaseKey(rec.Lease.Job, rec.Lease.Partition), rec.Lease)
		case rec.Checkpoint != nil:
			if rec.Checkpoint.Acks == nil {
				rec.Checkpoint.Acks = []PartitionAck{}
			}
			ckpts.Insert(checkpointKey(rec.Checkpoint.Job, rec.Checkpoint.ID), rec.Checkpoint)
		case rec.CheckpointIDs != nil:
			cids.Insert([]byte(rec.CheckpointIDs.Job), rec.CheckpointIDs)
		case rec.LeaseEvent != nil:
			hist.Insert(binary.BigEndian.AppendUint64(nil, rec.LeaseEvent.Index), rec.LeaseEvent)
		case rec.NodeLease != nil:
			nodes.Insert([]byte(rec.NodeLease.Node), rec.NodeLease)
		case rec.Device != nil:
			devs.Insert([]byte(rec.Device.ID), rec.Device)
		case rec.JobStatus != nil:
			jstat.Insert([]byte(rec.JobStatus.Name), rec.JobStatus)
		default:
			return nil, errors.New("empty record")
		}
	}
	st.kv, st.jobs, st.leases, st.checkpoints, st.history = kv.CommitOnly(), jobs.CommitOnly(), leases.CommitOnly(), ckpts.CommitOnly(), hist.CommitOnly()
	st.nodeLeases, st.devVersions, st.jobStatus, st.ckptIDs = nodes.CommitOnly(), devs.CommitOnly(), jstat.CommitOnly(), cids.CommitOnly()
	st.historyLen = st.history.Len()
	if st.kv.Len() != h.Keys {
		return nil, fmt.Errorf("snapshot has %d keys, header says %d (truncated?)", st.kv.Len(), h.Keys)
	}
	return st, nil
}

// View is one immutable version of the FSM state. Its methods are safe for
// concurrent use and never block.
type View struct{ st *state }

// Index is the last Raft index applied in this view.
func (v View) Index() uint64 { return v.st.index }

// Len is the number of configuration keys.
func (v View) Len() int { return v.st.kv.Len() }

// Bytes is the total size of keys and values, in bytes.
func (v View) Bytes() int64 { return v.st.kvBytes }

// Settings returns the cluster settings.
func (v View) Settings() Settings { return v.st.settings }

// Get returns the entry of key.
func (v View) Get(key string) (KVEntry, bool) {
	e, ok := v.st.kv.Get([]byte(key))
	if !ok {
		return KVEntry{}, false
	}
	return *e.(*KVEntry), true
}

// List returns the entries whose key starts with prefix, sorted by key.
func (v View) List(prefix string) []KVEntry {
	out := []KVEntry{}
	v.st.kv.Root().WalkPrefix([]byte(prefix), func(k []byte, e interface{}) bool {
		out = append(out, *e.(*KVEntry))
		return false
	})
	return out
}

// KeyIndex is the blocking-query index of one key: its ModifyIndex if it
// exists, else the index of its deletion (or of the last tombstone purge),
// else 0.
func (v View) KeyIndex(key string) uint64 {
	if e, ok := v.st.kv.Get([]byte(key)); ok {
		return e.(*KVEntry).ModifyIndex
	}
	idx := v.st.tombFloor
	if d, ok := v.st.tombs.Get([]byte(key)); ok && d.(uint64) > idx {
		idx = d.(uint64)
	}
	return idx
}

// PrefixIndex is the blocking-query index of a prefix: the largest
// ModifyIndex or deletion index among keys under it (at least the last
// tombstone purge). It grows whenever anything under the prefix changes.
func (v View) PrefixIndex(prefix string) uint64 {
	idx := v.st.tombFloor
	p := []byte(prefix)
	v.st.kv.Root().WalkPrefix(p, func(k []byte, e interface{}) bool {
		if m := e.(*KVEntry).ModifyIndex; m > idx {
			idx = m
		}
		return false
	})
	v.st.tombs.Root().WalkPrefix(p, func(k []byte, d interface{}) bool {
		if m := d.(uint64); m > idx {
			idx = m
		}
		return false
	})
	return idx
}

// Job returns the job spec of name.
func (v View) Job(name string) (Job, bool) {
	j, ok := v.st.jobs.Get([]byte(name))
	if !ok {
		return Job{}, false
	}
	return *j.(*Job), true
}

// Jobs returns every job, sorted by name.
func (v View) Jobs() []Job {
	out := []Job{}
	v.st.jobs.Root().Walk(func(k []byte, j interface{}) bool {
		out = append(out, *j.(*Job))
		return false
	})
	return out
}

// Lease returns the lease of (job, partition).
func (v View) Lease(job string, partition int32) (Lease, bool) {
	l, ok := v.st.leases.Get(leaseKey(job, partition))
	if !ok {
		return Lease{}, false
	}
	return *l.(*Lease), true
}

// Leases returns the leases of job (every job if job is ""), sorted by job
// then partition.
func (v View) Leases(job string) []Lease {
	out := []Lease{}
	var p []byte
	if job != "" {
		p = jobPrefix(job)
	}
	v.st.leases.Root().WalkPrefix(p, func(k []byte, l interface{}) bool {
		out = append(out, *l.(*Lease))
		return false
	})
	return out
}

// Checkpoints returns the retained checkpoints of job (every job if job is
// ""), sorted by job then id.
func (v View) Checkpoints(job string) []Checkpoint {
	out := []Checkpoint{}
	var p []byte
	if job != "" {
		p = jobPrefix(job)
	}
	v.st.checkpoints.Root().WalkPrefix(p, func(k []byte, c interface{}) bool {
		out = append(out, *c.(*Checkpoint))
		return false
	})
	return out
}

// LastCompleteCheckpoint returns the newest complete checkpoint of job.
func (v View) LastCompleteCheckpoint(job string) (Checkpoint, bool) {
	var best *Checkpoint
	v.st.checkpoints.Root().WalkPrefix(jobPrefix(job), func(k []byte, c interface{}) bool {
		if cp := c.(*Checkpoint); cp.Complete {
			best = cp
		}
		return false
	})
	if best == nil {
		return Checkpoint{}, false
	}
	return *best, true
}

// LeaseHistory returns the retained lease events of job (every job if job is
// ""), of one partition if partition >= 0 (every partition if < 0), in Raft
// order.
func (v View) LeaseHistory(job string, partition int32) []LeaseEvent {
	out := []LeaseEvent{}
	v.st.history.Root().Walk(func(k []byte, e interface{}) bool {
		ev := e.(*LeaseEvent)
		if (job == "" || ev.Job == job) && (partition < 0 || ev.Partition == partition) {
			out = append(out, *ev)
		}
		return false
	})
	return out
}
