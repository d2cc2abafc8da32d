package actors

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks"
)

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
	}
}

func gaugeSum(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func newRuntimeSQLite(t *testing.T, brokers []string, cfg sinks.Config, hooks RuntimeHooks) (*Runtime, *sql.DB, *prometheus.Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eddy.db")
	reg := prometheus.NewRegistry()
	sink, db := openSQLite(t, path, cfg, reg)
	c := testConfig(brokers)
	c.Source.Bounded = false
	rt, err := NewRuntime(c, sink, nil, reg, slog.New(slog.DiscardHandler), hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, db, reg, path
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestRuntimeFencesSinkWrites: the cluster runtime writes each partition's
// rows under its lease epoch, and installs RuntimeHooks.LeaseValid as the
// sink's lease guard: a partition whose lease is not valid writes nothing.
func TestRuntimeFencesSinkWrites(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b", "c", "d", "e"}, 100))
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	end0, err := client.GetOffset("iot-topic", 0, sarama.OffsetNewest)
	client.Close()
	if err != nil || end0 == 0 {
		t.Fatalf("end offset of partition 0: %d, %v", end0, err)
	}
	rt, db, reg, _ := newRuntimeSQLite(t, brokers, sinks.Config{}, RuntimeHooks{
		LeaseValid: func(p int32, epoch uint64) bool { return p == 0 && epoch == 7 },
	})
	ctx := context.Background()
	if err := rt.Start(ctx, 0, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, 1, 3, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "every reading of partition 0 in the store", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM readings WHERE source_partition = 0") == end0
	})
	eventually(t, 30*time.Second, "rows of partition 1 dropped by the lease guard", func() bool {
		return gaugeSum(t, reg, "eddy_sink_rows_dropped_total", map[string]string{"reason": "lease_expired"}) > 0
	})
	rt.Stop(0)
	rt.Stop(1)
	if n := count(t, db, "SELECT COUNT(*) FROM readings WHERE source_partition <> 0"); n != 0 {
		t.Errorf("%d readings of partition 1, whose lease guard says no, were written", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM readings WHERE epoch <> 7"); n != 0 {
		t.Errorf("%d readings not at partition 0's lease epoch 7", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM window_aggregates WHERE epoch <> 7"); n != 0 {
		t.Errorf("%d window rows not at epoch 7", n)
	}
}

// TestRuntimeStopDuringSinkOutage: a partition blocked on a full sink
// buffer (the store is broken) is backpressured; Stop returns at once all
// the same and drops what the partition left buffered.
func TestRuntimeStopDuringSinkOutage(t *testing.T) {
	brokers := startBroker(t, 1, readingsFor([]string{"a", "b", "c"}, 200))
	rt, db, reg, _ := newRuntimeSQLite(t, brokers, sinks.Config{MaxBufferBytes: 16 << 10, BatchRows: sinks.MaxBatchRows}, RuntimeHooks{})
	if _, err := db.Exec("DROP TABLE readings"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(context.Background(), 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "partition 0 backpressured", func() bool {
		return gaugeSum(t, reg, "eddy_partition_backpressured", map[string]string{"partition": "0"}) == 1
	})
	if b := gaugeSum(t, reg, "eddy_sink_buffer_bytes", nil); b == 0 {
		t.Fatal("sink buffer empty while the partition is backpressured")
	}
	stopped := make(chan struct{})
	go func() {
		rt.Stop(0)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return within 10 s while the sink was down")
	}
	if b := gaugeSum(t, reg, "eddy_sink_buffer_bytes", nil); b != 0 {
		t.Errorf("eddy_sink_buffer_bytes = %v after Stop, want 0 (dropped)", b)
	}
	if n := gaugeSum(t, reg, "eddy_sink_rows_dropped_total", map[string]string{"reason": "partition_stopped"}); n == 0 {
		t.Error("Stop dropped no rows of the stopped partition")
	}
	if v := gaugeSum(t, reg, "eddy_partition_backpressured", map[string]string{"partition": "0"}); v != 0 {
		t.Errorf("eddy_partition_backpressured = %v after Stop, want 0", v)
	}
}

// TestRuntimeNoAckAfterLeaseExpiry: once RuntimeHooks.LeaseValid says no
// for a partition's epoch (its sinks may have dropped rows), the runtime
// reports no checkpoint ack and hands off no snapshot for it: a restore
// from such a snapshot could lose the dropped rows.
func TestRuntimeNoAckAfterLeaseExpiry(t *testing.T) {
	brokers := startBroker(t, 1, readingsFor([]string{"a", "b"}, 50))
	var valid atomic.Bool
	valid.Store(true)
	acks := make(chan uint64, 10)
	c := testConfig(brokers)
	c.Source.Bounded = false
	c.Checkpoint.Storage = t.TempDir()
	c.State.Dir = t.TempDir()
	reg := prometheus.NewRegistry()
	rt, err := NewRuntime(c, &memSink{}, nil, reg, slog.New(slog.DiscardHandler), RuntimeHooks{
		Ack:        func(_ context.Context, p int32, epoch uint64, id uint64, _ RestorePoint) { acks <- id },
		LeaseValid: func(p int32, epoch uint64) bool { return valid.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Start(context.Background(), 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := rt.Barrier(0, 1, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-acks:
		if id != 1 {
			t.Fatalf("ack of checkpoint %d, want 1", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no ack of checkpoint 1 with a valid lease")
	}
	valid.Store(false)
	if err := rt.Barrier(0, 1, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "checkpoint 2 counted failed", func() bool {
		return gaugeSum(t, reg, "eddy_checkpoints_total", map[string]string{"result": "failed"}) == 1
	})
	select {
	case id := <-acks:
		t.Fatalf("ack of checkpoint %d after the lease expired", id)
	default:
	}
	if _, err := rt.Handoff(context.Background(), 0, 1); !errors.Is(err, ErrLeaseNotValid) {
		t.Fatalf("Handoff after the lease expired: %v, want ErrLeaseNotValid", err)
	}
}

// TestRuntimeHandoffRestores: Handoff returns a handoff point (Handoff set,
// the released epoch, no checkpoint id) that the next owner restores, and a
// point naming another epoch is refused as corrupt (the snapshot header
// records the epoch of the handoff), falling back to the configured start.
func TestRuntimeHandoffRestores(t *testing.T) {
	brokers := startBroker(t, 1, readingsFor([]string{"a", "b"}, 50))
	c := testConfig(brokers)
	c.Source.Bounded = false
	c.Checkpoint.Storage = t.TempDir()
	c.State.Dir = t.TempDir()
	sink := &memSink{}
	reg := prometheus.NewRegistry()
	rt, err := NewRuntime(c, sink, nil, reg, slog.New(slog.DiscardHandler), RuntimeHooks{
		Ack: func(context.Context, int32, uint64, uint64, RestorePoint) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	if err := rt.Start(ctx, 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "partition 0 read its 100 records", func() bool {
		st, ok := rt.Status(0)
		return ok && st.NextOffset == 100
	})
	pt, err := rt.Handoff(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !pt.Handoff || pt.Epoch != 1 || pt.Checkpoint != 0 || pt.Offset != 100 || pt.Snapshot == "" {
		t.Fatalf("handoff point %+v, want Handoff, epoch 1, checkpoint 0, offset 100 and a snapshot", pt)
	}
	restores := func() (n uint64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "eddy_checkpoint_restore_duration_seconds" {
				for _, m := range mf.GetMetric() {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
		return n
	}
	if err := rt.Start(ctx, 0, 2, []RestorePoint{pt}); err != nil {
		t.Fatal(err)
	}
	if n, f := restores(), gaugeSum(t, reg, "eddy_checkpoint_restore_fallbacks_total", nil); n != 1 || f != 0 {
		t.Fatalf("restore from the handoff point: %d restores, %v fallbacks; want 1, 0", n, f)
	}
	rt.Stop(0)
	wrong := pt
	wrong.Epoch = 2
	if err := rt.Start(ctx, 0, 3, []RestorePoint{wrong}); err != nil {
		t.Fatal(err)
	}
	if n, f := restores(), gaugeSum(t, reg, "eddy_checkpoint_restore_fallbacks_total", nil); n != 1 || f != 1 {
		t.Fatalf("restore from a handoff point of the wrong epoch: %d restores, %v fallbacks; want 1, 1", n, f)
	}
}
