package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/state"
)

// The local driver: Job.Run (eddy run, eddy dev) runs every partition of
// the job on one Runtime, as a cluster node runs its share, and is the
// Runtime's control plane itself. It starts each partition with the
// Runtime's restore (Runtime.start) from the complete checkpoints and
// savepoints of the local catalog, numbers checkpoints with its own
// checkpoint.CheckpointCoordinator and sends their barriers through the
// Runtime, collects the partitions' acks, commits through the Runtime and
// ends with the Runtime's graceful stop (drain). Only the coordinator
// loop below, savepoint requests, the final checkpoint of a bounded run,
// the offset commits and retention are local.

// Run reads the source and processes it until the bounded end is reached or
// ctx is cancelled; then it flushes the sinks and stops the actors. A
// cancelled ctx is a normal stop (nil error). Run may be called once.
//
// With checkpoints on (Config.Checkpoint), each partition first restores
// the newest checkpoint it may restore from (see the package
// documentation), checkpoints are taken every Checkpoint.Interval, and a
// bounded run ends with a final checkpoint that commits everything.
func (j *Job) Run(ctx context.Context) (Summary, error) {
	j.mu.Lock()
	j.start = time.Now()
	j.mu.Unlock()
	// Only Run commits source offsets to the consumer group (on a cluster
	// the Raft leader does, with its own eddy_offset_commits_total).
	if j.reg != nil {
		if err := j.reg.Register(j.commits); err != nil {
			return Summary{}, fmt.Errorf("actors: register job metrics: %w", err)
		}
	}

	// runCtx ends with the caller's ctx or with the first fatal failure of
	// a partition or of the checkpoint coordinator (its cause); the
	// runtime's partitions (readers, sink writes) run under it.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r, err := newRuntime(runCtx, j, RuntimeHooks{
		Failed: func(_ int32, _ uint64, err error) { cancel(err) },
	})
	if err != nil {
		return Summary{}, err
	}
	r.local = true
	var ck *checkpointer
	defer func() {
		r.Close() // without partitions left after drain; nothing to flush
		if ck != nil {
			ck.offsets.Close() // after the final checkpoint: sends its commit
			ck.close()
		}
	}()
	parts, err := j.partitions(r.client)
	if err != nil {
		return Summary{}, err
	}
	if j.cfg.Checkpoint.Enabled() {
		if ck, err = j.openCheckpointing(runCtx, parts, cancel); err != nil {
			return Summary{}, err
		}
		if ck.offsets, err = NewOffsetCommitter(j.cfg, j.commits, j.log); err != nil {
			return Summary{}, err
		}
		ck.rt, r.ck = r, ck
	}
	// Flush the plain sinks every SinkFlushInterval while the job runs, so
	// that rows do not sit in a sink's buffer while the stream is slow.
	r.startFlushes()
	ended := make(chan int32, len(parts)) // each partition reaches its bounded end once
	r.boundedEnd = func(p int32) { ended <- p }

	// Every partition is restored before any reads: a restore that fails
	// fails the run before anything was written.
	gate := make(chan struct{})
	tasks := make([]*partitionTask, 0, len(parts))
	for _, p := range parts {
		s := partStart{epoch: 0, points: nil, actor: fmt.Sprintf("%s/%d", j.cfg.Name, p), gate: gate}
		if ck != nil {
			s.txnEpoch, s.points = ck.epoch, ck.restorePoints(p)
		}
		t, err := r.start(runCtx, p, s)
		if err != nil {
			return Summary{}, err
		}
		tasks = append(tasks, t)
		if ck != nil {
			// No new checkpoint may take an id a transactional sink
			// already committed.
			_, high := t.lastCommitted()
			ck.ids.Reserve(high)
		}
	}
	j.mu.Lock()
	j.tasks = tasks
	j.mu.Unlock()
	if ck != nil {
		ck.start(runCtx, parts)
	}
	close(gate)

	var runErr error
	if j.cfg.Source.Bounded {
	wait:
		for range parts {
			select {
			case <-ended:
			case <-runCtx.Done():
				runErr = context.Cause(runCtx)
				break wait
			}
		}
	} else {
		<-runCtx.Done()
		runErr = context.Cause(runCtx)
	}
	var final uint64
	if runErr == nil && ck != nil && j.cfg.Source.Bounded {
		// Flink's final checkpoint of a finished bounded job: it commits
		// what the transactional sinks hold and records the end.
		m, err := ck.request(runCtx, checkpoint.KindCheckpoint, true)
		if err != nil {
			runErr = fmt.Errorf("actors: final checkpoint: %w", err)
		} else {
			final = m.ID
		}
	}
	if ck != nil {
		ck.stop()
	}
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		runErr = cause // a fatal failure explains the readers' cancellation
	}
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil // stopped by the caller
	}
	if err := r.drain(time.Minute); err != nil && runErr == nil {
		runErr = fmt.Errorf("actors: final sink flush: %w", err)
	}
	sum := j.summary()
	sum.FinalCheckpoint = final
	return sum, runErr
}

// restorePoints returns partition p's restore points: its snapshots of the
// complete checkpoints and savepoints in the order of preference (newest
// first; a run started from a savepoint has it adopted as the newest).
func (ck *checkpointer) restorePoints(p int32) []RestorePoint {
	var out []RestorePoint
	for _, m := range ck.candidates {
		a, ok := m.Ack(p)
		if !ok {
			continue
		}
		pt := RestorePoint{
			Checkpoint: m.ID, Offset: a.Offset,
			Snapshot:       FormatSnapshotRef(a.Snapshot, a.Bytes, a.CRC32C),
			NoTransactions: !m.Transactional,
			manifest:       m.Name(),
		}
		if m.RestoredFrom != "" { // the copy of a savepoint (Adopt)
			if sp, err := ParseSavepointRef(m.RestoredFrom); err == nil {
				pt.taken = sp
			}
		}
		out = append(out, pt)
	}
	return out
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

// openCheckpointing opens the checkpoint side of a local run over parts:
// the storage and its catalog (deleting the incomplete checkpoints of a
// crashed run), the id counter, the coordinator, the adoption of
// Checkpoint.FromSavepoint as the newest checkpoint, the restore
// candidates and the state store. fail fails the run (a partition's state
// or commit failure).
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

// start runs the coordinator loop over parts, which run on ck.rt.
func (ck *checkpointer) start(ctx context.Context, parts []int32) {
	ctx, ck.cancel = context.WithCancel(ctx)
	ck.parts = parts
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
	for _, p := range ck.parts {
		if err := ck.rt.barrier(p, 0, id, kind, ck.cat.SnapshotKey(kind, id, p)); err != nil {
			ck.j.log.Warn("checkpoint barrier not sent", "id", id, "partition", p, "err", err)
		}
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
		for _, p := range ck.parts {
			ck.rt.commit(p, m.ID, m.Kind)
		}
		if cur.req != nil && cur.final {
			w = &commitWait{m: m, pending: map[int32]bool{}, req: cur.req}
			for _, p := range ck.parts {
				w.pending[p] = true
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
