package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// durable is what survives a crash: rows a sink made durable, by table key.
type durable struct {
	mu       sync.Mutex
	readings map[[2]int64]operators.Reading
	windows  map[string]operators.WindowAggregate
	periods  map[string]operators.WorkPeriod
	late     map[[2]int64]operators.LateRecord
	dead     map[[2]int64]string
	rows     int // rows stored, duplicates included
}

func newDurable() *durable {
	return &durable{readings: map[[2]int64]operators.Reading{}, windows: map[string]operators.WindowAggregate{},
		periods: map[string]operators.WorkPeriod{}, late: map[[2]int64]operators.LateRecord{}, dead: map[[2]int64]string{}}
}

// store upserts b by the sink keys; dup reports rows whose key was there.
func (d *durable) store(b *operators.Output) (dup int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range b.Readings {
		k := [2]int64{int64(r.Partition), r.Offset}
		if _, ok := d.readings[k]; ok {
			dup++
		}
		d.readings[k] = r
	}
	for _, w := range b.Windows {
		d.windows[fmt.Sprintf("%s@%d", w.PboxID, w.Start)] = w
	}
	for _, p := range b.WorkPeriods {
		k := fmt.Sprintf("%s@%d", p.PboxID, p.Start)
		if _, ok := d.periods[k]; ok {
			dup++
		}
		d.periods[k] = p
	}
	for _, l := range b.Late {
		d.late[[2]int64{int64(l.Partition), l.Offset}] = l
	}
	for _, x := range b.DeadLetters {
		d.dead[[2]int64{int64(x.Partition), x.Offset}] = x.Reason
	}
	d.rows += b.Len()
	return dup
}

func (d *durable) diff(want *durable) string {
	var b strings.Builder
	cmpMaps := func(name string, got, want map[string]string) {
		n := 0
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				if n < 5 {
					fmt.Fprintf(&b, "%s %s: got %q want %q\n", name, k, g, v)
				}
				n++
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				if n < 5 {
					fmt.Fprintf(&b, "%s %s: unexpected %q\n", name, k, v)
				}
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "%s: %d differences (%d vs %d rows)\n", name, n, len(got), len(want))
		}
	}
	str := func(m any) map[string]string {
		out := map[string]string{}
		switch m := m.(type) {
		case map[[2]int64]operators.Reading:
			for k, v := range m {
				out[fmt.Sprint(k)] = fmt.Sprint(v)
			}
		case map[string]operators.WindowAggregate:
			for k, v := range m {
				out[k] = fmt.Sprint(v)
			}
		case map[string]operators.WorkPeriod:
			for k, v := range m {
				out[k] = fmt.Sprint(v)
			}
		case map[[2]int64]operators.LateRecord:
			for k, v := range m {
				out[fmt.Sprint(k)] = fmt.Sprint(v.PboxID, v.EventTime, v.Watermark)
			}
		case map[[2]int64]string:
			for k, v := range m {
				out[fmt.Sprint(k)] = v
			}
		}
		return out
	}
	cmpMaps("readings", str(d.readings), str(want.readings))
	cmpMaps("windows", str(d.windows), str(want.windows))
	cmpMaps("work periods", str(d.periods), str(want.periods))
	cmpMaps("late", str(d.late), str(want.late))
	cmpMaps("dead letters", str(d.dead), str(want.dead))
	return b.String()
}

// flushSink models an SQL sink: rows become durable only when Flush
// returns; after crash() nothing more becomes durable (the process died
// with its buffer).
type flushSink struct {
	d       *durable
	delay   time.Duration // per Write: a slow store
	mu      sync.Mutex
	buf     operators.Output
	crashed bool
}

func (s *flushSink) Open(context.Context) error { return nil }
func (s *flushSink) Write(_ context.Context, b *sinks.Batch) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		return errors.New("crashed")
	}
	s.buf.Readings = append(s.buf.Readings, b.Readings...)
	s.buf.Windows = append(s.buf.Windows, b.Windows...)
	s.buf.WorkPeriods = append(s.buf.WorkPeriods, b.WorkPeriods...)
	s.buf.Late = append(s.buf.Late, b.Late...)
	for _, x := range b.DeadLetters {
		x.Payload = slices.Clone(x.Payload)
		s.buf.DeadLetters = append(s.buf.DeadLetters, x)
	}
	if s.buf.Len() > 500 { // a full buffer is written out, like BatchRows
		s.d.store(&s.buf)
		s.buf.Reset()
	}
	return nil
}
func (s *flushSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		return errors.New("crashed")
	}
	s.d.store(&s.buf)
	s.buf.Reset()
	return nil
}
func (s *flushSink) Close() error { return nil }
func (s *flushSink) crash() {
	s.mu.Lock()
	s.crashed = true
	s.mu.Unlock()
}

// txnBroker is the durable side of txnSink, shared by its incarnations:
// committed rows and, per partition, the last committed checkpoint.
type txnBroker struct {
	d         *durable
	mu        sync.Mutex
	committed map[int32]uint64
	dups      int
}

// txnSink is a fake TransactionalSink with Kafka's semantics: rows of a
// partition's transaction become visible (durable) at Commit; a new Txn of
// the same partition aborts what the former writer left open.
type txnSink struct {
	b       *txnBroker
	tracker bool // PartitionTxns implement sinks.CommitTracker
	mu      sync.Mutex
	crashed bool
	txns    []*fakeTxn
}

func (s *txnSink) Open(context.Context) error { return nil }
func (s *txnSink) Write(context.Context, *sinks.Batch) error {
	return errors.New("plain write on txnSink")
}
func (s *txnSink) Flush(context.Context) error { return nil }
func (s *txnSink) Close() error                { return nil }
func (s *txnSink) crash()                      { s.mu.Lock(); s.crashed = true; s.mu.Unlock() }
func (s *txnSink) isCrashed() bool             { s.mu.Lock(); defer s.mu.Unlock(); return s.crashed }
func (s *txnSink) Txn(_ context.Context, job string, p int32, epoch uint64) (sinks.PartitionTxn, error) {
	t := &fakeTxn{s: s, p: p}
	if s.tracker {
		return &trackedTxn{t}, nil
	}
	return t, nil
}

type fakeTxn struct {
	s       *txnSink
	p       int32
	open    operators.Output // rows of the open transaction
	label   uint64           // pre-committed checkpoint; 0 none
	pending operators.Output // rows written after PreCommit
}

func appendOut(dst *operators.Output, b *operators.Output) {
	dst.Readings = append(dst.Readings, b.Readings...)
	dst.Windows = append(dst.Windows, b.Windows...)
	dst.WorkPeriods = append(dst.WorkPeriods, b.WorkPeriods...)
	dst.Late = append(dst.Late, b.Late...)
	dst.DeadLetters = append(dst.DeadLetters, b.DeadLetters...)
}

func (t *fakeTxn) Write(_ context.Context, b *sinks.Batch) error {
	if t.s.isCrashed() {
		return errors.New("crashed")
	}
	if t.label != 0 {
		appendOut(&t.pending, b)
	} else {
		appendOut(&t.open, b)
	}
	return nil
}
func (t *fakeTxn) PreCommit(_ context.Context, n uint64) error {
	if t.s.isCrashed() {
		return errors.New("crashed")
	}
	if t.label != 0 { // already waiting: the new rows join the same transaction
		appendOut(&t.open, &t.pending)
		t.pending.Reset()
	}
	t.label = n
	return nil
}
func (t *fakeTxn) Commit(_ context.Context, n uint64) error {
	if t.s.isCrashed() {
		return errors.New("crashed")
	}
	if t.label == 0 || t.label > n {
		return nil
	}
	br := t.s.b
	br.mu.Lock()
	br.dups += br.d.store(&t.open)
	br.committed[t.p] = t.label
	br.mu.Unlock()
	t.open, t.pending = t.pending, operators.Output{}
	t.label = 0
	return nil
}
func (t *fakeTxn) Abort(context.Context) error {
	t.open.Reset()
	t.pending.Reset()
	t.label = 0
	return nil
}
func (t *fakeTxn) Close() error { return t.Abort(context.Background()) }

type trackedTxn struct{ *fakeTxn }

func (t *trackedTxn) LastCommitted() (uint64, bool) {
	t.s.b.mu.Lock()
	defer t.s.b.mu.Unlock()
	c, ok := t.s.b.committed[t.p]
	return c, ok
}

func crashConfig(brokers []string, dir string) Config {
	c := testConfig(brokers)
	c.Checkpoint.Storage = "file://" + filepath.Join(dir, "checkpoints")
	c.Checkpoint.Interval = 15 * time.Millisecond
	c.State.Dir = filepath.Join(dir, "state")
	c.State.CacheDevices = 3 // most devices live in pebble
	return c
}

// reference runs the job without checkpoints and returns what it stores.
func reference(t *testing.T, brokers []string) *durable {
	d := newDurable()
	s := &flushSink{d: d}
	runJob(t, testConfig(brokers), nil, s)
	s.Flush(context.Background())
	return d
}

// TestCrashRecoveryExactlyOnce kills the job (in process: its sinks stop
// making anything durable, then Run is cancelled) at random moments, again
// and again, restarting it from its checkpoints each time, then lets it
// finish. The upserted tables of an SQL-like sink equal an uninterrupted
// run, and a transactional sink, whose rows are not idempotent, holds every
// row exactly once — with LastCommitted from the sink (Kafka's way) and
// with commit markers in checkpoint storage.
func TestCrashRecoveryExactlyOnce(t *testing.T) {
	seed := seed.For(t)
	devices := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}
	msgs := readingsFor(devices, 300)
	msgs = append(msgs, [2]string{"a", `not json`})
	brokers := startBroker(t, 4, msgs)
	want := reference(t, brokers)

	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	sqlRows := newDurable()
	broker := &txnBroker{d: newDurable(), committed: map[int32]uint64{}}
	crashes, restored := 0, 0
	for run := 0; ; run++ {
		plain := &flushSink{d: sqlRows, delay: 2 * time.Millisecond}
		tx := &txnSink{b: broker, tracker: true}
		cfg := crashConfig(brokers, dir)
		cfg.BatchSize = 16
		job, err := NewJob(cfg, MultiSink{plain, tx}, nil, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		done := make(chan error, 1)
		var sum Summary
		go func() {
			var err error
			sum, err = job.Run(ctx)
			done <- err
		}()
		if run < 10 {
			// Crash somewhere in the run: after some progress,
			// while a checkpoint is in progress, or right after
			// one completed.
			how := rng.IntN(3)
			frac := rng.Float64()
			var crash <-chan time.Time
			poll := time.NewTicker(200 * time.Microsecond)
			var base, progress int64 = -1, -1
		wait:
			for {
				select {
				case <-poll.C:
					st := job.CheckpointStatus()
					var got int64
					for _, p := range job.Status() {
						got += p.Received
					}
					if len(job.Status()) == 0 {
						continue // not started yet
					}
					if progress < 0 { // restored counters included
						base = st.Completed
						progress = got + int64(frac*float64(int64(len(msgs))-got))
					}
					if crash == nil && got > 0 && ((how == 0 && got >= progress) || (how == 1 && st.InProgress != 0) || (how == 2 && st.Completed > base)) {
						crash = time.After(time.Duration(rng.IntN(3000)) * time.Microsecond)
					}
				case <-crash:
					break wait
				case err := <-done:
					poll.Stop()
					cancel()
					if err != nil {
						t.Fatalf("run %d: %v", run, err)
					}
					break wait
				}
			}
			poll.Stop()
			if crash != nil && ctx.Err() == nil {
				plain.crash()
				tx.crash()
				cancel()
				<-done
				crashes++
				var got int64
				var restoredFrom uint64
				for _, p := range job.Status() {
					got += p.Received
					restoredFrom = max(restoredFrom, p.Restored)
				}
				t.Logf("run %d: restored from %d, crashed (%s) at %d records, %d checkpoints completed",
					run, restoredFrom, []string{"progress", "in checkpoint", "after checkpoint"}[how], got, job.CheckpointStatus().Completed)
				continue
			}
		} else if err := <-done; err != nil {
			cancel()
			t.Fatalf("final run: %v", err)
		}
		cancel()
		if sum.Restored > 0 {
			restored++
		}
		if sum.Received != int64(len(msgs)) || sum.FinalCheckpoint == 0 {
			t.Fatalf("run %d: summary received %d (want %d), final checkpoint %d", run, sum.Received, len(msgs), sum.FinalCheckpoint)
		}
		break
	}
	if d := sqlRows.diff(want); d != "" {
		t.Fatalf("plain sink after %d crashes differs from an uninterrupted run:\n%s", crashes, d)
	}
	if d := broker.d.diff(want); d != "" {
		t.Fatalf("transactional sink after %d crashes differs:\n%s", crashes, d)
	}
	if broker.dups != 0 {
		t.Fatalf("transactional sink committed %d duplicate rows", broker.dups)
	}
	t.Logf("%d crashes; plain sink stored %d rows for %d keys; transactional sink %d rows", crashes, sqlRows.rows,
		len(want.readings)+len(want.windows)+len(want.periods)+len(want.late)+len(want.dead), broker.d.rows)
}

// TestCorruptSnapshotFallsBack corrupts the newest snapshot of a partition
// (truncation, a flipped byte, a missing file): the restart restores the
// previous checkpoint for that partition and the result is still exact.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	devices := []string{"a", "b", "c", "d", "e", "f"}
	msgs := readingsFor(devices, 200)
	brokers := startBroker(t, 3, msgs)
	want := reference(t, brokers)
	for _, damage := range []string{"truncate", "flip", "header", "delete"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			rows := newDurable()
			cfg := crashConfig(brokers, dir)
			cfg.Checkpoint.Interval = time.Hour // only explicit ones
			cfg.Source.Bounded = false
			s := &flushSink{d: rows}
			job, err := NewJob(cfg, s, nil, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := job.Run(ctx); done <- err }()
			// Two savepoints while it runs: the second is damaged.
			var ms []*checkpoint.Manifest
			for len(ms) < 2 {
				m, err := job.Savepoint(ctx)
				if errors.Is(err, ErrNotRunning) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				ms = append(ms, m)
				time.Sleep(10 * time.Millisecond)
			}
			s.crash()
			cancel()
			<-done
			victim := ms[1].Partitions[1]
			path := filepath.Join(dir, "checkpoints", filepath.FromSlash(victim.Snapshot))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "truncate":
				err = os.WriteFile(path, b[:len(b)/2], 0o644)
			case "flip":
				b[len(b)/2] ^= 0x20
				err = os.WriteFile(path, b, 0o644)
			case "header": // inside the JSON header: corrupt, not "another job's state"
				b[bytes.Index(b, []byte("window="))+9] ^= 0x01
				err = os.WriteFile(path, b, 0o644)
			case "delete":
				err = os.Remove(path)
			}
			if err != nil {
				t.Fatal(err)
			}

			cfg.Source.Bounded = true
			s2 := &flushSink{d: rows}
			reg := newTestRegistry()
			job2, err := NewJob(cfg, s2, nil, reg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
			defer cancel2()
			sum, err := job2.Run(ctx2)
			if err != nil {
				t.Fatal(err)
			}
			st := job2.Status()
			if st[1].Restored != ms[0].ID || st[0].Restored != ms[1].ID {
				t.Fatalf("partition 1 restored %d (want the previous, %d), partition 0 restored %d (want %d)",
					st[1].Restored, ms[0].ID, st[0].Restored, ms[1].ID)
			}
			if n := counterValue(t, reg, "eddy_checkpoint_restore_fallbacks_total"); n != 1 {
				t.Fatalf("fallback counter %v, want 1", n)
			}
			if sum.Received != int64(len(msgs)) {
				t.Fatalf("received %d, want %d", sum.Received, len(msgs))
			}
			if d := rows.diff(want); d != "" {
				t.Fatalf("after a fallback:\n%s", d)
			}
		})
	}
}

// TestSavepointRestartAndRetention takes savepoints, checks retention keeps
// them and only the newest Retain checkpoints, and restarts a fresh run
// from the first savepoint.
func TestSavepointRestartAndRetention(t *testing.T) {
	devices := []string{"a", "b", "c"}
	brokers := startBroker(t, 2, readingsFor(devices, 300))
	want := reference(t, brokers)
	dir := t.TempDir()
	cfg := crashConfig(brokers, dir)
	cfg.Source.Bounded = false
	cfg.Checkpoint.Retain = 2
	cfg.Checkpoint.Interval = 5 * time.Millisecond
	job, err := NewJob(cfg, &flushSink{d: newDurable(), delay: 200 * time.Microsecond}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Savepoint(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Savepoint before Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := job.Run(ctx); done <- err }()
	var sp *checkpoint.Manifest
	for sp == nil {
		var got int64
		for _, p := range job.Status() {
			got += p.Received
		}
		if got < 300 { // some progress first
			time.Sleep(time.Millisecond)
			continue
		}
		if sp, err = job.Savepoint(ctx); errors.Is(err, ErrNotRunning) {
			time.Sleep(5 * time.Millisecond)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// Let periodic checkpoints run past retention.
	for job.CheckpointStatus().Completed < 8 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := checkpoint.OpenStorage(context.Background(), cfg.Checkpoint.Storage)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := checkpoint.NewCatalog(st, cfg.Name).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var chk, sps []uint64
	for _, e := range es {
		if e.Manifest == nil {
			continue
		}
		if e.Kind == checkpoint.KindSavepoint {
			sps = append(sps, e.ID)
		} else {
			chk = append(chk, e.ID)
		}
	}
	if !slices.Equal(sps, []uint64{sp.ID}) || len(chk) != 2 {
		t.Fatalf("kept savepoints %v (want [%d]) and checkpoints %v (want the newest 2)", sps, sp.ID, chk)
	}

	// A fresh run from the savepoint, to the end: exact.
	rows := newDurable()
	cfg.Source.Bounded = true
	cfg.Checkpoint.FromSavepoint = sp.Name()
	job2, err := NewJob(cfg, &flushSink{d: rows}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	sum, err := job2.Run(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range job2.Status() {
		if p.Restored == 0 {
			t.Fatalf("partition %d not restored from the savepoint", p.Partition)
		}
	}
	if sum.Received != int64(len(want.readings)) {
		t.Fatalf("received %d (restored counters included), want %d", sum.Received, len(want.readings))
	}
	// Every reading at or after the savepoint's offset was written by the
	// second run.
	for k := range want.readings {
		ack, _ := sp.Ack(int32(k[0]))
		if _, ok := rows.readings[k]; ok != (k[1] >= ack.Offset) {
			t.Fatalf("reading %v: written %v, savepoint offset %d", k, ok, ack.Offset)
		}
	}
	if len(rows.windows) == 0 || len(rows.windows) >= len(want.windows) {
		t.Fatalf("second run wrote %d of %d windows", len(rows.windows), len(want.windows))
	}
	for k, w := range rows.windows {
		if fmt.Sprint(want.windows[k]) != fmt.Sprint(w) {
			t.Fatalf("window %s: %v, want %v", k, w, want.windows[k])
		}
	}
}

// TestIncompatibleCheckpointRefused: a restart with another window size
// must not reinterpret the stored windows.
func TestIncompatibleCheckpointRefused(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b"}, 50))
	dir := t.TempDir()
	cfg := crashConfig(brokers, dir)
	runJob(t, cfg, nil, &flushSink{d: newDurable()})
	cfg.Operators.Window.Size = 2 * time.Minute
	job, err := NewJob(cfg, &flushSink{d: newDurable()}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background()); !errors.Is(err, ErrIncompatibleState) {
		t.Fatalf("Run with another window size: %v, want ErrIncompatibleState", err)
	}
	// An unbounded run must not continue from a finished bounded run.
	cfg.Operators.Window.Size = time.Minute
	cfg.Source.Bounded = false
	job, _ = NewJob(cfg, &flushSink{d: newDurable()}, nil, nil, slog.New(slog.DiscardHandler))
	if _, err := job.Run(context.Background()); !errors.Is(err, ErrJobFinished) {
		t.Fatalf("unbounded Run after a finished bounded one: %v, want ErrJobFinished", err)
	}
}

func TestParseSavepointRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{{"42", 42}, {"sp-00000000000000000042", 42}, {"sp-00000000000000000042/", 42}, {"x", 0}, {"-1", 0}, {"0", 0}} {
		got, err := ParseSavepointRef(tc.in)
		if got != tc.want || (err != nil) != (tc.want == 0) {
			t.Errorf("ParseSavepointRef(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func newTestRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// counterValue returns the value of the counter name in reg (summed over
// labels).
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue()
		}
	}
	return v
}

// TestUntrackedTransactionalSinkIsRejected: a transactional sink that cannot
// say which checkpoint it committed last would duplicate rows after a crash
// between its commit and any marker; the job refuses it with a clear error.
func TestUntrackedTransactionalSinkIsRejected(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b"}, 10))
	broker := &txnBroker{d: newDurable(), committed: map[int32]uint64{}}
	job, err := NewJob(crashConfig(brokers, t.TempDir()), MultiSink{&txnSink{b: broker, tracker: false}}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := job.Run(ctx); !errors.Is(err, ErrUntrackedSink) {
		t.Fatalf("Run with an untracked transactional sink: %v, want ErrUntrackedSink", err)
	}
}
