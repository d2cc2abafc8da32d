package actors

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/sinks"
)

// TestRunFlushesSinksWhileSlow: an unbounded job without checkpoints whose
// SQL sink would only write once BatchRows rows are buffered makes a
// handful of readings visible while it runs (the periodic flush), not only
// when it stops.
func TestRunFlushesSinksWhileSlow(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b", "c"}, 4))
	path := filepath.Join(t.TempDir(), "eddy.db")
	sink, err := sinks.NewSQLite(path, sinks.Config{BatchRows: sinks.MaxBatchRows}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	db, err := sql.Open("sqlite", sinks.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := testConfig(brokers)
	cfg.Source.Bounded = false
	job, err := NewJob(cfg, sink, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	eventually(t, 10*time.Second, "12 readings visible while the job runs", func() bool {
		var n int
		return db.QueryRow("SELECT COUNT(*) FROM readings").Scan(&n) == nil && n == 12
	})
}
