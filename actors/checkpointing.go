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

	"github.com/asynkron/protoactor-go/actor"

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

// checkpointer is the checkpoint side of a running job: the coordinator
// loop, the snapshot uploads, the restore at start.
type checkpointer struct {
	j          *Job
	st         *checkpoint.Storage
	cat        *checkpoint.Catalog
	coord      *checkpoint.CheckpointCoordinator // nil in a cluster Runtime
	ids        *checkpoint.StorageIDCounter
	db         *state.DB
	candidates []*checkpoint.Manifest // complete at start, newest first
	epoch      uint64                 // lease epoch substitute on one node: start time, Unix ms
	delay      time.Duration          // TestCheckpointDelayEnv
	fail       context.CancelCauseFunc
	offsets    *OffsetCommitter // nil: offset commits off

	events   chan ckEvent
	requests chan *ckRequest
	cancel   context.CancelFunc
	loopDone chan struct{}
	uploads  sync.WaitGroup
	tasks    []*partitionTask
	root     *actor.RootContext

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

// ckRequest asks the loop for a checkpoint of kind now (savepoints, the
// final checkpoint); done receives the outcome.
type ckRequest struct {
	kind  checkpoint.Kind
	final bool
	done  chan ckResult
}

type ckResult struct {
	m   *checkpoint.Manifest
	err error
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

func (j *Job) openCheckpointing(ctx context.Context, parts []int32, fail context.CancelCauseFunc) (*checkpointer, error) {
	cfg := j.cfg.Checkpoint
	st, err := checkpoint.OpenStorage(ctx, cfg.Storage)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	cat := checkpoint.NewCatalog(st, j.cfg.Name)
	// The counter reads the ids before the incomplete checkpoints of a
	// crashed run go, so that none of their ids is used again.
	ids, err := checkpoint.NewStorageIDCounter(ctx, cat)
	if err != nil {
		return nil, err
	}
	deleted, err := cat.DeleteIncomplete(ctx)
	if err != nil {
		return nil, err
	}
	if len(deleted) > 0 {
		j.log.Info("deleted incomplete checkpoints of an earlier run", "job", j.cfg.Name, "deleted", deleted)
	}
	coord, err := checkpoint.NewCheckpointCoordinator(checkpoint.CoordinatorConfig{
		Job: j.cfg.Name, Partitions: parts, Interval: cfg.Interval, AckTimeout: cfg.Timeout,
		Retain: cfg.Retain, Transactional: len(j.tx) > 0,
	}, ids, checkpoint.NewStorageCheckpointStore(cat, parts), time.Now())
	if err != nil {
		return nil, err
	}
	if cfg.FromSavepoint != "" {
		id, err := ParseSavepointRef(cfg.FromSavepoint)
		if err != nil {
			return nil, err
		}
		sp, err := coord.Store().Savepoint(ctx, id)
		if err != nil {
			return nil, err
		}
		next, err := ids.Next(ctx)
		if err != nil {
			return nil, err
		}
		m, err := cat.Adopt(ctx, sp, next)
		if err != nil {
			return nil, err
		}
		j.log.Info("starting from savepoint", "savepoint", sp.Name(), "as", m.Name())
	}
	candidates, err := coord.Restorable(ctx)
	if err != nil {
		return nil, err
	}
	db, err := state.Open(state.Config{Dir: j.cfg.StateDir(), CacheBytes: j.cfg.State.CacheBytes, Log: j.log})
	if err != nil {
		return nil, err
	}
	ck := &checkpointer{
		j: j, st: st, cat: cat, coord: coord, ids: ids, db: db, candidates: candidates,
		epoch:    uint64(time.Now().UnixMilli()),
		fail:     fail,
		events:   make(chan ckEvent, 4*len(parts)+4),
		requests: make(chan *ckRequest),
		status:   CheckpointStatus{Enabled: true, Storage: st.URL(), StateDir: db.Dir()},
	}
	if ck.delay, err = testCheckpointDelay(); err != nil {
		db.Close()
		return nil, err
	}
	if ck.delay > 0 {
		j.log.Warn("test hook: every partition delays its checkpoint ack", "delay", ck.delay)
	}
	ok = true
	return ck, nil
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

// restore prepares task t before its actor starts: it opens its
// transactions (fencing earlier writers), picks the newest checkpoint t may
// restore from and loads it, falling back to older ones when a snapshot is
// corrupt or missing; without any, t starts at the configured position.
func (ck *checkpointer) restore(ctx context.Context, t *partitionTask) error {
	j := ck.j
	began := time.Now()
	t.ck = ck
	t.store = ck.db.Partition(t.partition)
	t.op = j.newOperators(t)
	for _, ts := range j.tx {
		txn, err := openTxn(ctx, ts, j.cfg.Name, t.partition, ck.epoch)
		if err != nil {
			return err
		}
		t.txns = append(t.txns, txn)
	}
	eligible, err := ck.eligibility(t)
	if err != nil {
		return err
	}
	for _, m := range ck.candidates {
		ack, ok := m.Ack(t.partition)
		if !ok {
			continue
		}
		if ok, err := eligible(ctx, m); err != nil {
			return err
		} else if !ok {
			continue
		}
		err := ck.restoreFrom(ctx, t, m, ack)
		if err == nil {
			j.metrics.RestoreSeconds.Observe(time.Since(began).Seconds())
			j.log.Info("partition restored", "partition", t.partition, "checkpoint", m.Name(), "offset", t.start,
				"devices", t.op.Devices(), "bytes", ack.Bytes, "took", time.Since(began).Round(time.Microsecond))
			return nil
		}
		if !errors.Is(err, checkpoint.ErrCorrupt) && !errors.Is(err, checkpoint.ErrNotExist) && !errors.Is(err, operators.ErrBadState) {
			return err
		}
		j.metrics.RestoreFallbacks.Inc()
		j.log.Error("snapshot unusable; falling back to the previous checkpoint", "partition", t.partition,
			"checkpoint", m.Name(), "err", err)
		if err := t.store.Clear(); err != nil {
			return err
		}
		t.op = j.newOperators(t)
	}
	if len(ck.candidates) > 0 {
		j.log.Warn("no usable checkpoint for partition; starting at the configured position",
			"partition", t.partition, "start", t.start)
	}
	return nil
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

// eligibility returns whether t may restore from a manifest. Without
// transactional sinks every complete checkpoint qualifies. With them, only
// checkpoints whose transactions t committed: those up to the last
// committed one the sinks report (sinks.CommitTracker; read from Kafka
// after fencing, so exact).
func (ck *checkpointer) eligibility(t *partitionTask) (func(context.Context, *checkpoint.Manifest) (bool, error), error) {
	limit := uint64(math.MaxUint64)
	for _, txn := range t.txns {
		c, ok := txn.(sinks.CommitTracker).LastCommitted()
		if !ok {
			c = 0 // nothing ever committed
		}
		limit = min(limit, c)
		ck.ids.Reserve(c)
	}
	return func(ctx context.Context, m *checkpoint.Manifest) (bool, error) {
		if !m.Transactional {
			return true, nil
		}
		return m.ID <= limit, nil
	}, nil
}

// restoreFrom loads t's snapshot of m into its state store and operators.
func (ck *checkpointer) restoreFrom(ctx context.Context, t *partitionTask, m *checkpoint.Manifest, ack checkpoint.PartitionAck) error {
	if err := ck.loadSnapshot(ctx, t, checkpoint.SnapshotHeader{Checkpoint: m.ID}, m.Name(), ack); err != nil {
		return err
	}
	t.restored = m.ID
	return nil
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

// start runs the coordinator loop.
func (ck *checkpointer) start(ctx context.Context, root *actor.RootContext, tasks []*partitionTask) {
	ctx, ck.cancel = context.WithCancel(ctx)
	ck.tasks, ck.root = tasks, root
	ck.loopDone = make(chan struct{})
	go func() {
		defer close(ck.loopDone)
		ck.loop(ctx)
	}()
	ck.j.mu.Lock()
	ck.j.ck = ck // now Savepoint and CheckpointStatus see it
	ck.j.mu.Unlock()
}

// stop ends the loop, aborting a checkpoint in progress. Idempotent.
func (ck *checkpointer) stop() {
	if ck.cancel != nil {
		ck.cancel()
		<-ck.loopDone
	}
}

// close waits for the snapshot uploads and releases the state store and the
// storage; after the partition actors stopped (they start uploads).
func (ck *checkpointer) close() {
	ck.stop()
	ck.uploads.Wait()
	if err := ck.db.Close(); err != nil {
		ck.j.log.Warn("closing the state store", "err", err)
	}
	ck.st.Close()
}

// request asks for a checkpoint of kind and waits until it is complete
// (and, for the final one with transactional sinks, committed).
func (ck *checkpointer) request(ctx context.Context, kind checkpoint.Kind, final bool) (*checkpoint.Manifest, error) {
	r := &ckRequest{kind: kind, final: final, done: make(chan ckResult, 1)}
	select {
	case ck.requests <- r:
	case <-ck.loopDone:
		return nil, ErrNotRunning
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.m, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send delivers an event to the loop unless it stopped.
func (ck *checkpointer) send(e ckEvent) {
	select {
	case ck.events <- e:
	case <-ck.loopDone:
	}
}

// inflight is the checkpoint in progress.
type inflight struct {
	id      uint64
	kind    checkpoint.Kind
	final   bool
	started time.Time
	req     *ckRequest
}

// commitWait waits for every partition's commit of a checkpoint.
type commitWait struct {
	m       *checkpoint.Manifest
	pending map[int32]bool
	req     *ckRequest
}

// loop drives the coordinator: it wakes when a periodic checkpoint or an
// ack timeout is due (CheckpointCoordinator.Wake, Due), takes requested
// checkpoints in order after the one in progress, and feeds it the
// partitions' acks.
func (ck *checkpointer) loop(ctx context.Context) {
	j := ck.j
	var cur *inflight
	var queue []*ckRequest
	waits := map[uint64]*commitWait{}
	finalTaken := false
	timer := time.NewTimer(time.Hour) // reset to the coordinator's wake-up every round
	defer timer.Stop()
	defer func() {
		err := ctx.Err()
		if cur != nil {
			ck.abort(cur, err, false)
		}
		for _, r := range queue {
			r.done <- ckResult{err: ErrNotRunning}
		}
		for _, w := range waits {
			if w.req != nil {
				w.req.done <- ckResult{err: ErrNotRunning}
			}
		}
	}()
	for {
		if cur == nil && len(queue) > 0 {
			r := queue[0]
			queue = queue[1:]
			cur = ck.begin(ctx, r.kind, r.final, r)
			finalTaken = finalTaken || r.final
		}
		var wake <-chan time.Time
		if cur != nil || !finalTaken { // after the final checkpoint no periodic one
			timer.Reset(max(time.Until(ck.coord.Wake()), 0))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			d := ck.coord.Due(time.Now())
			switch {
			case cur != nil && d.Expired == cur.id:
				ck.abort(cur, fmt.Errorf("timed out after %s", j.cfg.Checkpoint.Timeout), true)
				cur = nil
			case cur == nil && d.Trigger && len(queue) == 0 && !finalTaken:
				cur = ck.begin(ctx, checkpoint.KindCheckpoint, false, nil)
			}
		case r := <-ck.requests:
			queue = append(queue, r)
		case e := <-ck.events:
			switch {
			case e.committed:
				if w := waits[e.id]; w != nil {
					delete(w.pending, e.partition)
					if len(w.pending) == 0 {
						delete(waits, e.id)
						w.req.done <- ckResult{m: w.m}
					}
				}
			case cur == nil || e.id != cur.id:
				// An aborted checkpoint's late ack.
			case e.err != nil:
				ck.abort(cur, fmt.Errorf("partition %d: %w", e.partition, e.err), false)
				cur = nil
			default:
				m, err := ck.coord.Ack(ctx, e.id, e.ack, time.Now())
				if err != nil {
					ck.abort(cur, err, false)
					cur = nil
					continue
				}
				if m != nil {
					if w := ck.complete(ctx, cur, m); w != nil {
						waits[m.ID] = w
					}
					cur = nil
				}
			}
		}
	}
}

// begin starts checkpoint kind: the coordinator numbers it and the barrier
// goes to every partition actor.
func (ck *checkpointer) begin(ctx context.Context, kind checkpoint.Kind, final bool, req *ckRequest) *inflight {
	now := time.Now()
	id, err := ck.coord.Trigger(ctx, kind, final, now)
	if err != nil {
		if req != nil {
			req.done <- ckResult{err: err}
		}
		return nil
	}
	cur := &inflight{id: id, kind: kind, final: final, started: now, req: req}
	ck.mu.Lock()
	ck.status.InProgress = id
	ck.mu.Unlock()
	ck.j.log.Debug("checkpoint started", "id", id, "kind", kind, "final", final)
	for _, t := range ck.tasks {
		ck.root.Send(t.pid, &barrier{id: id, kind: kind, key: ck.cat.SnapshotKey(kind, id, t.partition)})
	}
	return cur
}

// abort gives up checkpoint cur and deletes what was stored for it;
// timedOut: its ack timeout passed (the next checkpoint is due at once).
func (ck *checkpointer) abort(cur *inflight, cause error, timedOut bool) {
	ck.coord.Abort(cur.id, timedOut)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ck.cat.Delete(ctx, cur.kind, cur.id); err != nil {
		ck.j.log.Warn("deleting an aborted checkpoint", "id", cur.id, "err", err)
	}
	ck.j.metrics.Checkpoints.WithLabelValues(string(cur.kind), "failed").Inc()
	ck.j.log.Warn("checkpoint aborted", "id", cur.id, "kind", cur.kind, "cause", cause)
	ck.mu.Lock()
	ck.status.InProgress = 0
	ck.status.Failed++
	ck.mu.Unlock()
	if cur.req != nil {
		cur.req.done <- ckResult{err: fmt.Errorf("actors: checkpoint %d aborted: %w", cur.id, cause)}
	}
}

// complete handles a complete checkpoint: metrics, the commit of its
// source offsets to the consumer group, the commit of the transactional
// sinks, retention, the requester. It returns the wait for
// the commits when the requester must see them first.
func (ck *checkpointer) complete(ctx context.Context, cur *inflight, m *checkpoint.Manifest) *commitWait {
	j := ck.j
	took := time.Since(cur.started)
	j.metrics.CheckpointSeconds.Observe(took.Seconds())
	j.metrics.CheckpointBytes.Set(float64(m.Bytes()))
	j.metrics.CheckpointLastID.Set(float64(m.ID))
	j.metrics.Checkpoints.WithLabelValues(string(m.Kind), "completed").Inc()
	j.log.Info("checkpoint complete", "id", m.ID, "kind", m.Kind, "final", m.Final,
		"took", took.Round(time.Microsecond), "bytes", m.Bytes())
	ck.mu.Lock()
	ck.status.InProgress = 0
	ck.status.Last = m
	ck.status.Completed++
	ck.mu.Unlock()

	// The group's committed offsets follow the completed checkpoint (lag
	// tools read them; restore does not): one asynchronous commit, so a
	// slow broker never holds the coordinator loop.
	offsets := make(map[int32]int64, len(m.Partitions))
	for _, a := range m.Partitions {
		offsets[a.Partition] = a.Offset
	}
	ck.offsets.Submit(m.ID, offsets)

	var w *commitWait
	if len(j.tx) > 0 {
		for _, t := range ck.tasks {
			ck.root.Send(t.pid, &commitCheckpoint{id: m.ID, kind: m.Kind})
		}
		if cur.req != nil && cur.final {
			w = &commitWait{m: m, pending: map[int32]bool{}, req: cur.req}
			for _, t := range ck.tasks {
				w.pending[t.partition] = true
			}
		}
	}
	if w == nil && cur.req != nil {
		cur.req.done <- ckResult{m: m}
	}
	if deleted, err := ck.coord.Subsume(ctx); err != nil {
		j.log.Warn("checkpoint retention", "err", err)
	} else if len(deleted) > 0 {
		j.log.Debug("deleted old checkpoints", "deleted", deleted)
	}
	return w
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
