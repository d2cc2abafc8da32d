package actors

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/sinks"
)

// slowSQLiteJob starts an unbounded job without checkpoints over 12
// readings in 2 partitions into a SQLite sink that would only write once
// MaxBatchRows rows are buffered, with interval as Config.SinkFlushInterval
// and onIdle as Config.SinkFlushOnIdle. It returns the job, a handle of the database and a function that stops
// the job and returns Run's error.
func slowSQLiteJob(t *testing.T, interval time.Duration, onIdle bool) (*Job, *sql.DB, func() error) {
	t.Helper()
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b", "c"}, 4))
	sink, db := openSQLite(t, filepath.Join(t.TempDir(), "eddy.db"), sinks.Config{BatchRows: sinks.MaxBatchRows}, nil)
	cfg := testConfig(brokers)
	cfg.Source.Bounded = false
	cfg.SinkFlushInterval = interval
	cfg.SinkFlushOnIdle = onIdle
	job, err := NewJob(cfg, sink, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return job, db, stop
}

// countReadings returns the rows of the readings table of db.
func countReadings(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM readings").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunFlushesSinksWhileSlow: an unbounded job without checkpoints whose
// SQL sink would only write once BatchRows rows are buffered makes a
// handful of readings visible while it runs (the periodic flush, here
// without flushes on idle), not only when it stops.
func TestRunFlushesSinksWhileSlow(t *testing.T) {
	_, db, stop := slowSQLiteJob(t, DefaultSinkFlushInterval, false)
	eventually(t, 10*time.Second, "12 readings visible while the job runs", func() bool { return countReadings(t, db) == 12 })
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestSinkFlushIntervalHoldsRows: with Config.SinkFlushInterval far above
// the default and without flushes on idle, the readings of a slow stream
// stay buffered while the job runs (with the default 500ms they are
// visible well within the 1.5 s the test waits) and are written when it
// stops.
func TestSinkFlushIntervalHoldsRows(t *testing.T) {
	job, db, stop := slowSQLiteJob(t, time.Hour, false)
	eventually(t, 10*time.Second, "all 12 readings read", func() bool { return job.summary().Received == 12 })
	time.Sleep(1500 * time.Millisecond)
	if n := countReadings(t, db); n != 0 {
		t.Errorf("%d readings visible while the job runs with a 1h flush interval, want 0", n)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := countReadings(t, db); n != 12 {
		t.Errorf("%d readings visible after the job stopped, want 12", n)
	}
}
