package actors

import (
	"context"
	"sync"
	"time"
)

// The flusher of the plain sinks. One goroutine per running job (Job.Run,
// Runtime) flushes them:
//
//   - every Config.SinkFlushInterval since its last flush (the bound on how
//     long a buffered row waits, whatever the rate), and
//   - with Config.SinkFlushOnIdle, as soon as a partition has written a
//     batch that did not fill and reached the high-water mark: its
//     reader's linger expired with nothing more at the broker, so the
//     source is caught up and no more rows are coming soon (Flink's buffer
//     timeout, Kafka Streams' commit when a task is idle).
//
// Requests coalesce: one flush in flight, at most one pending. A flush
// takes what every partition buffered, so at high rates flushes run back
// to back, never queue; each caught-up partition rings the same bell.

// flushRequests is the flusher's doorbell. The zero value is ready.
type flushRequests struct {
	once sync.Once
	c    chan struct{} // buffered (1): the pending request
}

func (r *flushRequests) bell() chan struct{} {
	r.once.Do(func() { r.c = make(chan struct{}, 1) })
	return r.c
}

// request asks for a flush; it never blocks. A request made while a flush
// runs is served by the next one (its rows may have missed this one).
func (r *flushRequests) request() {
	select {
	case r.bell() <- struct{}{}:
	default: // one already pending
	}
}

// flushEvery flushes the plain sinks every Config.SinkFlushInterval and on
// each request (flushRequests) until ctx ends. A failed flush is logged
// (the rows stay buffered); requests are then ignored until the next
// periodic flush, so a failing store is retried once per interval, not
// once per batch.
func (j *Job) flushEvery(ctx context.Context) {
	interval := j.cfg.SinkFlushInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	bell := j.flushReqs.bell()
	requests := bell
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-requests:
		}
		select {
		case <-bell: // made before this flush starts: this flush serves it
		default:
		}
		err := j.flushPlain(ctx)
		if ctx.Err() != nil {
			return
		}
		requests = bell
		if err != nil {
			j.log.Warn("sink flush failed; rows stay buffered until the next periodic flush", "err", err)
			requests = nil
		}
		// The interval counts from the last flush: a job that flushes on
		// requests does not flush periodically as well.
		tick.Reset(interval)
	}
}

// caughtUp is called on the actor goroutine once the rows of batch b are
// written to the sinks. With Config.SinkFlushOnIdle it requests a flush
// when the partition is caught up: b wrote rows to a plain sink, holds
// fewer than Config.BatchSize records (its linger closed it) and ends at
// the partition's high-water mark as of the reader's last fetch (nothing
// more waits at the broker). A partition catching up on a backlog asks for
// no flushes: its sinks write every BatchRows rows.
func (t *partitionTask) caughtUp(b *recordBatch) {
	j := t.job
	if !j.cfg.SinkFlushOnIdle || len(j.plain) == 0 || t.out.Len() == 0 || len(b.records) >= j.cfg.BatchSize {
		return
	}
	next := t.nextOffset.Load()
	if n := len(b.records); n > 0 {
		next = b.records[n-1].Offset + 1
	}
	if next < t.highWater.Load() {
		return
	}
	j.flushReqs.request()
}
