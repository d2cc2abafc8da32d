package actors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// TestFlushOnIdleWritesCaughtUpRows: with Config.SinkFlushOnIdle (the
// default) and a 1h flush interval, the readings of a slow stream into a
// SQLite sink that would only write once MaxBatchRows rows are buffered are
// visible within seconds while the job runs: each partition's batch closes
// by its linger, not full, so the job flushes at once.
func TestFlushOnIdleWritesCaughtUpRows(t *testing.T) {
	if !DefaultConfig().SinkFlushOnIdle {
		t.Fatal("DefaultConfig().SinkFlushOnIdle is false, want true")
	}
	job, db, stop := slowSQLiteJob(t, time.Hour, true)
	start := time.Now()
	eventually(t, 10*time.Second, "12 readings visible with a 1h flush interval", func() bool { return countReadings(t, db) == 12 })
	t.Logf("12 readings visible %s after the job started", time.Since(start).Round(time.Millisecond))
	if got := job.summary().Received; got != 12 {
		t.Errorf("received %d readings, want 12", got)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// gatedSink is a Discard sink whose Flush counts itself, reports its
// start on started, waits for release and returns err.
type gatedSink struct {
	*sinks.Discard
	flushes atomic.Int64
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	err     error
}

func newGatedSink() *gatedSink {
	return &gatedSink{Discard: sinks.NewDiscard(), started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gatedSink) Flush(ctx context.Context) error {
	g.flushes.Add(1)
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// gatedJob returns a job with a 1h flush interval over a gated sink,
// neither run nor flushing, and the sink.
func gatedJob(t *testing.T) (*Job, *gatedSink) {
	t.Helper()
	sink := newGatedSink()
	if err := sink.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig([]string{"127.0.0.1:1"})
	cfg.SinkFlushInterval = time.Hour
	job, err := NewJob(cfg, sink, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return job, sink
}

// flusherJob starts Job.flushEvery of a gatedJob and returns the job and
// the sink; the flusher stops with the test.
func flusherJob(t *testing.T) (*Job, *gatedSink) {
	t.Helper()
	job, sink := gatedJob(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); job.flushEvery(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return job, sink
}

// waitStarted waits for the next flush of g to start.
func (g *gatedSink) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no flush started within 10s of a request")
	}
}

// TestFlushRequestsCoalesce: a burst of 1000 flush requests while a flush
// is in flight yields exactly one more flush (one in flight, at most one
// pending), and the requests never wait for the flush.
func TestFlushRequestsCoalesce(t *testing.T) {
	job, sink := flusherJob(t)
	job.flushReqs.request()
	sink.waitStarted(t) // flush 1 in flight, held
	burst := make(chan struct{})
	go func() {
		defer close(burst)
		for range 1000 {
			job.flushReqs.request()
		}
	}()
	select {
	case <-burst:
	case <-time.After(10 * time.Second):
		t.Fatal("1000 flush requests blocked behind a flush in flight")
	}
	sink.release <- struct{}{} // flush 1 done
	sink.waitStarted(t)        // the pending request: flush 2
	sink.release <- struct{}{}
	time.Sleep(300 * time.Millisecond)
	if n := sink.flushes.Load(); n != 2 {
		t.Errorf("%d flushes for a request and a burst of 1000 during its flush, want 2", n)
	}
	// The flusher still answers: a new request after the burst flushes.
	job.flushReqs.request()
	sink.waitStarted(t)
	sink.release <- struct{}{}
	if n := sink.flushes.Load(); n != 3 {
		t.Errorf("%d flushes after one more request, want 3", n)
	}
}

// TestFlushRequestsPauseAfterFailure: after a failed flush, requests are
// ignored until the next periodic flush (a failing store is not retried
// once per caught-up batch).
func TestFlushRequestsPauseAfterFailure(t *testing.T) {
	job, sink := flusherJob(t)
	sink.err = errors.New("store down")
	job.flushReqs.request()
	sink.waitStarted(t)
	sink.release <- struct{}{} // flush 1 fails
	time.Sleep(50 * time.Millisecond)
	for range 10 {
		job.flushReqs.request()
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := sink.flushes.Load(); n != 1 {
		t.Errorf("%d flushes after a failed one and 10 requests within the 1h interval, want 1", n)
	}
}

// TestCaughtUpNeedsHighWaterMark: a written batch asks for a flush only
// when it did not fill, wrote rows, and ends at the partition's high-water
// mark; a partition behind its high-water mark (catching up on a backlog)
// or with SinkFlushOnIdle off asks for none.
func TestCaughtUpNeedsHighWaterMark(t *testing.T) {
	job, _ := gatedJob(t)
	bell := job.flushReqs.bell()
	batch := func(from, to int64) *recordBatch {
		b := &recordBatch{}
		for o := from; o < to; o++ {
			b.records = append(b.records, &sarama.ConsumerMessage{Offset: o})
		}
		return b
	}
	task := &partitionTask{job: job}
	task.out.Readings = []operators.Reading{{PboxID: "a"}}
	for _, tc := range []struct {
		what     string
		b        *recordBatch
		hwm      int64
		rows     bool
		onIdle   bool
		wantBell bool
	}{
		{"caught up", batch(10, 20), 20, true, true, true},
		{"behind the high-water mark", batch(10, 20), 21, true, true, false},
		{"full batch", batch(0, int64(job.cfg.BatchSize)), int64(job.cfg.BatchSize), true, true, false},
		{"no rows", batch(10, 20), 20, false, true, false},
		{"flush_on_idle off", batch(10, 20), 20, true, false, false},
	} {
		task.highWater.Store(tc.hwm)
		job.cfg.SinkFlushOnIdle = tc.onIdle
		rows := task.out.Readings
		if !tc.rows {
			task.out.Readings = nil
		}
		task.caughtUp(tc.b)
		task.out.Readings = rows
		got := false
		select {
		case <-bell:
			got = true
		default:
		}
		if got != tc.wantBell {
			t.Errorf("%s: flush requested %v, want %v", tc.what, got, tc.wantBell)
		}
	}
}
