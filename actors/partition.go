package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/eddy-iot/eddy/actors/state"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// maxRecordAttempts is how often one record may panic the operator chain
// before it goes to the dead-letter output with reason operators.ReasonOperatorPanic.
const maxRecordAttempts = 3

// recordBatch is the message a source reader sends to its partition actor.
type recordBatch struct {
	records []*sarama.ConsumerMessage
	// final marks the end of bounded input: after the records, the actor
	// emits the final watermark.
	final bool
	// done receives the result once the batch is processed and written to
	// the sink; buffered (1).
	done chan error
}

// partitionTask is the state of one device partition. It outlives the
// incarnations of its actor: supervision replaces the actor, not the task,
// so a restart resumes the batch in flight at the record that panicked.
// Fields below mu are touched only by the actor goroutine.
type partitionTask struct {
	job       *Job
	ctx       context.Context
	partition int32
	// epoch is the lease epoch the partition runs under (the fencing
	// token its sink writes carry); 0 for a local Job.
	epoch uint64
	pid   *actor.PID
	start int64 // first offset to read
	end   int64 // bounded end offset (exclusive); -1 unbounded

	op       *operators.Partition
	out      operators.Output
	cur      *recordBatch
	cursor   int   // next record of cur to process
	inflight int64 // offset being processed; finishOffset during Finish
	finished bool

	poisonOffset   int64
	poisonAttempts int
	poisonReason   string
	poisoned       int64 // records sent to the dead-letter output as ReasonOperatorPanic

	prev operators.PartitionStats // stats already added to the metrics
	lat  latencyTracker           // record timestamps waiting for their commit

	// Checkpointing (checkpointing.go); ck and store are nil without
	// checkpoints.
	ck       *checkpointer
	store    *state.Store
	txns     []sinks.PartitionTxn // one per transactional sink, in Job.tx order
	restored uint64               // checkpoint id restored from; 0 = none (or a handoff snapshot)
	// restoredReceived is Received (poisoned included) of the restored
	// checkpoint; set before the actor starts.
	restoredReceived int64
	failed           bool // a state or commit failure failed the job

	// status, read by Job.Status from other goroutines
	nextOffset atomic.Int64
	highWater  atomic.Int64
	watermark  atomic.Int64
	done       atomic.Bool
	devices    atomic.Int64 // devices with open state
	mu         sync.Mutex
	stats      operators.PartitionStats
}

// finishOffset marks the final watermark as the work in flight.
const finishOffset = math.MaxInt64

func (j *Job) newTask(ctx context.Context, client sarama.Client, p int32) (*partitionTask, error) {
	t := &partitionTask{
		job:          j,
		ctx:          ctx,
		partition:    p,
		end:          -1,
		op:           operators.NewPartition(p, j.cfg.Operators, j.devices),
		poisonOffset: -1,
		lat:          latencyTracker{hist: j.metrics.RecordLatency},
	}
	oldest, err := client.GetOffset(j.cfg.Source.Topic, p, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("actors: oldest offset of partition %d: %w", p, err)
	}
	newest, err := client.GetOffset(j.cfg.Source.Topic, p, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("actors: newest offset of partition %d: %w", p, err)
	}
	t.start = oldest
	if j.cfg.Source.StartOffset == StartLatest {
		t.start = newest
	}
	if j.cfg.Source.Bounded {
		t.end = newest
		if e, ok := j.cfg.Source.EndOffsets[p]; ok {
			t.end = e
		}
	}
	t.nextOffset.Store(t.start)
	t.highWater.Store(newest)
	// The series exists from the start, 0 until a sink buffer is full.
	j.metrics.Backpressured.WithLabelValues(partitionLabel(p)).Set(0)
	t.watermark.Store(math.MinInt64)
	return t, nil
}

// read is the source reader of the partition: it consumes from t.start and
// delivers batches to the actor one at a time. It returns nil at the bounded
// end, ctx.Err() when cancelled, or the first consumer or sink error.
func (t *partitionTask) read(ctx context.Context, consumer sarama.Consumer, root *actor.RootContext) error {
	if t.end >= 0 && t.start >= t.end {
		return t.deliver(ctx, root, &recordBatch{final: true})
	}
	pc, err := consumer.ConsumePartition(t.job.cfg.Source.Topic, t.partition, t.start)
	if err != nil {
		return fmt.Errorf("actors: consume partition %d from offset %d: %w", t.partition, t.start, err)
	}
	defer pc.AsyncClose()
	size, linger := t.job.cfg.BatchSize, t.job.cfg.BatchLinger
	// With an idle timeout (unbounded only), empty batches carry the
	// processing time to a quiet partition (operators.Config.IdleTimeout).
	var idle <-chan time.Time
	if it := t.job.cfg.Operators.IdleTimeout; it > 0 && t.end < 0 {
		tick := time.NewTicker(min(it, time.Second))
		defer tick.Stop()
		idle = tick.C
	}
	msgs := pc.Messages()
	// The reader waits for each batch (deliver), so one records slice
	// serves every batch.
	buf := make([]*sarama.ConsumerMessage, 0, min(size, 1024))
	for {
		b := &recordBatch{records: buf[:0]}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
			if err := t.deliver(ctx, root, b); err != nil {
				return err
			}
			continue
		case cerr := <-pc.Errors():
			return fmt.Errorf("actors: partition %d: %w", t.partition, cerr)
		case m := <-msgs:
			b.records = append(b.records, m)
		}
		if err := t.fill(ctx, b, msgs, size, linger); err != nil {
			return err
		}
		buf = b.records
		b.final = t.atEnd(b)
		t.highWater.Store(pc.HighWaterMarkOffset())
		if err := t.deliver(ctx, root, b); err != nil {
			return err
		}
		if b.final {
			return nil
		}
	}
}

// fill adds records from msgs to b, which holds one, until it has size
// records, reaches the bounded end, or linger has passed since its first
// record. Records already buffered in msgs are taken without a select (a
// receive that cannot block costs a fraction of a select with a timer);
// the timer starts only when msgs runs dry.
func (t *partitionTask) fill(ctx context.Context, b *recordBatch, msgs <-chan *sarama.ConsumerMessage, size int, linger time.Duration) error {
	first := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(b.records) < size && !t.atEnd(b) {
		select {
		case m := <-msgs:
			b.records = append(b.records, m)
			continue
		default:
		}
		if timer == nil {
			wait := linger - time.Since(first)
			if wait <= 0 {
				return nil
			}
			timer = time.NewTimer(wait)
		}
		select {
		case m := <-msgs:
			b.records = append(b.records, m)
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (t *partitionTask) atEnd(b *recordBatch) bool {
	return t.end >= 0 && len(b.records) > 0 && b.records[len(b.records)-1].Offset+1 >= t.end
}

func (t *partitionTask) deliver(ctx context.Context, root *actor.RootContext, b *recordBatch) error {
	b.done = make(chan error, 1)
	root.Send(t.pid, b)
	select {
	case err := <-b.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// partitionActor is one incarnation of a partition actor.
type partitionActor struct{ t *partitionTask }

func (a *partitionActor) Receive(c actor.Context) {
	t := a.t
	switch m := c.Message().(type) {
	case *actor.Started:
		if t.cur != nil { // restarted by supervision: resume the batch
			t.process()
		}
	case *recordBatch:
		if t.failed {
			m.done <- fmt.Errorf("actors: partition %d failed", t.partition)
			return
		}
		t.cur, t.cursor = m, 0
		t.process()
	case *barrier:
		if !t.failed {
			t.onBarrier(m)
		}
	case *commitCheckpoint:
		if !t.failed {
			t.onCommit(m)
		}
	}
}

// process runs the operator chain over the rest of the current batch and
// writes the emissions to the sink. A panic is noted and re-raised so that
// supervision restarts the actor; the restart resumes here at t.cursor.
func (t *partitionTask) process() {
	b := t.cur
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			if err := stateFailure(r); err != nil {
				// The state store failed: not the record's fault. The
				// job fails and restarts from its last checkpoint.
				t.failed, t.cur = true, nil
				b.done <- fmt.Errorf("actors: partition %d: %w", t.partition, err)
				return
			}
			t.notePanic(r)
			panic(r)
		}
	}()
	if t.cursor == 0 {
		t.op.AdvanceProcessingTime(time.Now().UnixMilli(), &t.out)
	}
	for t.cursor < len(b.records) {
		m := b.records[t.cursor]
		if m.Offset == t.poisonOffset && t.poisonAttempts >= maxRecordAttempts {
			t.out.DeadLetters = append(t.out.DeadLetters, operators.DeadLetter{
				Partition: t.partition,
				Offset:    m.Offset,
				Reason:    operators.ReasonOperatorPanic + ": " + t.poisonReason,
				Payload:   m.Value,
			})
			t.job.metrics.Received.Inc()
			t.poisoned++
			t.cursor++
			continue
		}
		t.inflight = m.Offset
		t.op.Process(m.Offset, m.Value, &t.out)
		t.cursor++
	}
	if b.final && !t.finished {
		if t.poisonOffset == finishOffset && t.poisonAttempts >= maxRecordAttempts {
			t.cur = nil
			b.done <- fmt.Errorf("actors: partition %d: final watermark panicked %d times: %s", t.partition, t.poisonAttempts, t.poisonReason)
			return
		}
		t.inflight = finishOffset
		t.op.Finish(&t.out)
		t.finished = true
	}
	err := t.write()
	if err == nil {
		t.written(b)
		t.caughtUp(b) // flush.go
	}
	t.observe(b)
	t.out.Reset()
	t.cur = nil
	t.job.metrics.BatchSeconds.Observe(time.Since(start).Seconds())
	b.done <- err
}

func (t *partitionTask) notePanic(r any) {
	reason := fmt.Sprint(r)
	if t.inflight == t.poisonOffset {
		t.poisonAttempts++
	} else {
		t.poisonOffset, t.poisonAttempts = t.inflight, 1
	}
	t.poisonReason = reason
	t.job.log.Error("partition actor panicked; supervision restarts it",
		"partition", t.partition, "offset", t.inflight, "attempt", t.poisonAttempts, "panic", reason)
}

// observe publishes the status and metrics after a batch.
func (t *partitionTask) observe(b *recordBatch) {
	m := t.job.metrics
	st := t.op.Stats()
	m.Received.Add(float64(st.Received - t.prev.Received))
	m.Parsed.Add(float64(st.Valid + st.Late - t.prev.Valid - t.prev.Late))
	m.Late.Add(float64(st.Late - t.prev.Late))
	m.WindowsFired.Add(float64(st.WindowsFired - t.prev.WindowsFired))
	m.WorkPeriods.Add(float64(st.WorkPeriods - t.prev.WorkPeriods))
	for i := range t.out.DeadLetters {
		m.Failed.WithLabelValues(operators.ReasonLabel(t.out.DeadLetters[i].Reason)).Inc()
	}
	t.prev = st
	if n := len(b.records); n > 0 {
		t.nextOffset.Store(b.records[n-1].Offset + 1)
	}
	wm := t.op.Watermark()
	t.watermark.Store(wm)
	t.devices.Store(int64(t.op.Devices()))
	label := partitionLabel(t.partition)
	if wm != math.MinInt64 && wm != math.MaxInt64 {
		m.Watermark.WithLabelValues(label).Set(float64(wm) / 1000)
	}
	m.Lag.WithLabelValues(label).Set(float64(max(0, t.highWater.Load()-t.nextOffset.Load())))
	m.StateDevices.WithLabelValues(label).Set(float64(t.op.Devices()))
	if b.final {
		t.done.Store(true)
	}
	t.mu.Lock()
	t.stats = st
	t.stats.Received += t.poisoned
	t.stats.DeadLetters += t.poisoned
	t.mu.Unlock()
}

func (t *partitionTask) status() PartitionStatus {
	t.mu.Lock()
	st := t.stats
	t.mu.Unlock()
	next := t.nextOffset.Load()
	return PartitionStatus{
		Partition:      t.partition,
		NextOffset:     next,
		EndOffset:      t.end,
		Lag:            max(0, t.highWater.Load()-next),
		Watermark:      t.watermark.Load(),
		Done:           t.done.Load(),
		Devices:        t.devices.Load(),
		Restored:       t.restored,
		PartitionStats: st,
	}
}

// write hands the emissions of a batch to every sink: the plain ones (under
// the partition's lease epoch where the sink fences by epoch), and the
// partition's transactions of the transactional ones. A sink whose buffer
// is full blocks it (backpressure; see Job.backpressured).
func (t *partitionTask) write() error {
	if t.out.Len() == 0 {
		return nil
	}
	for _, s := range t.job.plain {
		var err error
		if ew, ok := s.(sinks.EpochWriter); ok {
			err = ew.WriteEpoch(t.ctx, t.partition, t.epoch, &t.out)
		} else {
			err = s.Write(t.ctx, &t.out)
		}
		if err != nil {
			return fmt.Errorf("actors: partition %d: sink write: %w", t.partition, err)
		}
	}
	for _, txn := range t.txns {
		if err := txn.Write(t.ctx, &t.out); err != nil {
			return fmt.Errorf("actors: partition %d: transactional sink write: %w", t.partition, err)
		}
	}
	return nil
}

// stateFailure returns the error of a panic raised by the state store, nil
// for any other panic.
func stateFailure(r any) error {
	if err, ok := r.(error); ok && errors.Is(err, state.ErrStore) {
		return err
	}
	return nil
}
