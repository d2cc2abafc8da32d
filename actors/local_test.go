package actors

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks"
)

// epochTxnSink is a txnSink that records the epochs its partition writers
// are opened under.
type epochTxnSink struct {
	*txnSink
	mu     sync.Mutex
	epochs map[int32]uint64
}

func (s *epochTxnSink) Txn(ctx context.Context, job string, p int32, epoch uint64) (sinks.PartitionTxn, error) {
	s.mu.Lock()
	s.epochs[p] = epoch
	s.mu.Unlock()
	return s.txnSink.Txn(ctx, job, p, epoch)
}

// openSQLite opens a SQLite sink at path (its metrics in reg; nil: none)
// and a handle of its database, both closed at the test's end.
func openSQLite(t *testing.T, path string, cfg sinks.Config, reg prometheus.Registerer) (*sinks.SQLite, *sql.DB) {
	t.Helper()
	sink, err := sinks.NewSQLite(path, cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	db, err := sql.Open("sqlite", sinks.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return sink, db
}

// TestRunEpochsAndFinalCheckpointRestore: a local run writes its SQL rows
// at epoch 0 and opens its transactional writers under its start time
// (Unix ms); its bounded end takes the final checkpoint, and a restart
// restores it in every partition and has nothing left to do.
func TestRunEpochsAndFinalCheckpointRestore(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c", "d", "e"}, 40)
	brokers := startBroker(t, 3, msgs)
	dir := t.TempDir()
	sqlite, db := openSQLite(t, filepath.Join(dir, "eddy.db"), sinks.Config{}, nil)
	broker := &txnBroker{d: newDurable(), committed: map[int32]uint64{}}
	cfg := crashConfig(brokers, dir)
	cfg.Checkpoint.Interval = time.Hour // the final checkpoint only

	run := func() (Summary, *Job, map[int32]uint64, time.Time, time.Time) {
		t.Helper()
		tx := &epochTxnSink{txnSink: &txnSink{b: broker, tracker: true}, epochs: map[int32]uint64{}}
		job, err := NewJob(cfg, MultiSink{sqlite, tx}, nil, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		before := time.Now()
		sum, err := job.Run(ctx)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return sum, job, tx.epochs, before, time.Now()
	}

	sum, _, epochs, before, after := run()
	if sum.FinalCheckpoint == 0 || sum.Received != int64(len(msgs)) || sum.Restored != 0 {
		t.Fatalf("first run: %+v, want a final checkpoint, %d records received, none restored", sum, len(msgs))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM readings"); n != int64(len(msgs)) {
		t.Errorf("%d readings stored, want %d", n, len(msgs))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM readings WHERE epoch <> 0"); n != 0 {
		t.Errorf("%d readings of a local run not at epoch 0", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM window_aggregates WHERE epoch <> 0"); n != 0 {
		t.Errorf("%d window rows of a local run not at epoch 0", n)
	}
	if len(epochs) != 3 {
		t.Fatalf("transactional writers opened for %d partitions, want 3", len(epochs))
	}
	for p, e := range epochs {
		if e < uint64(before.UnixMilli()) || e > uint64(after.UnixMilli()) {
			t.Errorf("partition %d: transactional writer epoch %d, want the run's start time in [%d, %d] ms", p, e, before.UnixMilli(), after.UnixMilli())
		}
	}

	again, job, _, _, _ := run()
	if again.Restored != 3 || again.Processed != 0 || again.Received != sum.Received || again.FinalCheckpoint <= sum.FinalCheckpoint {
		t.Errorf("restart of the finished run: %+v, want 3 partitions restored, 0 processed, %d received, a newer final checkpoint than %d",
			again, sum.Received, sum.FinalCheckpoint)
	}
	for _, st := range job.Status() {
		if st.Restored != sum.FinalCheckpoint || !st.Done {
			t.Errorf("partition %d: restored %d, done %v; want the final checkpoint %d, done", st.Partition, st.Restored, st.Done, sum.FinalCheckpoint)
		}
	}
}

// TestRuntimeBoundedEnd: a bounded Runtime reports each partition once it
// processed its input up to the bounded end (what Job.Run waits for before
// its final checkpoint).
func TestRuntimeBoundedEnd(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b", "c"}, 20))
	sink := &memSink{}
	rt, err := NewRuntime(testConfig(brokers), sink, nil, nil, slog.New(slog.DiscardHandler), RuntimeHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ended := make(chan int32, 2)
	rt.boundedEnd = func(p int32) { ended <- p }
	ctx := context.Background()
	for p := int32(0); p < 2; p++ {
		if err := rt.Start(ctx, p, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int32]bool{}
	for range 2 {
		select {
		case p := <-ended:
			if seen[p] {
				t.Fatalf("partition %d reported its bounded end twice", p)
			}
			seen[p] = true
			st, ok := rt.Status(p)
			if !ok || !st.Done || st.NextOffset != st.EndOffset {
				t.Errorf("partition %d reported at its bounded end with status %+v (running %v)", p, st, ok)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("bounded ends reported: %v, want partitions 0 and 1", seen)
		}
	}
}

// TestRuntimeDrainWritesWhatStopDrops: Stop drops what a partition left in
// the sink buffers (its next owner writes it again), the drain of a local
// run writes everything: without checkpoints nothing would replay it.
func TestRuntimeDrainWritesWhatStopDrops(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b", "c", "d"}, 25))
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]int64
	for p := range ends {
		if ends[p], err = client.GetOffset("iot-topic", int32(p), sarama.OffsetNewest); err != nil || ends[p] == 0 {
			t.Fatalf("end offset of partition %d: %d, %v", p, ends[p], err)
		}
	}
	client.Close()
	sink, db := openSQLite(t, filepath.Join(t.TempDir(), "eddy.db"), sinks.Config{BatchRows: sinks.MaxBatchRows}, nil)
	cfg := testConfig(brokers)
	cfg.Source.Bounded = false
	cfg.SinkFlushInterval = time.Hour // rows stay buffered until a flush
	cfg.SinkFlushOnIdle = false       // ... also when the partitions are caught up
	rt, err := NewRuntime(cfg, sink, nil, nil, slog.New(slog.DiscardHandler), RuntimeHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	for p := int32(0); p < 2; p++ {
		if err := rt.Start(ctx, p, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "every record processed", func() bool {
		for p := int32(0); p < 2; p++ {
			if st, _ := rt.Status(p); st.NextOffset != ends[p] {
				return false
			}
		}
		return true
	})
	if n := count(t, db, "SELECT COUNT(*) FROM readings"); n != 0 {
		t.Fatalf("%d readings written before any flush; the test needs them buffered", n)
	}
	rt.Stop(0)
	if err := rt.drain(time.Minute); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM readings WHERE source_partition = 0"); n != 0 {
		t.Errorf("%d readings of the stopped partition 0 written, want them dropped", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM readings WHERE source_partition = 1"); n != ends[1] {
		t.Errorf("%d readings of the drained partition 1 written, want all %d", n, ends[1])
	}
	if len(rt.Running()) != 0 {
		t.Errorf("partitions still running after drain: %v", rt.Running())
	}
}

// TestFromSavepointRestoresWithTransactionalSink: a savepoint taken
// without transactional sinks has nothing waiting for a commit, so a run
// started from it with a transactional sink that never committed anything
// restores it (RestorePoint.NoTransactions) instead of starting over, from
// the copy adopted as a new checkpoint, without a fallback.
func TestFromSavepointRestoresWithTransactionalSink(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c"}, 100)
	brokers := startBroker(t, 2, msgs)
	dir := t.TempDir()
	cfg := crashConfig(brokers, dir)
	cfg.Source.Bounded = false
	cfg.Checkpoint.Interval = time.Hour
	job, err := NewJob(cfg, &flushSink{d: newDurable()}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	eventually(t, 30*time.Second, "every record received", func() bool { return job.summary().Received == int64(len(msgs)) })
	sp, err := job.Savepoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	cfg.Source.Bounded = true
	cfg.Checkpoint.FromSavepoint = sp.Name()
	tx := &txnSink{b: &txnBroker{d: newDurable(), committed: map[int32]uint64{}}, tracker: true}
	reg := prometheus.NewRegistry()
	job, err = NewJob(cfg, MultiSink{&flushSink{d: newDurable()}, tx}, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancelRun := context.WithTimeout(context.Background(), time.Minute)
	defer cancelRun()
	sum, err := job.Run(runCtx)
	if err != nil {
		t.Fatalf("Run from %s: %v", sp.Name(), err)
	}
	if sum.Restored != 2 || sum.Processed != 0 || sum.Received != int64(len(msgs)) {
		t.Errorf("run from %s: %+v, want both partitions restored, nothing left to process, %d received", sp.Name(), sum, len(msgs))
	}
	for _, st := range job.Status() {
		if st.Restored <= sp.ID {
			t.Errorf("partition %d restored %d, want the copy of %s adopted with a newer id", st.Partition, st.Restored, sp.Name())
		}
	}
	if n := gaugeSum(t, reg, "eddy_checkpoint_restore_fallbacks_total", nil); n != 0 {
		t.Errorf("%v restore fallbacks, want none (the adopted copy holds the savepoint's snapshots as they are)", n)
	}
}
