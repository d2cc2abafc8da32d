package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/state"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

var (
	// ErrRuntimeClosed is returned by Runtime methods after Close.
	ErrRuntimeClosed = errors.New("actors: runtime closed")
	// ErrPartitionNotRunning is returned by Handoff and Barrier for a
	// partition the runtime does not run (under that epoch).
	ErrPartitionNotRunning = errors.New("actors: partition not running")
	// ErrLeaseNotValid is wrapped by the error of Handoff when
	// RuntimeHooks.LeaseValid says the partition's lease expired before its
	// handoff snapshot could be handed over.
	ErrLeaseNotValid = errors.New("actors: lease no longer valid")
)

// leaseValid is RuntimeHooks.LeaseValid, true when it is nil.
func (r *Runtime) leaseValid(p int32, epoch uint64) bool {
	return r.hooks.LeaseValid == nil || r.hooks.LeaseValid(p, epoch)
}

// RestorePoint is a place a partition can be restored from: a snapshot in
// checkpoint storage and the source offset it resumes at.
type RestorePoint struct {
	// Checkpoint is the id of the checkpoint the snapshot belongs to; 0
	// for a handoff snapshot.
	Checkpoint uint64
	// Handoff: the snapshot is the handoff snapshot that the partition's
	// owner under lease epoch Epoch took when it released the lease
	// (Runtime.Handoff); Checkpoint is 0.
	Handoff bool
	// Epoch is the lease epoch of a handoff snapshot; 0 otherwise.
	Epoch uint64
	// Offset is the next source offset after the restore.
	Offset int64
	// Snapshot is a snapshot reference (FormatSnapshotRef); "" = none.
	Snapshot string
	// NoTransactions: the checkpoint was taken without transactional
	// sinks (its manifest says Transactional false, e.g. a savepoint that
	// a run started from), so none of its rows waits for a commit: it is
	// restorable whatever checkpoint the transactional sinks report
	// committed. Set by a local Job.Run; false on a cluster.
	NoTransactions bool

	// manifest is the name of the local checkpoint the point comes from
	// (chk-…, sp-…), logged as checkpoint=; "" on a cluster.
	manifest string
	// taken is the checkpoint id the snapshot's header holds when it is
	// not Checkpoint: a savepoint's snapshot that a local run adopted as
	// checkpoint Checkpoint (checkpoint.Catalog.Adopt copies it as it
	// is); 0 = Checkpoint.
	taken uint64
}

// FormatSnapshotRef encodes a snapshot's storage key, size in bytes and
// CRC-32C as one string ("key#bytes#crc32c-hex"), the form a RestorePoint and
// the control plane's records carry, so that a restore can verify the
// snapshot before it trusts it.
func FormatSnapshotRef(key string, bytes int64, crc uint32) string {
	return fmt.Sprintf("%s#%d#%08x", key, bytes, crc)
}

// ParseSnapshotRef decodes FormatSnapshotRef.
func ParseSnapshotRef(ref string) (key string, bytes int64, crc uint32, err error) {
	i := strings.LastIndexByte(ref, '#')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(ref[:i], '#')
	}
	if j <= 0 {
		return "", 0, 0, fmt.Errorf("actors: snapshot reference %q: want key#bytes#crc32c", ref)
	}
	n, err1 := strconv.ParseInt(ref[j+1:i], 10, 64)
	c, err2 := strconv.ParseUint(ref[i+1:], 16, 32)
	if err1 != nil || err2 != nil {
		return "", 0, 0, fmt.Errorf("actors: snapshot reference %q: want key#bytes#crc32c", ref)
	}
	return ref[:j], n, uint32(c), nil
}

// RuntimeHooks connect a Runtime to the control plane.
type RuntimeHooks struct {
	// Ack records that partition p, running under lease epoch, has taken
	// its snapshot of checkpoint id (point). It is called from a goroutine
	// of the runtime, one per ack; ctx ends with the runtime. Required when
	// checkpoints are on.
	Ack func(ctx context.Context, p int32, epoch uint64, id uint64, point RestorePoint)
	// Failed reports that partition p (epoch) stopped on an error (source,
	// sink, state store); the runtime no longer runs it. nil: logged only.
	Failed func(p int32, epoch uint64, err error)
	// LeaseValid reports whether this node's lease of partition p under
	// epoch is still valid (not expired by the holder's clock bound, not
	// taken over). The SQL sinks ask it right before each write
	// transaction for every partition with buffered rows, and drop the
	// rows of a partition whose lease is no longer valid instead of
	// writing them (sinks.EpochWriter.SetLeaseGuard). It is called with a
	// sink's buffer lock held: it must be fast and must not block (read
	// local state, no Raft round trip). The runtime also asks it before it
	// reports a checkpoint ack (Ack) or returns a handoff point: a
	// partition whose rows a sink may have dropped must not be restored
	// from a snapshot taken after the drop. So the answer for (p, epoch)
	// must be final once false. nil: always valid.
	LeaseValid func(p int32, epoch uint64) bool
}

// Runtime runs a chosen, changing set of one job's device partitions on this
// node: the cluster runtime, where each partition is started, handed off and
// stopped on its own as its lease (package control) says. It shares one
// sarama client, one actor system, one state store and the job's sinks
// between its partitions. Checkpoints are driven from outside (Barrier,
// Commit) by the cluster's coordinator. Job.Run drives a Runtime of its
// own the same way, with every partition of the job (local.go).
//
// Its methods are safe for concurrent use; calls for one partition must not
// overlap.
type Runtime struct {
	j        *Job
	hooks    RuntimeHooks
	client   sarama.Client
	consumer sarama.Consumer
	system   *actor.ActorSystem
	ck       *checkpointer // nil without checkpoints
	// local: the runtime is the engine of a local Job.Run (local.go),
	// whose checkpointer loop takes the partitions' barrier outcomes and
	// owns the checkpoint storage and state store; a partition that fails
	// or stops keeps its buffered sink rows for the run's final flush.
	local bool
	// boundedEnd, if set, is called once a partition's reader reached its
	// bounded end and the partition processed everything up to it.
	boundedEnd func(p int32)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	parts  map[int32]*runPart
	closed bool
	// handoffs waits for handoff snapshot acks, by partition.
	handoffs map[int32]chan ckEvent
	// barriers maps a pending checkpoint barrier to the epoch it was sent
	// under.
	barriers map[barrierKey]uint64
}

type barrierKey struct {
	p  int32
	id uint64
}

type runPart struct {
	t          *partitionTask
	epoch      uint64             // lease epoch: the sink epoch of t
	stopTask   context.CancelFunc // ends t.ctx: sink writes
	stopRead   context.CancelFunc
	readDone   chan struct{}
	lastBarrer uint64
}

// NewRuntime validates cfg and opens the runtime of a job: a Kafka client,
// the actor system and, with checkpoints, the checkpoint storage and the
// state store (Config.StateDir, emptied). sink, devices, reg and log are as
// for NewJob. Close releases everything.
func NewRuntime(cfg Config, sink sinks.Sink, devices operators.DeviceLookup, reg prometheus.Registerer, log *slog.Logger, hooks RuntimeHooks) (*Runtime, error) {
	j, err := NewJob(cfg, sink, devices, reg, log)
	if err != nil {
		return nil, err
	}
	if cfg.Checkpoint.Enabled() && hooks.Ack == nil {
		return nil, errors.New("actors: runtime with checkpoints needs RuntimeHooks.Ack")
	}
	if cfg.Source.Partitions != nil {
		return nil, errors.New("actors: a cluster job runs every partition of its topic (leave source.partitions out)")
	}
	if cfg.Checkpoint.FromSavepoint != "" {
		return nil, errors.New("actors: a cluster job cannot start from a savepoint yet")
	}
	r, err := newRuntime(context.Background(), j, hooks)
	if err != nil {
		return nil, err
	}
	for _, s := range j.plain {
		if ew, ok := s.(sinks.EpochWriter); ok {
			ew.SetLeaseGuard(hooks.LeaseValid)
		}
	}
	if cfg.Checkpoint.Enabled() {
		st, err := checkpoint.OpenStorage(r.ctx, cfg.Checkpoint.Storage)
		if err != nil {
			r.closeClients()
			return nil, err
		}
		db, err := state.Open(state.Config{Dir: cfg.StateDir(), CacheBytes: cfg.State.CacheBytes, Log: j.log})
		if err != nil {
			st.Close()
			r.closeClients()
			return nil, err
		}
		r.ck = &checkpointer{
			j: j, st: st, db: db,
			fail:     func(cause error) { j.log.Error("partition failed", "err", cause) },
			events:   make(chan ckEvent, 64),
			loopDone: make(chan struct{}),
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.events()
		}()
	}
	r.startFlushes()
	return r, nil
}

// newRuntime returns the runtime of job j without checkpoints and without
// its goroutines: the Kafka client and consumer and the actor system; its
// partitions run until ctx ends or they stop. For NewRuntime, and for
// Job.Run around its own Job (without NewRuntime's cluster-only checks,
// and without registering the job's metrics again).
func newRuntime(ctx context.Context, j *Job, hooks RuntimeHooks) (*Runtime, error) {
	client, err := newSaramaClient(j.cfg.Source)
	if err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("actors: kafka consumer: %w", err)
	}
	r := &Runtime{
		j: j, hooks: hooks, client: client, consumer: consumer,
		system:   newActorSystem(j.log),
		parts:    map[int32]*runPart{},
		handoffs: map[int32]chan ckEvent{},
		barriers: map[barrierKey]uint64{},
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r, nil
}

// startFlushes starts the periodic flushes of the plain sinks (flushLoop),
// until Close.
func (r *Runtime) startFlushes() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.flushLoop()
	}()
}

func (r *Runtime) closeClients() {
	r.cancel()
	r.consumer.Close()
	r.client.Close()
	r.system.Shutdown()
}

// Config returns the job configuration.
func (r *Runtime) Config() Config { return r.j.cfg }

// Transactional reports whether the runtime writes transactional sinks
// (their rows become visible when a checkpoint commits; handoffs then go
// through the last committed checkpoint).
func (r *Runtime) Transactional() bool { return len(r.j.tx) > 0 }

// Partitions returns the partition count of the source topic.
func (r *Runtime) Partitions() (int32, error) {
	ps, err := r.j.partitions(r.client)
	if err != nil {
		return 0, err
	}
	return int32(len(ps)), nil
}

// flushLoop flushes the plain sinks every Config.SinkFlushInterval, so
// that rows do not sit in a sink's buffer while the stream is slow.
func (r *Runtime) flushLoop() { r.j.flushEvery(r.ctx) }

// Start restores partition p and starts it under lease epoch: from the
// first usable point of points, tried in order of decreasing offset
// (snapshots that are corrupt, missing or — with transactional sinks — not
// known to be committed are skipped), else from the configured start
// position. It returns once the partition runs.
func (r *Runtime) Start(ctx context.Context, p int32, epoch uint64, points []RestorePoint) error {
	sorted := append([]RestorePoint(nil), points...)
	sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].Offset > sorted[b].Offset })
	_, err := r.start(ctx, p, partStart{
		epoch: epoch, txnEpoch: epoch, points: sorted,
		actor: fmt.Sprintf("%s/%d@%d", r.j.cfg.Name, p, epoch),
	})
	return err
}

// partStart says how a partition starts.
type partStart struct {
	// epoch is the lease epoch: the epoch of the partition's writes to the
	// sinks that fence by epoch (sinks.EpochWriter), of Barrier and
	// Handoff, and of its handoff snapshots.
	epoch uint64
	// txnEpoch is the epoch its transactional sinks' writers are opened
	// under (TransactionalSink.Txn). A cluster uses the lease epoch; a
	// local Job.Run writes epoch 0 to the SQL sinks (a restarted run whose
	// clock is behind must not be fenced out by its own earlier rows) and
	// fences its transactional writers by its start time.
	txnEpoch uint64
	// points are the restore points in the order of preference.
	points []RestorePoint
	// actor is the partition actor's name.
	actor string
	// gate, if set, holds the reader back until it is closed (a local
	// run restores every partition before any reads).
	gate <-chan struct{}
}

// start restores partition p from the first usable of s.points and starts
// it; it returns the partition's task once it runs.
func (r *Runtime) start(ctx context.Context, p int32, s partStart) (*partitionTask, error) {
	epoch := s.epoch
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrRuntimeClosed
	}
	if _, ok := r.parts[p]; ok {
		r.mu.Unlock()
		return nil, fmt.Errorf("actors: partition %d already runs", p)
	}
	r.mu.Unlock()
	j := r.j
	taskCtx, stopTask := context.WithCancel(r.ctx)
	ok := false
	defer func() {
		if !ok {
			stopTask()
		}
	}()
	t, err := j.newTask(taskCtx, r.client, p)
	if err != nil {
		return nil, err
	}
	t.epoch = epoch
	if r.ck != nil {
		if err := r.restore(ctx, t, s.txnEpoch, s.points); err != nil {
			t.closeTxns()
			return nil, err
		}
		if err := j.clampToLogStart(r.client, t); err != nil {
			t.closeTxns()
			return nil, err
		}
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &partitionActor{t: t} },
		actor.WithGuardian(&reportingRestart{log: j.log, restarts: j.metrics.ActorRestarts}))
	pid, err := r.system.Root.SpawnNamed(props, s.actor)
	if err != nil {
		t.closeTxns()
		return nil, fmt.Errorf("actors: spawn partition actor %d: %w", p, err)
	}
	t.pid = pid
	readCtx, stopRead := context.WithCancel(taskCtx)
	rp := &runPart{t: t, epoch: epoch, stopTask: stopTask, stopRead: stopRead, readDone: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = r.system.Root.StopFuture(pid).Wait()
		t.closeTxns()
		return nil, ErrRuntimeClosed
	}
	r.parts[p] = rp
	r.mu.Unlock()
	j.addLive(t)
	ok = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(rp.readDone)
		if s.gate != nil {
			select {
			case <-s.gate:
			case <-readCtx.Done():
				return
			}
		}
		err := t.read(readCtx, r.consumer, r.system.Root)
		switch {
		case err == nil: // the bounded end: make the last rows visible
			if ferr := j.flushPlain(taskCtx); ferr != nil && taskCtx.Err() == nil {
				j.log.Warn("sink flush at the bounded end", "partition", p, "err", ferr)
			}
			j.log.Info("partition reached its bounded end", "partition", p, "offset", t.nextOffset.Load())
			if r.boundedEnd != nil {
				r.boundedEnd(p)
			}
		case readCtx.Err() != nil: // stopped or handed off
		default:
			j.log.Error("partition failed", "partition", p, "epoch", epoch, "err", err)
			if !r.local {
				// Its restart replays from a restore point: what it
				// left buffered must not be written twice (or after
				// its lease).
				j.dropBuffered(p)
			}
			if r.hooks.Failed != nil {
				r.hooks.Failed(p, epoch, err)
			}
		}
	}()
	j.log.Info("partition started", "partition", p, "epoch", epoch, "offset", t.start, "restored", t.restored)
	return t, nil
}

// restore opens t's transactions under epoch and restores it from the
// first usable of points (in the order given).
func (r *Runtime) restore(ctx context.Context, t *partitionTask, epoch uint64, points []RestorePoint) error {
	ck, j := r.ck, r.j
	began := time.Now()
	t.ck = ck
	t.store = ck.db.Partition(t.partition)
	if err := t.store.Clear(); err != nil { // left from an earlier run here
		return err
	}
	t.op = j.newOperators(t)
	transactional := len(j.tx) > 0
	for _, ts := range j.tx {
		txn, err := openTxn(ctx, ts, j.cfg.Name, t.partition, epoch)
		if err != nil {
			return err
		}
		t.txns = append(t.txns, txn)
	}
	limit, _ := t.lastCommitted() // highest checkpoint every transactional sink committed
	for _, pt := range points {
		if pt.Snapshot == "" || (transactional && !pt.NoTransactions && (pt.Handoff || pt.Checkpoint == 0 || pt.Checkpoint > limit)) {
			continue
		}
		of := checkpoint.SnapshotHeader{Checkpoint: pt.Checkpoint}
		if pt.taken != 0 {
			of.Checkpoint = pt.taken
		}
		name := fmt.Sprintf("checkpoint %d", pt.Checkpoint)
		if pt.Handoff {
			of = checkpoint.SnapshotHeader{HandoffEpoch: pt.Epoch}
			name = fmt.Sprintf("handoff of epoch %d", pt.Epoch)
		}
		label := name // in errors
		if pt.manifest != "" {
			label = pt.manifest
		}
		key, size, crc, err := ParseSnapshotRef(pt.Snapshot)
		if err == nil {
			err = ck.loadSnapshot(ctx, t, of, label,
				checkpoint.PartitionAck{Partition: t.partition, Snapshot: key, Bytes: size, CRC32C: crc})
		}
		// A local checkpoint is named too (checkpoint=chk-…), as the
		// manifests and directories in its storage are.
		var local []any
		if pt.manifest != "" {
			local = []any{"checkpoint", pt.manifest}
		}
		if err == nil {
			t.restored = pt.Checkpoint
			j.metrics.RestoreSeconds.Observe(time.Since(began).Seconds())
			j.log.Info("partition restored", append(append([]any{"partition", t.partition}, local...),
				"from", name, "offset", t.start, "devices", t.op.Devices(), "bytes", size,
				"took", time.Since(began).Round(time.Microsecond))...)
			return nil
		}
		if !errors.Is(err, checkpoint.ErrCorrupt) && !errors.Is(err, checkpoint.ErrNotExist) && !errors.Is(err, operators.ErrBadState) {
			return err
		}
		j.metrics.RestoreFallbacks.Inc()
		j.log.Error("snapshot unusable; falling back to an older one", append(append([]any{"partition", t.partition}, local...),
			"snapshot", pt.Snapshot, "err", err)...)
		if err := t.store.Clear(); err != nil {
			return err
		}
		t.op = j.newOperators(t)
	}
	if len(points) > 0 {
		j.log.Warn("no usable snapshot for partition; starting at the configured position", "partition", t.partition, "start", t.start)
	}
	return nil
}

// snapshotKey is the storage key of a partition's snapshot of cluster
// checkpoint id, or of its handoff snapshot (handoff; id is 0).
func (r *Runtime) snapshotKey(p int32, epoch uint64, id uint64, handoff bool) string {
	if handoff {
		return fmt.Sprintf("%s/cluster/handoff/p%05d-e%d.snap", r.j.cfg.Name, p, epoch)
	}
	return fmt.Sprintf("%s/cluster/chk-%020d/p%05d-e%d.snap", r.j.cfg.Name, id, p, epoch)
}

// Barrier asks partition p, running under epoch, to take its snapshot of
// checkpoint id between two batches; RuntimeHooks.Ack reports it. A barrier
// for an id the partition already got is ignored. It returns
// ErrPartitionNotRunning when p does not run under epoch.
func (r *Runtime) Barrier(p int32, epoch uint64, id uint64) error {
	return r.barrier(p, epoch, id, checkpoint.KindCheckpoint, r.snapshotKey(p, epoch, id, false))
}

// barrier is Barrier for a checkpoint of kind whose snapshot of p goes to
// storage key key (a local run numbers savepoints too and names snapshots
// by its catalog: Catalog.SnapshotKey).
func (r *Runtime) barrier(p int32, epoch uint64, id uint64, kind checkpoint.Kind, key string) error {
	if r.ck == nil {
		return ErrNoCheckpoints
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.parts[p]
	if rp == nil || rp.epoch != epoch {
		return ErrPartitionNotRunning
	}
	if id <= rp.lastBarrer {
		return nil
	}
	rp.lastBarrer = id
	if !r.local { // a local run's outcomes go to its checkpointer loop
		r.barriers[barrierKey{p, id}] = epoch
	}
	r.system.Root.Send(rp.t.pid, &barrier{id: id, kind: kind, key: key})
	return nil
}

// Commit tells partition p that checkpoint id is complete: its
// transactional sinks commit what they pre-committed for it. A no-op
// without transactional sinks or when p does not run.
func (r *Runtime) Commit(p int32, id uint64) { r.commit(p, id, checkpoint.KindCheckpoint) }

// commit is Commit of checkpoint id of kind (a local run records a commit
// marker under the checkpoint's kind, see onCommit).
func (r *Runtime) commit(p int32, id uint64, kind checkpoint.Kind) {
	if len(r.j.tx) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rp := r.parts[p]; rp != nil && rp.lastBarrer >= id {
		r.system.Root.Send(rp.t.pid, &commitCheckpoint{id: id, kind: kind})
	}
}

// events routes the partitions' barrier outcomes: checkpoint acks to
// RuntimeHooks.Ack, handoff snapshots to the waiting Handoff.
func (r *Runtime) events() {
	defer close(r.ck.loopDone)
	for {
		select {
		case <-r.ctx.Done():
			return
		case e := <-r.ck.events:
			if e.committed {
				continue
			}
			r.mu.Lock()
			if e.handoff {
				if w := r.handoffs[e.partition]; w != nil {
					w <- e
					delete(r.handoffs, e.partition)
				}
				r.mu.Unlock()
				continue
			}
			epoch, ok := r.barriers[barrierKey{e.partition, e.id}]
			delete(r.barriers, barrierKey{e.partition, e.id})
			r.mu.Unlock()
			if !ok {
				continue
			}
			if e.err != nil {
				r.j.metrics.Checkpoints.WithLabelValues(string(checkpoint.KindCheckpoint), "failed").Inc()
				r.j.log.Warn("partition checkpoint failed", "partition", e.partition, "checkpoint", e.id, "err", e.err)
				continue
			}
			if !r.leaseValid(e.partition, epoch) {
				// The sinks may have dropped rows of the partition
				// (lease guard) before this snapshot's pre-commit: a
				// restore from it could lose them. LeaseValid's answer
				// for an epoch is final once false, so no later ack
				// of this epoch goes through either.
				r.j.metrics.Checkpoints.WithLabelValues(string(checkpoint.KindCheckpoint), "failed").Inc()
				r.j.log.Warn("partition checkpoint not acked: lease no longer valid", "partition", e.partition, "checkpoint", e.id, "epoch", epoch)
				continue
			}
			pt := RestorePoint{Checkpoint: e.id, Offset: e.ack.Offset, Snapshot: FormatSnapshotRef(e.ack.Snapshot, e.ack.Bytes, e.ack.CRC32C)}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.hooks.Ack(r.ctx, e.partition, epoch, e.id, pt)
			}()
		}
	}
}

// Handoff drains partition p (epoch) for its next owner: the reader stops,
// the batch in flight finishes, the partition snapshots its state to
// checkpoint storage, flushes the sinks and stops. It returns the point to
// resume from. With transactional sinks, or without checkpoints, it only
// stops the partition and returns an empty point (the next owner restores
// the last committed checkpoint, or starts at the configured position).
// When it returns the partition no longer runs, error or not.
func (r *Runtime) Handoff(ctx context.Context, p int32, epoch uint64) (RestorePoint, error) {
	r.mu.Lock()
	rp := r.parts[p]
	r.mu.Unlock()
	if rp == nil || rp.epoch != epoch {
		return RestorePoint{}, ErrPartitionNotRunning
	}
	defer r.Stop(p)
	if r.ck == nil || len(r.j.tx) > 0 {
		return RestorePoint{}, nil
	}
	rp.stopRead()
	select {
	case <-rp.readDone:
	case <-ctx.Done():
		return RestorePoint{}, ctx.Err()
	}
	w := make(chan ckEvent, 1)
	r.mu.Lock()
	r.handoffs[p] = w
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.handoffs[p] == w {
			delete(r.handoffs, p)
		}
		r.mu.Unlock()
	}()
	r.system.Root.Send(rp.t.pid, &barrier{handoff: true, kind: checkpoint.KindSavepoint, key: r.snapshotKey(p, epoch, 0, true)})
	select {
	case e := <-w:
		if e.err != nil {
			return RestorePoint{}, fmt.Errorf("actors: partition %d: handoff snapshot: %w", p, e.err)
		}
		if !r.leaseValid(p, epoch) { // see events: its rows may have been dropped
			return RestorePoint{}, fmt.Errorf("actors: partition %d: handoff snapshot: %w", p, ErrLeaseNotValid)
		}
		return RestorePoint{Handoff: true, Epoch: epoch, Offset: e.ack.Offset, Snapshot: FormatSnapshotRef(e.ack.Snapshot, e.ack.Bytes, e.ack.CRC32C)}, nil
	case <-ctx.Done():
		return RestorePoint{}, ctx.Err()
	}
}

// Stop stops partition p at once: no snapshot; what its transactional sinks
// hold uncommitted is aborted, and the rows it left in the buffers of the
// plain sinks that fence by epoch (sinks.EpochWriter.Drop) are dropped, so
// they are never written after its lease is lost (its next owner writes
// them again from its restore point). It returns when the partition no
// longer processes or writes (rows a sink flush had already begun to write
// may still commit; the epoch condition of the SQL upserts keeps them from
// replacing a newer owner's rows). Stopping a partition that does not run
// is a no-op.
func (r *Runtime) Stop(p int32) {
	r.mu.Lock()
	rp := r.parts[p]
	delete(r.parts, p)
	r.mu.Unlock()
	if rp == nil {
		return
	}
	rp.stopRead()
	<-rp.readDone
	// End the sink writes before waiting for the actor: a write blocked on
	// a full sink buffer (backpressure during a sink outage) would
	// otherwise hold the actor, and Stop, until the store comes back.
	rp.stopTask()
	_ = r.system.Root.StopFuture(rp.t.pid).Wait()
	rp.t.closeTxns()
	r.j.removeLive(rp.t)
	if !r.local {
		r.j.dropBuffered(p)
	}
	r.j.log.Info("partition stopped", "partition", p, "epoch", rp.epoch, "offset", rp.t.nextOffset.Load())
}

// drain is the graceful stop of every partition at the end of a local
// run: the readers stop, each actor finishes the batch in flight and
// stops, then the plain sinks are flushed — everything the partitions
// wrote, nothing dropped (without checkpoints nothing replays it) — and
// only then the partitions' transactions close (what is not committed is
// aborted) and they leave the live set (so that the flush observes their
// record latency). It returns the flush's error, bounded by timeout.
func (r *Runtime) drain(timeout time.Duration) error {
	r.mu.Lock()
	rps := make([]*runPart, 0, len(r.parts))
	for _, rp := range r.parts {
		rps = append(rps, rp)
	}
	clear(r.parts)
	r.mu.Unlock()
	for _, rp := range rps {
		rp.stopRead()
	}
	for _, rp := range rps {
		<-rp.readDone
		// As in Stop: a write blocked on a full sink buffer ends.
		rp.stopTask()
		_ = r.system.Root.StopFuture(rp.t.pid).Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := r.j.flushPlain(ctx)
	for _, rp := range rps {
		rp.t.closeTxns()
		r.j.removeLive(rp.t)
	}
	return err
}

// Running returns the partitions running, with their epochs.
func (r *Runtime) Running() map[int32]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int32]uint64, len(r.parts))
	for p, rp := range r.parts {
		out[p] = rp.epoch
	}
	return out
}

// Status returns the live state of partition p, if it runs.
func (r *Runtime) Status(p int32) (PartitionStatus, bool) {
	r.mu.Lock()
	rp := r.parts[p]
	r.mu.Unlock()
	if rp == nil {
		return PartitionStatus{}, false
	}
	return rp.t.status(), true
}

// Close stops every partition (like Stop) and releases the runtime.
// Idempotent.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ps := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		r.Stop(p)
	}
	var errs []error
	if !r.local { // a local run flushed in drain
		flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs = append(errs, r.j.flushPlain(flushCtx))
	}
	r.cancel()
	if r.ck != nil {
		r.ck.uploads.Wait()
	}
	r.wg.Wait()
	if r.ck != nil && !r.local { // a local run's checkpointer closes them
		errs = append(errs, r.ck.db.Close(), r.ck.st.Close())
	}
	r.closeClients()
	return errors.Join(errs...)
}

// DeleteCheckpointsBefore deletes from checkpoint storage the partition
// snapshots of the job's cluster checkpoints with an id below id (those the
// control plane no longer retains) and returns the ids it deleted. Handoff
// snapshots are kept. Without checkpoints it does nothing.
func (r *Runtime) DeleteCheckpointsBefore(ctx context.Context, id uint64) ([]uint64, error) {
	if r.ck == nil {
		return nil, nil
	}
	prefix := r.j.cfg.Name + "/cluster/"
	dirs, err := r.ck.st.ListDirs(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var deleted []uint64
	var errs []error
	for _, d := range dirs {
		n, err := strconv.ParseUint(strings.TrimPrefix(d, "chk-"), 10, 64)
		if !strings.HasPrefix(d, "chk-") || err != nil || n >= id {
			continue
		}
		if err := r.ck.st.DeletePrefix(ctx, prefix+d+"/"); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, n)
	}
	return deleted, errors.Join(errs...)
}
