package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/state"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

var (
	// ErrNoCheckpoints is returned by Savepoint when the job runs without
	// checkpoint storage.
	ErrNoCheckpoints = errors.New("actors: checkpoints are off (set checkpoint.storage in the job spec)")
	// ErrNotRunning is returned by Savepoint before Run started the
	// checkpoint coordinator or after it stopped.
	ErrNotRunning = errors.New("actors: job is not running")
	// ErrIncompatibleState is wrapped by Run's error when the checkpoint to
	// restore was taken with another operator configuration (window,
	// out-of-orderness, allowed lateness, max gap).
	ErrIncompatibleState = errors.New("actors: checkpoint state is incompatible with this job's operator configuration")
	// ErrJobFinished is wrapped by Run's error when an unbounded run would
	// restore the final checkpoint of a finished bounded run.
	ErrJobFinished = errors.New("actors: the newest checkpoint is the final checkpoint of a finished bounded run")
)

// TestCheckpointDelayEnv names an environment variable for fault-injection
// tests: a Go duration each partition waits after writing its snapshot and
// before acknowledging the checkpoint, so that a test can kill the process
// while a checkpoint is in progress. Read only by a binary built with
// -tags eddy_failpoints (the test harness's); a production build ignores it.
const TestCheckpointDelayEnv = "EDDY_TEST_CHECKPOINT_DELAY"

// barrier is the checkpoint barrier a partition actor handles between two
// batches.
type barrier struct {
	id      uint64 // checkpoint id; 0 for a handoff
	handoff bool   // the handoff snapshot of the partition's lease epoch
	kind    checkpoint.Kind
	key     string // storage key of the partition's snapshot
}

// commitCheckpoint tells a partition actor that checkpoint id is complete:
// its transactions of id commit.
type commitCheckpoint struct {
	id   uint64
	kind checkpoint.Kind
}

// checkpointer is the checkpoint side of a running job: the snapshot
// uploads and loads of its partitions and, in a local Job.Run, the
// coordinator loop (local.go).
type checkpointer struct {
	j          *Job
	st         *checkpoint.Storage
	cat        *checkpoint.Catalog
	coord      *checkpoint.CheckpointCoordinator // nil in a cluster Runtime
	ids        *checkpoint.StorageIDCounter
	db         *state.DB
	candidates []*checkpoint.Manifest // complete at start, newest first
	epoch      uint64                 // a local run's transactional writers' epoch and its acks': start time, Unix ms
	delay      time.Duration          // TestCheckpointDelayEnv
	fail       context.CancelCauseFunc
	offsets    *OffsetCommitter // nil: offset commits off

	events   chan ckEvent
	requests chan *ckRequest
	cancel   context.CancelFunc
	loopDone chan struct{}
	uploads  sync.WaitGroup
	rt       *Runtime // the runtime of a local run's partitions (barriers, commits)
	parts    []int32  // a local run's partitions

	mu     sync.Mutex
	status CheckpointStatus
}

// ckEvent reports a partition's barrier outcome (ack or err) or, with
// committed, its commit of checkpoint id.
type ckEvent struct {
	id        uint64 // 0 for a handoff
	handoff   bool   // the outcome of a handoff barrier
	partition int32
	ack       checkpoint.PartitionAck
	err       error
	committed bool
}

// CheckpointStatus is the checkpoint state of a running job.
type CheckpointStatus struct {
	Enabled  bool
	Storage  string
	StateDir string
	// InProgress is the id of the checkpoint in progress; 0 none.
	InProgress uint64
	// Last is the manifest of the last checkpoint or savepoint this run
	// completed; nil none.
	Last      *checkpoint.Manifest
	Completed int64 // checkpoints and savepoints completed by this run
	Failed    int64 // aborted
}

// ParseSavepointRef parses a savepoint reference: its id ("42") or its
// name ("sp-00000000000000000042").
func ParseSavepointRef(ref string) (uint64, error) {
	s := strings.TrimSuffix(strings.TrimPrefix(ref, "sp-"), "/")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("actors: savepoint %q: give its id (42) or name (sp-00000000000000000042); see eddy savepoint list", ref)
	}
	return id, nil
}

// operatorsFingerprint identifies the parts of the operator configuration
// that the meaning of keyed state depends on.
func operatorsFingerprint(c operators.Config) string {
	kind := c.Window.Kind
	if kind == "" {
		kind = operators.WindowTumbling
	}
	return fmt.Sprintf("window=%s size=%d slide=%d gap=%d ooo=%d lateness=%d maxgap=%d",
		kind, c.Window.Size.Milliseconds(), c.Window.Slide.Milliseconds(), c.Window.Gap.Milliseconds(),
		c.OutOfOrderness.Milliseconds(), c.AllowedLateness.Milliseconds(), c.MaxGap.Milliseconds())
}

func (j *Job) newOperators(t *partitionTask) *operators.Partition {
	op := operators.NewPartition(t.partition, j.cfg.Operators, j.devices)
	if t.store != nil {
		op.SetStore(t.store, j.cfg.State.CacheDevices)
	}
	return op
}

// ErrUntrackedSink: a transactional sink's writer does not implement
// sinks.CommitTracker. Exactly-once recovery needs the sink itself to say
// which checkpoint it committed last: a marker written after the commit
// would be missing after a crash between the two, and the restore would
// commit the rows of the checkpoints after it again.
var ErrUntrackedSink = errors.New("actors: transactional sink does not report its last committed checkpoint (sinks.CommitTracker)")

// openTxn opens the partition writer of a transactional sink and checks it
// reports its commits.
func openTxn(ctx context.Context, ts sinks.TransactionalSink, job string, p int32, epoch uint64) (sinks.PartitionTxn, error) {
	txn, err := ts.Txn(ctx, job, p, epoch)
	if err != nil {
		return nil, fmt.Errorf("actors: partition %d: open transactional sink: %w", p, err)
	}
	if _, ok := txn.(sinks.CommitTracker); !ok {
		txn.Close()
		return nil, fmt.Errorf("%w: %T", ErrUntrackedSink, ts)
	}
	return txn, nil
}

// lastCommitted returns the lowest and the highest of the checkpoints
// that t's transactional sinks report committed last
// (sinks.CommitTracker; read from the sink after fencing, so exact): a
// checkpoint up to low is committed in every sink, and a new checkpoint
// must be numbered above high. 0 = none committed; (MaxUint64, 0)
// without transactional sinks.
func (t *partitionTask) lastCommitted() (low, high uint64) {
	low = math.MaxUint64
	for _, txn := range t.txns {
		c, ok := txn.(sinks.CommitTracker).LastCommitted()
		if !ok {
			c = 0 // nothing ever committed
		}
		low, high = min(low, c), max(high, c)
	}
	return low, high
}

// loadSnapshot loads t's snapshot ack.Snapshot, taken at checkpoint
// of.Checkpoint or the handoff of lease epoch of.HandoffEpoch (named name in
// errors), into its state store and operators.
func (ck *checkpointer) loadSnapshot(ctx context.Context, t *partitionTask, of checkpoint.SnapshotHeader, name string, ack checkpoint.PartitionAck) error {
	j := ck.j
	size, err := ck.st.Size(ctx, ack.Snapshot)
	if err != nil {
		return err
	}
	if size != ack.Bytes {
		return fmt.Errorf("%w snapshot %s: %d bytes, the manifest says %d", checkpoint.ErrCorrupt, ack.Snapshot, size, ack.Bytes)
	}
	r, err := ck.st.NewReader(ctx, ack.Snapshot)
	if err != nil {
		return err
	}
	defer r.Close()
	op := j.newOperators(t)
	b := t.store.NewBatch()
	defer b.Close()
	var hdr checkpoint.SnapshotHeader
	fp := operatorsFingerprint(j.cfg.Operators)
	// The header is checked once the whole snapshot passed its checksum:
	// a damaged header must read as corrupt, not as another job's state.
	info, err := checkpoint.ReadSnapshot(r,
		func(h checkpoint.SnapshotHeader) error {
			hdr = h
			return nil
		},
		func(kind byte, id, value []byte) error {
			if err := b.Put(kind, id, value); err != nil {
				return err
			}
			if kind == state.KindDevice {
				return op.RestoreDevice(string(id), value)
			}
			return nil
		})
	if err == nil && info.CRC32C != ack.CRC32C {
		err = fmt.Errorf("%w snapshot %s: CRC-32C %08x, the manifest says %08x", checkpoint.ErrCorrupt, ack.Snapshot, info.CRC32C, ack.CRC32C)
	}
	if err == nil && (hdr.Job != j.cfg.Name || hdr.Partition != t.partition || hdr.Checkpoint != of.Checkpoint || hdr.HandoffEpoch != of.HandoffEpoch) {
		err = fmt.Errorf("%w snapshot %s: holds job %q partition %d checkpoint %d handoff epoch %d", checkpoint.ErrCorrupt,
			ack.Snapshot, hdr.Job, hdr.Partition, hdr.Checkpoint, hdr.HandoffEpoch)
	}
	if err == nil && hdr.Operators != fp {
		return fmt.Errorf("%w: %s has %q, the job %q; keep the configuration, or start without this checkpoint history (another checkpoint.storage)",
			ErrIncompatibleState, name, hdr.Operators, fp)
	}
	var ps operators.PartitionState
	if err == nil {
		err = ps.UnmarshalBinary(hdr.State)
	}
	if err == nil {
		err = b.Commit()
	}
	if err != nil {
		return err
	}
	if hdr.Finished && !j.cfg.Source.Bounded {
		return fmt.Errorf("%w (%s): its partitions have emitted their final watermark; run it --bounded, or use another checkpoint.storage",
			ErrJobFinished, name)
	}
	op.RestoreState(ps)
	t.op = op
	t.start = hdr.Offset
	if j.cfg.Source.Bounded && hdr.End >= 0 {
		t.end = hdr.End // the end of the run that took it: a restart reads the same input
	}
	t.finished = hdr.Finished
	t.poisoned = hdr.Poisoned
	t.prev = ps.Stats
	t.nextOffset.Store(t.start)
	t.watermark.Store(ps.Watermark)
	t.devices.Store(int64(op.Devices()))
	t.done.Store(t.finished)
	t.mu.Lock()
	t.stats = ps.Stats
	t.stats.Received += t.poisoned
	t.stats.DeadLetters += t.poisoned
	t.restoredReceived = t.stats.Received
	t.mu.Unlock()
	return nil
}

// send delivers an event to the loop unless it stopped.
func (ck *checkpointer) send(e ckEvent) {
	select {
	case ck.events <- e:
	case <-ck.loopDone:
	}
}

// onBarrier is checkpoint id at partition t, on the actor goroutine between
// two batches: pre-commit the sinks, write the changed device states and
// the partition's metadata into pebble, take a pebble snapshot, and hand it
// to an upload goroutine; processing resumes at once.
func (t *partitionTask) onBarrier(b *barrier) {
	ck := t.ck
	began := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err := stateFailure(r)
			if err == nil {
				err = fmt.Errorf("panic: %v", r)
			}
			t.failed = true
			ck.fail(fmt.Errorf("actors: partition %d: checkpoint %d: %w", t.partition, b.id, err))
		}
	}()
	if err := t.job.flushPlain(t.ctx); err != nil {
		ck.send(ckEvent{id: b.id, handoff: b.handoff, partition: t.partition, err: fmt.Errorf("sink pre-commit: %w", err)})
		return
	}
	for _, txn := range t.txns {
		if err := txn.PreCommit(t.ctx, b.id); err != nil {
			ck.send(ckEvent{id: b.id, handoff: b.handoff, partition: t.partition, err: fmt.Errorf("transactional sink pre-commit: %w", err)})
			return
		}
	}
	if len(t.txns) > 0 && !b.handoff {
		t.lat.seal(b.id) // visible with the commit of checkpoint b.id
	}
	ps, err := t.op.State().AppendBinary(nil)
	if err != nil {
		ck.send(ckEvent{id: b.id, handoff: b.handoff, partition: t.partition, err: err})
		return
	}
	hdr := checkpoint.SnapshotHeader{
		Job:        t.job.cfg.Name,
		Partition:  t.partition,
		Checkpoint: b.id,
		Offset:     t.nextOffset.Load(),
		End:        t.end,
		Finished:   t.finished,
		State:      ps,
		Operators:  operatorsFingerprint(t.job.cfg.Operators),
		Poisoned:   t.poisoned,
		CreatedMs:  began.UnixMilli(),
	}
	if b.handoff {
		hdr.HandoffEpoch = t.epoch
	}
	meta, err := json.Marshal(hdr)
	if err != nil {
		ck.send(ckEvent{id: b.id, handoff: b.handoff, partition: t.partition, err: err})
		return
	}
	batch := t.store.NewBatch()
	t.op.Checkpoint(batch)
	err = batch.Put(state.KindMeta, nil, meta)
	if err == nil {
		err = batch.Commit()
	}
	batch.Close()
	if err != nil {
		panic(err) // a state failure: fails the job (above)
	}
	snap := t.store.Snapshot()
	sync := time.Since(began)
	t.job.metrics.CheckpointSyncSeconds.Observe(sync.Seconds())
	ack := checkpoint.PartitionAck{
		Partition: t.partition,
		Epoch:     ck.epoch,
		Offset:    hdr.Offset,
		End:       hdr.End,
		Snapshot:  b.key,
		Devices:   int64(t.op.Devices()),
		Watermark: t.op.Watermark(),
		SyncMs:    float64(sync.Microseconds()) / 1000,
	}
	ck.uploads.Add(1)
	go func() {
		defer ck.uploads.Done()
		defer snap.Close()
		err := ck.writeSnapshot(t.ctx, b.key, hdr, snap, &ack)
		if err == nil && ck.delay > 0 {
			select {
			case <-time.After(ck.delay):
			case <-t.ctx.Done():
			}
		}
		d := time.Since(began)
		ack.DurationMs = float64(d.Microseconds()) / 1000
		t.job.metrics.CheckpointPartitionSeconds.Observe(d.Seconds())
		ck.send(ckEvent{id: b.id, handoff: b.handoff, partition: t.partition, ack: ack, err: err})
	}()
}

// writeSnapshot streams a pebble snapshot of the partition into storage
// and fills in the ack's size and checksum.
func (ck *checkpointer) writeSnapshot(ctx context.Context, key string, hdr checkpoint.SnapshotHeader, snap *state.Snapshot, ack *checkpoint.PartitionAck) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := ck.st.NewWriter(wctx, key)
	if err != nil {
		return err
	}
	sw, err := checkpoint.NewSnapshotWriter(w, hdr)
	if err == nil {
		err = snap.Each(sw.Add)
	}
	var info checkpoint.SnapshotInfo
	if err == nil {
		info, err = sw.Finish()
	}
	if err != nil {
		cancel() // discard the object
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", key, err)
	}
	ack.Bytes, ack.CRC32C = info.Bytes, info.CRC32C
	return nil
}

// onCommit commits the partition's transactions of a complete checkpoint
// and records that in checkpoint storage.
func (t *partitionTask) onCommit(c *commitCheckpoint) {
	ck := t.ck
	for _, txn := range t.txns {
		if err := txn.Commit(t.ctx, c.id); err != nil {
			t.failed = true
			ck.fail(fmt.Errorf("actors: partition %d: commit of checkpoint %d: %w", t.partition, c.id, err))
			return
		}
	}
	if len(t.txns) > 0 {
		t.lat.commit(c.id+1, time.Now())
	}
	if ck.coord == nil { // on a cluster the commit is tracked by the sinks
		ck.send(ckEvent{id: c.id, partition: t.partition, committed: true})
		return
	}
	if err := ck.cat.MarkCommitted(t.ctx, c.kind, c.id, t.partition); err != nil {
		t.job.log.Warn("recording a commit marker", "partition", t.partition, "checkpoint", c.id, "err", err)
	}
	ck.send(ckEvent{id: c.id, partition: t.partition, committed: true})
}

// closeTxns closes the partition's transactions: what is not committed is
// aborted.
func (t *partitionTask) closeTxns() {
	for _, txn := range t.txns {
		if err := txn.Close(); err != nil {
			t.job.log.Warn("closing a transactional sink writer", "partition", t.partition, "err", err)
		}
	}
	t.txns = nil
}

// Savepoint takes a savepoint now — after the checkpoint in progress, if
// any — and returns its manifest once it is complete. It returns
// ErrNoCheckpoints without checkpoint storage and ErrNotRunning when Run is
// not running. Safe for concurrent use.
func (j *Job) Savepoint(ctx context.Context) (*checkpoint.Manifest, error) {
	if !j.cfg.Checkpoint.Enabled() {
		return nil, ErrNoCheckpoints
	}
	j.mu.Lock()
	ck := j.ck
	j.mu.Unlock()
	if ck == nil {
		return nil, ErrNotRunning
	}
	return ck.request(ctx, checkpoint.KindSavepoint, false)
}

// CheckpointStatus returns the checkpoint state of the run. Safe for
// concurrent use.
func (j *Job) CheckpointStatus() CheckpointStatus {
	j.mu.Lock()
	ck := j.ck
	j.mu.Unlock()
	if ck == nil {
		return CheckpointStatus{Enabled: j.cfg.Checkpoint.Enabled(), Storage: j.cfg.Checkpoint.Storage}
	}
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.status
}
