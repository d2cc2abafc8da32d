package actors

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-iot/eddy/internal/promreg"
)

// histogramOf returns the histogram of family name whose labels include
// want, or nil.
func histogramOf(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Histogram {
	t.Helper()
	for _, m := range metricsOf(t, reg, name, want) {
		return m.GetHistogram()
	}
	return nil
}

// metricsOf returns the series of family name whose labels include want.
func metricsOf(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, lp := range m.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// TestLatencyTrackerRuns: records sealed under a stamp are observed by
// the first commit above it, in order, and only once; records not sealed
// yet wait.
func TestLatencyTrackerRuns(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: RecordLatencyBuckets})
	l := latencyTracker{hist: h}
	now := time.Now()
	msgs := func(ages ...time.Duration) []*sarama.ConsumerMessage {
		var out []*sarama.ConsumerMessage
		for _, a := range ages {
			out = append(out, &sarama.ConsumerMessage{Timestamp: now.Add(-a)})
		}
		return out
	}
	count := func() (uint64, float64) {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	l.add(msgs(time.Second, 2*time.Second))
	l.seal(3) // written before commit 4 began
	l.add(msgs(time.Second))
	l.add([]*sarama.ConsumerMessage{{}}) // no timestamp: not tracked
	l.seal(5)
	l.add(msgs(time.Second)) // not sealed
	l.commit(3, now)
	if n, _ := count(); n != 0 {
		t.Fatalf("commit 3 observed %d records sealed under 3 and 5", n)
	}
	l.commit(4, now)
	if n, sum := count(); n != 2 || math.Abs(sum-3) > 0.01 {
		t.Fatalf("after commit 4: %d observations, sum %.3f s; want 2, 3 s", n, sum)
	}
	l.commit(4, now)
	l.commit(6, now)
	if n, _ := count(); n != 3 {
		t.Fatalf("after commit 6: %d observations, want 3 (the unsealed one waits)", n)
	}
	l.seal(6)
	l.commit(7, now.Add(time.Second))
	if n, sum := count(); n != 4 || math.Abs(sum-6) > 0.01 {
		t.Fatalf("after commit 7: %d observations, sum %.3f s; want 4, 6 s", n, sum)
	}
	if len(l.ts) != 0 || len(l.marks) != 0 || l.sealed != 0 {
		t.Fatalf("tracker not empty: %d timestamps, marks %v, sealed %d", len(l.ts), l.marks, l.sealed)
	}
}

// TestRecordLatencyCountsEveryRecord: a bounded job observes the latency
// of each record exactly once, labelled with the job, and every latency
// lies between 0 and the time since the records were produced.
func TestRecordLatencyCountsEveryRecord(t *testing.T) {
	produced := time.Now()
	msgs := readingsFor([]string{"a", "b", "c", "d"}, 50)
	brokers := startBroker(t, 3, msgs)
	reg := prometheus.NewRegistry()
	jreg := promreg.ForJob(reg, "lat-job")
	cfg := testConfig(brokers)
	cfg.Name = "lat-job"
	sum := runJobOn(t, cfg, nil, &memSink{}, jreg)
	elapsed := time.Since(produced).Seconds()
	if sum.Received != int64(len(msgs)) {
		t.Fatalf("received %d of %d", sum.Received, len(msgs))
	}
	h := histogramOf(t, reg, "eddy_record_latency_seconds", map[string]string{promreg.JobLabel: "lat-job"})
	if h == nil {
		t.Fatal("no eddy_record_latency_seconds{eddy_job=\"lat-job\"}")
	}
	if h.GetSampleCount() != uint64(len(msgs)) {
		t.Fatalf("latency observed for %d records, want %d", h.GetSampleCount(), len(msgs))
	}
	mean := h.GetSampleSum() / float64(h.GetSampleCount())
	if mean < 0 || mean > elapsed {
		t.Fatalf("mean latency %.3f s, want within [0, %.3f] (the time since the records were produced)", mean, elapsed)
	}
	for _, b := range h.Bucket {
		if b.GetUpperBound() >= elapsed && b.GetCumulativeCount() != uint64(len(msgs)) {
			t.Fatalf("bucket le=%g holds %d of %d records, but all are younger than %.3f s", b.GetUpperBound(), b.GetCumulativeCount(), len(msgs), elapsed)
		}
	}
	t.Logf("%d records, mean latency %.1f ms (run %.0f ms)", h.GetSampleCount(), 1000*mean, 1000*elapsed)

	// The job's collectors unregister with its Group: a job of the same
	// name registers again.
	jreg.UnregisterAll()
	if _, err := NewJob(cfg, &memSink{}, nil, promreg.ForJob(reg, "lat-job"), nil); err != nil {
		t.Fatalf("registering the job again after UnregisterAll: %v", err)
	}
	if _, err := NewJob(cfg, &memSink{}, nil, promreg.ForJob(reg, "lat-job"), nil); err == nil {
		t.Fatal("a second job of the same name on the same registry registered without error")
	}
}

// TestEventTimeLagPerPartition: while an unbounded job runs, each
// partition with a watermark reports wall clock minus its watermark.
func TestEventTimeLagPerPartition(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c", "d", "e", "f"}, 20)
	brokers := startBroker(t, 3, msgs)
	reg := prometheus.NewRegistry()
	cfg := testConfig(brokers)
	cfg.Source.Bounded = false
	cfg.Name = "lag-job"
	job, err := NewJob(cfg, &memSink{}, nil, promreg.ForJob(reg, "lag-job"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int64
		for _, p := range job.Status() {
			n += p.Received
		}
		if n == int64(len(msgs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d records", n, len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	series := metricsOf(t, reg, "eddy_event_time_lag_seconds", map[string]string{promreg.JobLabel: "lag-job"})
	st := job.Status()
	withWM := 0
	for _, p := range st {
		if p.Watermark != math.MinInt64 {
			withWM++
		}
	}
	if withWM == 0 || len(series) != withWM {
		t.Fatalf("%d lag series for %d partitions with a watermark (status %+v)", len(series), withWM, st)
	}
	for _, m := range series {
		var part string
		for _, lp := range m.Label {
			if lp.GetName() == "partition" {
				part = lp.GetValue()
			}
		}
		for _, p := range st {
			if partitionLabel(p.Partition) != part {
				continue
			}
			want := time.Since(time.UnixMilli(p.Watermark)).Seconds()
			if got := m.GetGauge().GetValue(); math.Abs(got-want) > 5 {
				t.Errorf("partition %s: lag %.0f s, want about %.0f s (now - watermark %s)", part, got, want, time.UnixMilli(p.Watermark).UTC())
			}
		}
	}
}

// BenchmarkLatencyTracker is the per-record cost of the record latency: a
// batch of 512 records added, sealed and committed (one observation each).
func BenchmarkLatencyTracker(b *testing.B) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: RecordLatencyBuckets})
	l := latencyTracker{hist: h}
	now := time.Now()
	batch := make([]*sarama.ConsumerMessage, 512)
	for i := range batch {
		batch[i] = &sarama.ConsumerMessage{Timestamp: now.Add(-time.Duration(i) * time.Millisecond)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.add(batch)
		l.seal(uint64(i))
		l.commit(uint64(i+1), now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
}
