package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/operators"
)

func openTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(DefaultConfig(filepath.Join(t.TempDir(), "state")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenClearsLocksAndRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	db, err := Open(DefaultConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	db.Partition(1).Save("dev", []byte("x"))

	// A second opener of the same directory is refused while the first
	// holds it.
	if _, err := Open(DefaultConfig(dir)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// The next process starts empty.
	db2, err := Open(DefaultConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, ok := db2.Partition(1).Load("dev", nil); ok {
		t.Fatal("state of an earlier process survived Open")
	}

	// A directory with someone else's files is not emptied.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "precious.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(DefaultConfig(other)); !errors.Is(err, ErrNotStateDir) {
		t.Fatalf("Open of a foreign directory: %v, want ErrNotStateDir", err)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Fatalf("foreign file gone: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Dir is empty"},
		{Config{Dir: "x", CacheBytes: -1}, "CacheBytes"},
		{Config{Dir: "x", MemTableBytes: 1000}, "MemTableBytes"},
		{DefaultConfig("x"), ""},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestStorePartitionsAreSeparate(t *testing.T) {
	db := openTemp(t)
	a, b := db.Partition(0), db.Partition(1)
	a.Save("x", []byte("a-state"))
	b.Save("x", []byte("b-state"))
	if v, ok := a.Load("x", []byte("buf:")); !ok || string(v) != "buf:a-state" {
		t.Fatalf("a: %q %v", v, ok)
	}
	a.Delete("x")
	if _, ok := a.Load("x", nil); ok {
		t.Fatal("deleted state still there")
	}
	if v, ok := b.Load("x", nil); !ok || string(v) != "b-state" {
		t.Fatalf("b after a's delete: %q %v", v, ok)
	}
	// Partition 255 and 256 differ only in the lower bytes; Clear of one
	// leaves the others.
	c, d := db.Partition(255), db.Partition(256)
	c.Save("k", []byte("c"))
	d.Save("k", []byte("d"))
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Load("k", nil); ok {
		t.Fatal("Clear left a key")
	}
	for _, s := range []*Store{b, d} {
		if _, ok := s.Load(map[*Store]string{b: "x", d: "k"}[s], nil); !ok {
			t.Fatalf("Clear of partition 255 removed partition %d's key", s.partition)
		}
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	db := openTemp(t)
	s := db.Partition(3)
	b := s.NewBatch()
	for i := range 100 {
		b.Save(fmt.Sprintf("dev%03d", i), []byte(strconv.Itoa(i)))
	}
	if err := b.Put(KindMeta, nil, []byte("meta")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Load("dev000", nil); ok {
		t.Fatal("batch visible before Commit")
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	db.Partition(4).Save("other", []byte("not in partition 3"))

	snap := s.Snapshot()
	defer snap.Close()
	s.Save("dev000", []byte("changed"))
	s.Delete("dev001")
	s.Save("new", []byte("new"))

	devices, metas := 0, 0
	err := snap.Each(func(kind byte, id, value []byte) error {
		switch kind {
		case KindDevice:
			if want := fmt.Sprintf("dev%03d", devices); string(id) != want || string(value) != strconv.Itoa(devices) {
				return fmt.Errorf("record %d: %s=%s, want %s", devices, id, value, want)
			}
			devices++
		case KindMeta:
			metas++
			if string(value) != "meta" || len(id) != 0 {
				return fmt.Errorf("meta %q=%q", id, value)
			}
		default:
			return fmt.Errorf("unknown kind %q", kind)
		}
		return nil
	})
	if err != nil || devices != 100 || metas != 1 {
		t.Fatalf("snapshot: %v; %d devices, %d meta keys; want 100 and 1 as of the snapshot", err, devices, metas)
	}
	stop := errors.New("stop")
	if err := snap.Each(func(byte, []byte, []byte) error { return stop }); err != stop {
		t.Fatalf("Each returned %v, want fn's error", err)
	}
}

func TestStorePanicsWithErrorAfterClose(t *testing.T) {
	db, err := Open(DefaultConfig(filepath.Join(t.TempDir(), "s")))
	if err != nil {
		t.Fatal(err)
	}
	s := db.Partition(9)
	db.Close()
	defer func() {
		r := recover()
		err, ok := r.(error)
		var se *Error
		if !ok || !errors.Is(err, ErrStore) || !errors.As(err, &se) || se.Partition != 9 {
			t.Fatalf("panic value %v, want *Error of partition 9 wrapping ErrStore", r)
		}
	}()
	s.Save("x", []byte("y"))
}

// TestPartitionOnPebble runs an operators.Partition with 50,000 devices of
// open state on a pebble Store with a cache of 1,000: the output equals an
// in-memory run, and a checkpoint + snapshot + restore into a new DB yields
// a partition that finishes exactly like the original.
func TestPartitionOnPebble(t *testing.T) {
	const devices, cacheCap = 50_000, 1_000
	if testing.Short() {
		t.Skip("50,000 devices")
	}
	msgs := genMessages(2*devices, devices)
	cfg := operators.DefaultConfig()

	var want operators.Output
	ref := operators.NewPartition(0, cfg, nil)
	for i, m := range msgs {
		ref.Process(int64(i), m, &want)
	}
	ref.Finish(&want)

	db := openTemp(t)
	s := db.Partition(0)
	p := operators.NewPartition(0, cfg, nil)
	p.SetStore(s, cacheCap)
	var got operators.Output
	half := len(msgs) / 2
	for i, m := range msgs[:half] {
		p.Process(int64(i), m, &got)
	}
	b := s.NewBatch()
	p.Checkpoint(b)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	defer snap.Close()
	st := p.State()
	mark := len(got.Windows)

	// Restore the snapshot into another DB and finish there.
	db2 := openTemp(t)
	s2 := db2.Partition(0)
	q := operators.NewPartition(0, cfg, nil)
	q.SetStore(s2, cacheCap)
	q.RestoreState(st)
	wb := s2.NewBatch()
	began := time.Now()
	err := snap.Each(func(kind byte, id, value []byte) error {
		if err := wb.Put(kind, id, value); err != nil {
			return err
		}
		return q.RestoreDevice(string(id), value)
	})
	if err == nil {
		err = wb.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored %d devices in %v", q.Devices(), time.Since(began))
	if q.Devices() != p.Devices() || q.Devices() < devices/2 {
		t.Fatalf("restored %d devices, original has %d", q.Devices(), p.Devices())
	}
	rest := operators.Output{Windows: got.Windows[:mark:mark], WorkPeriods: got.WorkPeriods[:len(got.WorkPeriods):len(got.WorkPeriods)]}
	for i, m := range msgs[half:] {
		q.Process(int64(half+i), m, &rest)
		if q.CachedDevices() > cacheCap {
			t.Fatalf("%d cached, cap %d", q.CachedDevices(), cacheCap)
		}
	}
	q.Finish(&rest)
	if fmt.Sprint(rest.Windows) != fmt.Sprint(want.Windows) || fmt.Sprint(rest.WorkPeriods) != fmt.Sprint(want.WorkPeriods) {
		t.Fatalf("restored run differs: %d windows %d work periods, want %d and %d",
			len(rest.Windows), len(rest.WorkPeriods), len(want.Windows), len(want.WorkPeriods))
	}
}

// genMessages returns n seed-schema messages of devices devices, one
// reading per device every 150 s, in event-time order.
func genMessages(n, devices int) [][]byte {
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([][]byte, n)
	for i := range msgs {
		dev, tick := i%devices, i/devices
		ts := base.Add(time.Duration(tick)*150*time.Second + time.Duration(dev)*150*time.Second/time.Duration(devices))
		metric := 5 + float64((i*7919)%1000)/10
		msgs[i] = fmt.Appendf(nil, `{"event_time":%q,"metric":%.2f,"pboxid":"d%d"}`, ts.Format("2006-01-02 15:04:05.000"), metric, dev)
	}
	return msgs
}

// BenchmarkPartitionOnPebble processes records of 20,000 devices in
// round-robin order (each device's state is touched once per round) with
// state caches of several sizes: "all" keeps every state in memory (pebble
// only at checkpoints); smaller caches load and evict a state per record,
// the worst case of an LRU.
func BenchmarkPartitionOnPebble(b *testing.B) {
	const devices = 20_000
	msgs := genMessages(12*devices, devices)
	for _, cache := range []int{devices, devices / 10} {
		b.Run(fmt.Sprintf("cache=%d", cache), func(b *testing.B) {
			db := openTemp(b)
			var out operators.Output
			var p *operators.Partition
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(msgs) == 0 {
					b.StopTimer()
					s := db.Partition(int32(i / len(msgs)))
					p = operators.NewPartition(0, operators.DefaultConfig(), nil)
					p.SetStore(s, cache)
					b.StartTimer()
				}
				p.Process(int64(i), msgs[i%len(msgs)], &out)
				if len(out.Readings) >= 1024 {
					out.Reset()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkMillionDevices holds 1,000,000 devices of open state in one
// partition, all in memory or in pebble behind a cache of 10,000 states,
// and reports the Go heap per device after a GC (go test -bench
// MillionDevices -benchtime 1x ./actors/state).
func BenchmarkMillionDevices(b *testing.B) {
	const devices = 1_000_000
	// One reading each, above the threshold: every device keeps an open
	// work period (and, for the newest, a window).
	msgs := make([][]byte, devices)
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, `{"event_time":%d,"metric":60.5,"pboxid":"d%d"}`, base+int64(i)*150_000/devices, i)
	}
	for _, cache := range []int{0, 10_000} {
		name := "in-memory"
		if cache > 0 {
			name = fmt.Sprintf("pebble+cache=%d", cache)
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				p := operators.NewPartition(0, operators.DefaultConfig(), nil)
				if cache > 0 {
					p.SetStore(openTemp(b).Partition(0), cache)
				}
				var out operators.Output
				start := time.Now()
				for j, m := range msgs {
					p.Process(int64(j), m, &out)
					out.Reset()
				}
				took := time.Since(start)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(p.Devices()), "heap-B/device")
				b.ReportMetric(float64(p.Devices()), "devices")
				b.ReportMetric(float64(len(msgs))/took.Seconds(), "records/s")
				runtime.KeepAlive(p)
			}
		})
	}
}
