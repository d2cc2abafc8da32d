package operators

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// mapStore is a StateStore over a map, with counters: the store side of
// the keyed-state tests.
type mapStore struct {
	m                    map[string][]byte
	loads, saves, delets int
}

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) Load(id string, buf []byte) ([]byte, bool) {
	v, ok := s.m[id]
	s.loads++
	return append(buf, v...), ok
}
func (s *mapStore) Save(id string, state []byte) { s.m[id] = slices.Clone(state); s.saves++ }
func (s *mapStore) Delete(id string)             { delete(s.m, id); s.delets++ }

// snapshot is what a checkpoint of a partition keeps.
type snapshot struct {
	offset  int64 // next record to process
	state   PartitionState
	devices map[string][]byte
}

func takeSnapshot(p *Partition, s *mapStore, offset int64) snapshot {
	p.Checkpoint(s)
	// Through the encoding, as a snapshot file would carry it.
	b, err := p.State().AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	var st PartitionState
	if err := st.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	return snapshot{offset: offset, state: st, devices: maps.Clone(s.m)}
}

// restore builds a partition from a snapshot: with a store and cache
// capacity cacheCap, or in memory when cacheCap is 0.
func restore(t testing.TB, cfg Config, devs DeviceLookup, snap snapshot, cacheCap int) (*Partition, *mapStore) {
	p := NewPartition(7, cfg, devs)
	var s *mapStore
	if cacheCap > 0 {
		s = newMapStore()
		maps.Copy(s.m, snap.devices)
		p.SetStore(s, cacheCap)
	}
	p.RestoreState(snap.state)
	for _, id := range slices.Sorted(maps.Keys(snap.devices)) {
		if err := p.RestoreDevice(id, snap.devices[id]); err != nil {
			t.Fatal(err)
		}
	}
	return p, s
}

// emissionsFrom returns the emissions of records from..end of a run.
type runLog struct {
	out   Output
	marks []outMark // before record i
}

type outMark struct{ r, w, p, l int }

func markOf(o *Output) outMark {
	return outMark{len(o.Readings), len(o.Windows), len(o.WorkPeriods), len(o.Late)}
}

func (l *runLog) since(i int) Output {
	m := l.marks[i]
	return Output{
		Readings:    l.out.Readings[m.r:],
		Windows:     l.out.Windows[m.w:],
		WorkPeriods: l.out.WorkPeriods[m.p:],
		Late:        l.out.Late[m.l:],
	}
}

func runAll(p *Partition, recs [][]byte, from int) *runLog {
	l := &runLog{marks: make([]outMark, len(recs)+1)}
	for i := from; i < len(recs); i++ {
		l.marks[i] = markOf(&l.out)
		p.Process(int64(i), recs[i], &l.out)
	}
	l.marks[len(recs)] = markOf(&l.out)
	p.Finish(&l.out)
	return l
}

func sameOutput(a, b Output) error {
	for _, c := range []struct {
		what      string
		got, want any
		n, m      int
	}{
		{"readings", a.Readings, b.Readings, len(a.Readings), len(b.Readings)},
		{"windows", a.Windows, b.Windows, len(a.Windows), len(b.Windows)},
		{"work periods", a.WorkPeriods, b.WorkPeriods, len(a.WorkPeriods), len(b.WorkPeriods)},
		{"late records", a.Late, b.Late, len(a.Late), len(b.Late)},
	} {
		if c.n != c.m || (c.n > 0 && fmt.Sprint(c.got) != fmt.Sprint(c.want)) {
			return fmt.Errorf("%s differ (%d vs %d):\n got %v\nwant %v", c.what, c.n, c.m, c.got, c.want)
		}
	}
	return nil
}

// TestStoreCheckpointRestoreMatchesUninterrupted runs the random cases of
// TestPartitionMatchesBatch through a partition with a tiny state cache
// (every record evicts and reloads), takes checkpoints at random records,
// "crashes" at a random later record and restores the last checkpoint into a
// new partition (with a store or in memory). The emissions of the restored
// partition from the checkpoint's offset on must equal, exactly and in
// order, those of an uninterrupted in-memory run; its counters too.
func TestStoreCheckpointRestoreMatchesUninterrupted(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d)", seed, seed)
	iters := *itersFlag
	if testing.Short() {
		iters /= 10
	}
	for it := 0; it < iters; it++ {
		rng := rand.New(rand.NewPCG(seed, uint64(it)))
		cfg, devs, gen := genCase(rng)
		recs := make([][]byte, len(gen))
		for i, r := range gen {
			recs[i] = r.json()
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d iteration %d: %s\nconfig %+v", seed, it, fmt.Sprintf(format, args...), cfg)
		}
		ref := runAll(NewPartition(7, cfg, devs), recs, 0)

		// The run with a store, checkpointing now and then.
		cacheCap := 1 + rng.IntN(3)
		p := NewPartition(7, cfg, devs)
		store := newMapStore()
		p.SetStore(store, cacheCap)
		crash := rng.IntN(len(recs) + 1)
		snap := snapshot{state: NewPartition(7, cfg, devs).State(), devices: map[string][]byte{}}
		var out Output
		for i := 0; i < crash; i++ {
			if rng.IntN(8) == 0 {
				snap = takeSnapshot(p, store, int64(i))
			}
			m := markOf(&out)
			p.Process(int64(i), recs[i], &out)
			if p.CachedDevices() > cacheCap {
				fail("%d cached states after record %d, cap %d", p.CachedDevices(), i, cacheCap)
			}
			got := Output{Readings: out.Readings[m.r:], Windows: out.Windows[m.w:], WorkPeriods: out.WorkPeriods[m.p:], Late: out.Late[m.l:]}
			want := ref.since(i)
			want = Output{Readings: want.Readings[:ref.marks[i+1].r-ref.marks[i].r], Windows: want.Windows[:ref.marks[i+1].w-ref.marks[i].w],
				WorkPeriods: want.WorkPeriods[:ref.marks[i+1].p-ref.marks[i].p], Late: want.Late[:ref.marks[i+1].l-ref.marks[i].l]}
			if err := sameOutput(got, want); err != nil {
				fail("record %d with a store of cache %d: %v", i, cacheCap, err)
			}
		}
		if rng.IntN(4) == 0 { // a checkpoint right before the crash
			snap = takeSnapshot(p, store, int64(crash))
		}

		for _, restoreCap := range []int{0, cacheCap} {
			q, _ := restore(t, cfg, devs, snap, restoreCap)
			rest := runAll(q, recs, int(snap.offset))
			if err := sameOutput(rest.out, ref.since(int(snap.offset))); err != nil {
				fail("restored at offset %d (crash at %d, cache %d): %v", snap.offset, crash, restoreCap, err)
			}
			if q.Stats() != statsOf(ref) {
				fail("restored stats %+v, want %+v", q.Stats(), statsOf(ref))
			}
			if q.Devices() != 0 {
				fail("%d devices left after Finish", q.Devices())
			}
		}
	}
}

// statsOf counts a run log the way PartitionStats does (no dead
// letters in generated input).
func statsOf(l *runLog) PartitionStats {
	return PartitionStats{
		Received:     int64(len(l.out.Readings) + len(l.out.Late)),
		Valid:        int64(len(l.out.Readings) + len(l.out.Late)),
		Late:         int64(len(l.out.Late)),
		WindowsFired: int64(len(l.out.Windows)),
		WorkPeriods:  int64(len(l.out.WorkPeriods)),
	}
}

// TestStateLargerThanCache keeps 20,000 devices of open state with a cache
// of 500: memory holds at most 500 states, the store the rest, and the
// output equals that of an in-memory partition.
func TestStateLargerThanCache(t *testing.T) {
	const devices, cacheCap = 20_000, 500
	msgs := seedMessages(3*devices, devices) // every device's windows stay open for a while
	ref := runAll(NewPartition(0, DefaultConfig(), nil), msgs, 0)

	p := NewPartition(0, DefaultConfig(), nil)
	s := newMapStore()
	p.SetStore(s, cacheCap)
	var out Output
	maxDevices := 0
	for i, m := range msgs {
		p.Process(int64(i), m, &out)
		if p.CachedDevices() > cacheCap {
			t.Fatalf("%d cached states, cap %d", p.CachedDevices(), cacheCap)
		}
		maxDevices = max(maxDevices, p.Devices())
	}
	if maxDevices < devices/2 {
		t.Fatalf("at most %d devices had open state; the test needs most of the %d", maxDevices, devices)
	}
	if len(s.m) < maxDevices-cacheCap-devices/10 {
		t.Errorf("store holds %d states while %d devices have state", len(s.m), p.Devices())
	}
	p.Finish(&out)
	if err := sameOutput(out, ref.out); err != nil {
		t.Fatal(err)
	}
	if len(s.m) != 0 || p.Devices() != 0 || p.CachedDevices() != 0 {
		t.Fatalf("after Finish: store %d states, %d devices, %d cached; want all 0", len(s.m), p.Devices(), p.CachedDevices())
	}
	t.Logf("peak %d devices with state, cache %d: %d loads, %d saves, %d deletes", maxDevices, cacheCap, s.loads, s.saves, s.delets)
}

// TestIdleDevicesAreDropped: a device whose windows fired and whose
// readings were released, with no open work period, keeps no state.
func TestIdleDevicesAreDropped(t *testing.T) {
	p := NewPartition(0, DefaultConfig(), nil)
	var out Output
	p.Process(0, []byte(`{"pboxid":"a","event_time":"2019-03-01 00:00:10","metric":1}`), &out)
	if p.Devices() != 1 {
		t.Fatalf("%d devices, want 1", p.Devices())
	}
	// b's reading moves the watermark past a's window end and reading.
	p.Process(1, []byte(`{"pboxid":"b","event_time":"2019-03-01 00:01:30","metric":1}`), &out)
	if p.Devices() != 1 || len(out.Windows) != 1 {
		t.Fatalf("%d devices and %d windows, want only b left and a's window fired", p.Devices(), len(out.Windows))
	}
}

// TestParkedEntries: the entries of idle devices stay in the index for
// their next record (park), at most maxParked of them, without counting as
// devices; a returning device emits as a new one would.
func TestParkedEntries(t *testing.T) {
	p := NewPartition(0, DefaultConfig(), nil)
	var out Output
	const base = 1551398410000 // 2019-03-01 00:00:10 UTC, Unix ms
	reading := func(off int64, dev int, minute int) {
		p.Process(off, fmt.Appendf(nil, `{"pboxid":"d%d","event_time":%d,"metric":1}`, dev, base+int64(minute)*60000), &out)
	}
	// Each reading, two minutes after the one before, fires the window of
	// the previous device and leaves it without state.
	n := maxParked + 500
	for i := 0; i < n; i++ {
		reading(int64(i), i, 2*i)
		if p.Devices() != 1 {
			t.Fatalf("after reading %d: %d devices, want 1", i, p.Devices())
		}
	}
	if got := len(p.index); got != 1+maxParked {
		t.Fatalf("index holds %d entries, want the device with state and %d parked", got, maxParked)
	}
	// d600 is parked, d0 was forgotten: both come back like new devices.
	reading(int64(n), 600, 2*n)
	reading(int64(n+1), 0, 2*n+2)
	if p.Devices() != 1 || len(out.Windows) != n+1 {
		t.Fatalf("%d devices, %d windows; want 1 and %d", p.Devices(), len(out.Windows), n+1)
	}
	if w := out.Windows[n]; w.PboxID != "d600" || w.Count != 1 {
		t.Fatalf("window of the returning device: %+v", w)
	}
	p.Finish(&out)
	if p.Devices() != 0 || len(p.index) != 0 {
		t.Fatalf("after Finish: %d devices, %d index entries; want 0", p.Devices(), len(p.index))
	}
}

func TestDeviceStateRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 200; it++ {
		cfg, devs, gen := genCase(rng)
		p := NewPartition(0, cfg, devs)
		var out Output
		for i, r := range gen {
			p.Process(int64(i), r.json(), &out)
			if i%5 != 0 {
				continue
			}
			for _, e := range p.index {
				if e.parked != 0 {
					continue // no state (park)
				}
				d := e.state
				enc := encodeDeviceState(nil, d, e.wake)
				var back deviceState
				wake, err := decodeDeviceState(enc, &back)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if wake != e.wake || wake != p.nextWake(&back) {
					t.Fatalf("wake %d, want %d", wake, e.wake)
				}
				if again := encodeDeviceState(nil, &back, wake); !bytes.Equal(again, enc) {
					t.Fatalf("re-encoding differs:\n%x\n%x", again, enc)
				}
				if fmt.Sprint(back.Windows, back.Pending, back.Run) != fmt.Sprint(d.Windows, d.Pending, d.Run) {
					t.Fatalf("decoded %+v, want %+v", back, *d)
				}
				if w, err := deviceStateWake(enc); err != nil || w != wake {
					t.Fatalf("header wake %d, %v", w, err)
				}
				// Every truncation is an error, never a panic.
				for n := 0; n < len(enc); n += 1 + rng.IntN(4) {
					if _, err := decodeDeviceState(enc[:n], &back); !errors.Is(err, ErrBadState) {
						t.Fatalf("truncated to %d of %d bytes: err %v", n, len(enc), err)
					}
				}
			}
		}
	}
}

func TestPartitionStateRoundTrip(t *testing.T) {
	for _, s := range []PartitionState{
		{Watermark: math.MinInt64},
		{Watermark: math.MaxInt64, Stats: PartitionStats{Received: 929022, Valid: 929021, DeadLetters: 1, WindowsFired: 1 << 40, WorkPeriods: 3}},
		{Watermark: -5, Stats: PartitionStats{Late: 7}},
	} {
		b, err := s.AppendBinary([]byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		var got PartitionState
		if err := got.UnmarshalBinary(b[1:]); err != nil || got != s {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
		for n := 0; n < len(b)-1; n++ {
			if err := got.UnmarshalBinary(b[1 : 1+n]); !errors.Is(err, ErrBadState) {
				t.Fatalf("truncated to %d bytes: %v", n, err)
			}
		}
	}
	var got PartitionState
	if err := got.UnmarshalBinary([]byte{9, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrBadState) {
		t.Fatalf("unknown version: %v", err)
	}
}

func TestRestoreDeviceRejectsBadStates(t *testing.T) {
	p := NewPartition(0, DefaultConfig(), nil)
	p.SetStore(newMapStore(), 4)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   {2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
		"no work":   append([]byte{1}, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0),
		"too short": {1, 0, 0},
	} {
		if err := p.RestoreDevice(name, b); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: err %v, want ErrBadState", name, err)
		}
	}
	q := NewPartition(0, DefaultConfig(), nil) // in memory: decoded fully
	if err := q.RestoreDevice("x", []byte{1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 99}); !errors.Is(err, ErrBadState) {
		t.Errorf("trailing bytes: %v", err)
	}
}

func FuzzDecodeDeviceState(f *testing.F) {
	p := NewPartition(0, DefaultConfig(), nil)
	var out Output
	for i, m := range seedMessages(50, 3) {
		p.Process(int64(i), m, &out)
	}
	for _, e := range p.index {
		if e.parked != 0 {
			continue // no state (park)
		}
		f.Add(encodeDeviceState(nil, e.state, e.wake))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d deviceState
		wake, err := decodeDeviceState(b, &d)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		enc := encodeDeviceState(nil, &d, wake)
		var again deviceState
		if w2, err := decodeDeviceState(enc, &again); err != nil || w2 != wake ||
			fmt.Sprint(again.Windows, again.Pending, again.Run) != fmt.Sprint(d.Windows, d.Pending, d.Run) {
			t.Fatalf("re-decoding a decoded state: %v", err)
		}
	})
}

// TestStateSizes pins the sizes of the per-device structs (amd64 and other
// 64-bit targets): a partition holds one deviceEntry per open device and,
// without a store, one deviceState with its windows and buffered readings,
// so a byte here is a MiB at a million devices (README, "Memory").
func TestStateSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit targets")
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"deviceEntry", unsafe.Sizeof(deviceEntry{}), 48},
		{"deviceState", unsafe.Sizeof(deviceState{}), 128},
		{"workRun", unsafe.Sizeof(workRun{}), 48},
		{"windowState", unsafe.Sizeof(windowState{}), 96},
		{"pendingReading", unsafe.Sizeof(pendingReading{}), 32},
	} {
		if c.got != c.want {
			t.Errorf("unsafe.Sizeof(%s) = %d bytes, want %d", c.name, c.got, c.want)
		}
	}
}
