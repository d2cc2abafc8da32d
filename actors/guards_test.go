package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/operators"
)

// TestGuardsUnbounded runs an unbounded job on the embedded broker with
// max_future 1h and idle_timeout 1s: a reading dated 2106 (a wrapped device
// clock) is a dead letter future_event_time and moves no watermark, so the
// readings after it are on time; and once the partition is quiet, its
// watermark follows the wall clock and the windows of the last readings
// fire without any further record.
func TestGuardsUnbounded(t *testing.T) {
	base := time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Minute)
	rec := func(ts time.Time, m float64) [2]string {
		return [2]string{"a", fmt.Sprintf(`{"event_time":%q,"metric":%g,"pboxid":"a"}`, ts.Format(time.RFC3339), m)}
	}
	msgs := [][2]string{
		rec(base, 60),
		rec(time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC), 1),
		rec(base.Add(time.Minute), 70),
		rec(base.Add(time.Minute+10*time.Second), 80), // its window ends 1 min before now: only idleness fires it
	}
	cfg := testConfig(startBroker(t, 1, msgs))
	cfg.Source.Bounded = false
	cfg.Operators.MaxFuture = time.Hour
	cfg.Operators.IdleTimeout = time.Second
	sink := &memSink{}
	reg := newTestRegistry()
	job, err := NewJob(cfg, sink, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("job: %v", err)
		}
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		sink.mu.Lock()
		nw, np := len(sink.out.Windows), len(sink.out.WorkPeriods)
		sink.mu.Unlock()
		if nw == 2 && np == 0 {
			break // the work period stays open until W passes its last reading + max gap (10 min)
		}
		if time.Now().After(deadline) {
			t.Fatalf("windows %d, work periods %d after 30 s; want the 2 windows fired by idleness", nw, np)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.out.Readings) != 3 || len(sink.out.Late) != 0 || len(sink.out.DeadLetters) != 1 {
		t.Fatalf("readings %d, late %d, dead letters %+v", len(sink.out.Readings), len(sink.out.Late), sink.out.DeadLetters)
	}
	if r := sink.out.DeadLetters[0]; operators.ReasonLabel(r.Reason) != operators.ReasonFutureEventTime || r.Offset != 1 {
		t.Fatalf("dead letter %+v", r)
	}
	if w := sink.out.Windows[1]; w.Count != 2 || w.Sum != 150 {
		t.Fatalf("windows %+v", sink.out.Windows)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "eddy_records_failed_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						failed[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if len(failed) != 1 || failed[operators.ReasonFutureEventTime] != 1 {
		t.Fatalf("eddy_records_failed_total %v, want {future_event_time: 1}", failed)
	}
}
