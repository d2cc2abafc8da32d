package actors

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/sinktest"
)

// TestSinkOutageBackpressure runs a bounded job into a SQLite sink whose
// store is broken (readings dropped) and whose buffer is small: the
// partitions stop reading once the buffer is full (backpressured = 1, the
// job does not finish), nothing is dropped, and when the store is repaired
// the job finishes with every reading stored exactly once.
func TestSinkOutageBackpressure(t *testing.T) {
	devices := []string{"a", "b", "c", "d"}
	const perDevice = 300
	brokers := startBroker(t, 2, readingsFor(devices, perDevice))
	path := filepath.Join(t.TempDir(), "eddy.db")
	sink, err := sinks.NewSQLite(path, sinks.Config{MaxBufferBytes: 16 << 10, BatchRows: sinks.MaxBatchRows}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sink.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	db, err := sql.Open("sqlite", sinks.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DROP TABLE readings"); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	job, err := NewJob(testConfig(brokers), sink, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := job.Run(ctx)
		done <- result{sum, err}
	}()
	backpressured := func() (n int) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "eddy_partition_backpressured" {
				for _, m := range mf.GetMetric() {
					if m.GetGauge().GetValue() == 1 {
						n++
					}
				}
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); backpressured() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no partition backpressured within 30 s of a sink outage with a full buffer")
		}
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("the job ended (%+v, %v) while its sink was broken", r.sum, r.err)
	default:
	}
	var processed int64
	for _, st := range job.Status() {
		processed += st.Received
	}
	if processed >= int64(len(devices)*perDevice) {
		t.Errorf("the partitions processed all %d records during the outage; backpressure should have stopped them", processed)
	}
	t.Logf("records processed while the sink was down and its buffer full: %d of %d", processed, len(devices)*perDevice)

	repair, err := sinks.NewSQLite(path, sinks.Config{}, nil) // Open recreates readings
	if err != nil {
		t.Fatal(err)
	}
	if err := repair.Open(ctx); err != nil {
		t.Fatal(err)
	}
	repair.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sum.Valid != int64(len(devices)*perDevice) {
		t.Fatalf("summary %+v, want %d valid", r.sum, len(devices)*perDevice)
	}
	if n := backpressured(); n != 0 {
		t.Errorf("%d partitions still backpressured after the job ended", n)
	}
	out, err := sinktest.ReadAll(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Readings) != len(devices)*perDevice || int64(len(out.Windows)) != r.sum.WindowsFired {
		t.Fatalf("store has %d readings and %d windows, want %d and %d", len(out.Readings), len(out.Windows), len(devices)*perDevice, r.sum.WindowsFired)
	}
}
