package operators

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rec renders a seed-schema record with epoch-ms event time (seconds given).
func rec(dev string, sec float64, metric float64) string {
	return fmt.Sprintf(`{"pboxid":%q,"event_time":%d,"metric":%v}`, dev, int64(math.Round(sec*1000)), metric)
}

func recPos(dev string, sec float64, metric, lat, lon float64) string {
	return fmt.Sprintf(`{"pboxid":%q,"event_time":%d,"metric":%v,"latitude":%v,"longitude":%v}`, dev, int64(math.Round(sec*1000)), metric, lat, lon)
}

// feeder runs records through a partition with consecutive offsets and
// returns the emissions of each call.
type feeder struct {
	t      *testing.T
	p      *Partition
	offset int64
}

func newFeeder(t *testing.T, cfg Config, devs DeviceLookup) *feeder {
	t.Helper()
	return &feeder{t: t, p: NewPartition(3, cfg, devs)}
}

func (f *feeder) feed(value string) Output {
	var out Output
	f.p.Process(f.offset, []byte(value), &out)
	f.offset++
	return out
}

func (f *feeder) finish() Output {
	var out Output
	f.p.Finish(&out)
	return out
}

// win is the short form of a WindowAggregate: [start, end) in seconds,
// count, sum, min, max.
type win struct {
	id            string
	start, end    float64
	count         int64
	sum, min, max float64
}

func winsOf(ws []WindowAggregate) []win {
	var r []win
	for _, w := range ws {
		r = append(r, win{w.PboxID, float64(w.Start) / 1000, float64(w.End) / 1000, w.Count, w.Sum, w.Min, w.Max})
		if w.Avg != w.Sum/float64(w.Count) {
			panic("avg != sum/count")
		}
	}
	return r
}

// per is the short form of a WorkPeriod: start, end in seconds, samples,
// avg, max.
type per struct {
	id         string
	start, end float64
	samples    int64
	avg, max   float64
}

func persOf(ps []WorkPeriod) []per {
	var r []per
	for _, p := range ps {
		r = append(r, per{p.PboxID, float64(p.Start) / 1000, float64(p.End) / 1000, p.Samples, p.AvgMetric, p.MaxMetric})
	}
	return r
}

func tumbling(size time.Duration) Config {
	cfg := DefaultConfig()
	cfg.Window = WindowSpec{Kind: WindowTumbling, Size: size}
	return cfg
}

// step is one record and the emissions expected right after it ("" record
// means Finish).
type step struct {
	rec     string
	windows []win
	periods []per
	late    bool
	wm      *float64 // expected watermark in seconds after the step; nil = don't check
}

func at(sec float64) *float64 { return &sec }

func runSteps(t *testing.T, cfg Config, devs DeviceLookup, steps []step) {
	t.Helper()
	run(t, cfg, devs, steps, true)
}

// runWorkSteps is runSteps without checking windows.
func runWorkSteps(t *testing.T, cfg Config, devs DeviceLookup, steps []step) {
	t.Helper()
	run(t, cfg, devs, steps, false)
}

func run(t *testing.T, cfg Config, devs DeviceLookup, steps []step, checkWindows bool) {
	t.Helper()
	f := newFeeder(t, cfg, devs)
	for i, s := range steps {
		var out Output
		if s.rec == "" {
			out = f.finish()
		} else {
			out = f.feed(s.rec)
		}
		if len(out.DeadLetters) > 0 {
			t.Fatalf("step %d %s: dead letter %+v", i, s.rec, out.DeadLetters)
		}
		if got := winsOf(out.Windows); checkWindows && !slices.Equal(got, s.windows) {
			t.Fatalf("step %d %s: windows\n got %+v\nwant %+v", i, s.rec, got, s.windows)
		}
		if got := persOf(out.WorkPeriods); !slices.Equal(got, s.periods) {
			t.Fatalf("step %d %s: work periods\n got %+v\nwant %+v", i, s.rec, got, s.periods)
		}
		if gotLate := len(out.Late) == 1; gotLate != s.late || len(out.Late) > 1 {
			t.Fatalf("step %d %s: late %+v, want late=%v", i, s.rec, out.Late, s.late)
		}
		if s.rec != "" && !s.late && len(out.Readings) != 1 {
			t.Fatalf("step %d %s: readings %+v, want one", i, s.rec, out.Readings)
		}
		if s.wm != nil && float64(f.p.Watermark())/1000 != *s.wm {
			t.Fatalf("step %d %s: watermark %v s, want %v s", i, s.rec, float64(f.p.Watermark())/1000, *s.wm)
		}
		if s.rec == "" && f.p.Watermark() != math.MaxInt64 {
			t.Fatalf("watermark after Finish %d, want MaxInt64", f.p.Watermark())
		}
	}
}

func TestTumblingWindows(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"in order, fires when watermark reaches end", tumbling(time.Minute), []step{
			{rec: rec("a", 10, 1), wm: at(5)},
			{rec: rec("a", 59.999, 2), wm: at(54.999)},
			{rec: rec("a", 60, 3), wm: at(55)},                                           // t = k·S goes to window k
			{rec: rec("a", 64.999, 4), wm: at(59.999)},                                   // W one ms short of the end
			{rec: rec("a", 65, 5), wm: at(60), windows: []win{{"a", 0, 60, 2, 3, 1, 2}}}, // W == end fires
			{rec: "", windows: []win{{"a", 60, 120, 3, 12, 3, 5}}},
		}},
		{"out of order within the bound", tumbling(time.Minute), []step{
			{rec: rec("a", 62, 1), wm: at(57)},
			{rec: rec("a", 58, 2), wm: at(57)}, // behind the max but not late
			{rec: rec("a", 57, 3), wm: at(57)}, // exactly at the watermark: on time
			{rec: rec("a", 70, 4), wm: at(65), windows: []win{{"a", 0, 60, 2, 5, 2, 3}}},
			{rec: rec("a", 59, 9), wm: at(65), late: true}, // window already fired
			{rec: "", windows: []win{{"a", 60, 120, 2, 5, 1, 4}}},
		}},
		{"pre-1970 times use floor division", tumbling(time.Minute), []step{
			{rec: rec("a", -60, 2), wm: at(-65)},
			{rec: rec("a", -0.001, 1), wm: at(-5.001)},
			{rec: rec("a", 0, 3), wm: at(-5)},
			{rec: rec("a", 5, 4), wm: at(0), windows: []win{{"a", -60, 0, 2, 3, 1, 2}}},
			{rec: "", windows: []win{{"a", 0, 60, 2, 7, 3, 4}}},
		}},
		{"several devices fire in (end, pboxid, start) order", tumbling(10 * time.Second), []step{
			{rec: rec("b", 1, 1)},
			{rec: rec("a", 2, 1)},
			{rec: rec("c", 12, 1)},
			{rec: rec("a", 30, 1), windows: []win{{"a", 0, 10, 1, 1, 1, 1}, {"b", 0, 10, 1, 1, 1, 1}, {"c", 10, 20, 1, 1, 1, 1}}},
			{rec: "", windows: []win{{"a", 30, 40, 1, 1, 1, 1}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, tc.cfg, nil, tc.steps)
		})
	}
}

func TestSlidingWindows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Window = WindowSpec{Kind: WindowSliding, Size: 10 * time.Second, Slide: 5 * time.Second}
	cfg.OutOfOrderness = 0
	runSteps(t, cfg, nil, []step{
		{rec: rec("a", 7, 1), wm: at(7)},                                             // in [0,10) and [5,15)
		{rec: rec("a", 10, 2), wm: at(10), windows: []win{{"a", 0, 10, 1, 1, 1, 1}}}, // in [5,15) and [10,20)
		{rec: rec("a", -1, 4), late: true},
		{rec: rec("a", 15, 3), wm: at(15), windows: []win{{"a", 5, 15, 2, 3, 1, 2}}},
		{rec: "", windows: []win{{"a", 10, 20, 2, 5, 2, 3}, {"a", 15, 25, 1, 3, 3, 3}}},
	})

	// Size not a multiple of slide, negative times.
	cfg.Window = WindowSpec{Kind: WindowSliding, Size: 7 * time.Second, Slide: 3 * time.Second}
	runSteps(t, cfg, nil, []step{
		// t = -4: windows [k·3, k·3+7) containing -4: k = -3 ([-9,-2)), k = -2 ([-6,1))
		{rec: rec("a", -4, 1), wm: at(-4)},
		{rec: "", windows: []win{{"a", -9, -2, 1, 1, 1, 1}, {"a", -6, 1, 1, 1, 1, 1}}},
	})
}

func TestSessionWindows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Window = WindowSpec{Kind: WindowSession, Gap: 10 * time.Second}
	cfg.OutOfOrderness = 5 * time.Second
	runSteps(t, cfg, nil, []step{
		{rec: rec("a", 0, 1), wm: at(-5)},
		{rec: rec("a", 10, 2), wm: at(5)}, // gap == Gap: [0,10) and [10,20) touch and merge
		{rec: rec("b", 6, 7), wm: at(5)},
		{rec: rec("a", 26, 3), wm: at(21), windows: []win{{"b", 6, 16, 1, 7, 7, 7}, {"a", 0, 20, 2, 3, 1, 2}}},
		{rec: rec("a", 21, 4), wm: at(21)}, // out of order: merges with [26,36) -> [21,36)
		{rec: rec("a", 36, 6), wm: at(31)}, // touches the end exactly -> [21,46)
		{rec: rec("a", 31, 6), wm: at(31)}, // inside, exactly at the watermark
		{rec: rec("a", 51, 1), wm: at(46)}, // W == end 46: not fired, a reading at 46 could still merge
		{rec: rec("a", 46, 2), wm: at(46)}, // ... and does: bridges [21,46) and [51,61) -> [21,61)
		{rec: rec("a", 66, 9), wm: at(61)},
		{rec: rec("a", 66.001, 9), wm: at(61.001), windows: []win{{"a", 21, 61, 6, 22, 1, 6}}},
		{rec: "", windows: []win{{"a", 66, 76.001, 2, 18, 9, 9}}},
	})
}

func TestWorkPeriods(t *testing.T) {
	cfg := DefaultConfig() // threshold 50, max gap 10 min
	cfg.OutOfOrderness = 0
	runWorkSteps(t, cfg, nil, []step{
		{rec: rec("a", 0, 60)},
		{rec: rec("a", 150, 70)},
		{rec: rec("a", 300, 50), periods: []per{{"a", 0, 150, 2, 65, 70}}}, // exactly at the threshold ends the run
		{rec: rec("a", 450, 51)},
		{rec: rec("a", 1050, 80)}, // gap == max gap continues
		{rec: rec("a", 1651, 90), periods: []per{{"a", 450, 1050, 2, 65.5, 80}}}, // gap > max gap breaks
		{rec: rec("a", 1700, 10), periods: []per{{"a", 1651, 1651, 1, 90, 90}}},  // run of one reading
		{rec: rec("a", 1800, 99)},
		{rec: rec("b", 2400, 1), wm: at(2400)},                                     // W == last + max gap: still open
		{rec: rec("b", 2400.001, 1), periods: []per{{"a", 1800, 1800, 1, 99, 99}}}, // W > last + max gap closes it
		{rec: ""},
	})

	// Out of order within the bound: readings are released in event-time
	// order once the watermark passes them.
	cfg.OutOfOrderness = time.Minute
	runWorkSteps(t, cfg, nil, []step{
		{rec: rec("a", 0, 60)},
		{rec: rec("a", 120, 40)},
		{rec: rec("a", 100, 70)},
		{rec: rec("a", 200, 60), wm: at(140), periods: []per{{"a", 0, 100, 2, 65, 70}}},
		{rec: "", periods: []per{{"a", 200, 200, 1, 60, 60}}},
	})

	// Equal event times: source offset order decides.
	cfg.OutOfOrderness = 0
	runWorkSteps(t, cfg, nil, []step{
		{rec: rec("a", 10, 60)},
		{rec: rec("a", 10, 40), periods: []per{{"a", 10, 10, 1, 60, 60}}},
		{rec: rec("a", 10, 70)},
		{rec: "", periods: []per{{"a", 10, 10, 1, 70, 70}}},
	})
}

func TestEnrichmentAndThresholdOverride(t *testing.T) {
	ten := 10.0
	devs := DeviceMap{"a": {Company: "acme", Site: "dyce", Threshold: &ten}, "c": {Company: "co"}}
	cfg := tumbling(time.Minute)
	f := newFeeder(t, cfg, devs)
	var all Output
	for _, r := range []string{rec("a", 0, 20), rec("b", 0, 60), rec("c", 1, 20), rec("c", 2, 60)} {
		out := f.feed(r)
		all.Readings = append(all.Readings, out.Readings...)
	}
	fin := f.finish()
	wantReadings := [][2]string{{"acme", "dyce"}, {"", ""}, {"co", ""}, {"co", ""}}
	for i, r := range all.Readings {
		if r.Company != wantReadings[i][0] || r.Site != wantReadings[i][1] || r.Partition != 3 || r.Offset != int64(i) {
			t.Errorf("reading %d: %+v", i, r)
		}
	}
	// a: 20 > device threshold 10; b: 60 > default 50 (unknown device); c: only 60.
	got := persOf(fin.WorkPeriods)
	want := []per{{"a", 0, 0, 1, 20, 20}, {"b", 0, 0, 1, 60, 60}, {"c", 2, 2, 1, 60, 60}}
	if !slices.Equal(got, want) {
		t.Fatalf("work periods\n got %+v\nwant %+v", got, want)
	}
	if fin.WorkPeriods[0].Company != "acme" || fin.WorkPeriods[0].Site != "dyce" || fin.WorkPeriods[1].Company != "" {
		t.Errorf("work period enrichment: %+v", fin.WorkPeriods)
	}
	for _, w := range fin.Windows {
		if wantCo := devs[w.PboxID].Company; w.Company != wantCo {
			t.Errorf("window %s company %q, want %q", w.PboxID, w.Company, wantCo)
		}
	}
}

func TestAllowedLatenessRefires(t *testing.T) {
	cfg := tumbling(time.Minute)
	cfg.OutOfOrderness = 0
	cfg.AllowedLateness = 30 * time.Second
	runSteps(t, cfg, nil, []step{
		{rec: rec("a", 10, 1)},
		{rec: rec("a", 65, 2), windows: []win{{"a", 0, 60, 1, 1, 1, 1}}},
		{rec: rec("a", 50, 3), windows: []win{{"a", 0, 60, 2, 4, 1, 3}}}, // 50 >= 65−30: on time, re-fires
		{rec: rec("a", 95, 4)},             // W 95 >= 60+30: [0,60) dropped
		{rec: rec("a", 59, 5), late: true}, // 59 < 95−30
		{rec: rec("a", 65, 6)},             // 65 >= 65: on time
		{rec: "", windows: []win{{"a", 60, 120, 3, 12, 2, 6}}},
	})

	// Work periods wait for W − L before a reading is released.
	cfg.Threshold = 0
	cfg.MaxGap = 10 * time.Second
	runWorkSteps(t, cfg, nil, []step{
		{rec: rec("a", 0, 1)},
		{rec: rec("a", 25, 1)},
		{rec: rec("a", 30, 1)}, // W − L = 0: 0 released, run [0]
		{rec: rec("a", 5, 1)},  // 5 >= 30 − 30: on time, still buffered
		{rec: rec("a", 55, 1), periods: []per{{"a", 0, 5, 2, 1, 1}}}, // releases 5 and 25; 25 − 5 > 10 ends [0,5]
		{rec: "", periods: []per{{"a", 25, 30, 2, 1, 1}, {"a", 55, 55, 1, 1, 1}}},
	})
}

func TestLateAndDeadLetterRecords(t *testing.T) {
	cfg := tumbling(time.Minute) // out-of-orderness 5 s
	f := newFeeder(t, cfg, nil)
	f.feed(rec("a", 100, 1)) // W = 95
	buf := []byte(rec("a", 94.999, 2))
	var out Output
	f.p.Process(41, buf, &out)
	want := LateRecord{Partition: 3, Offset: 41, PboxID: "a", EventTime: 94999, Watermark: 95000, Reason: ReasonLate, Payload: []byte(rec("a", 94.999, 2))}
	if len(out.Late) != 1 || len(out.Readings) != 0 {
		t.Fatalf("late output %+v", out)
	}
	copy(buf, strings.Repeat("x", len(buf))) // payload must be a copy
	if got := out.Late[0]; got.Partition != want.Partition || got.Offset != want.Offset || got.PboxID != want.PboxID ||
		got.EventTime != want.EventTime || got.Watermark != want.Watermark || got.Reason != want.Reason || string(got.Payload) != string(want.Payload) {
		t.Fatalf("late record\n got %+v\nwant %+v", got, want)
	}

	out.Reset()
	bad := []byte(`{"pboxid":"a","event_time":"yesterday","metric":1}`)
	f.p.Process(42, bad, &out)
	f.p.Process(43, []byte(`{"pboxid":"a","event_time":"2100-01-01 00:00:00","metric":"n/a"}`), &out)
	f.p.Process(44, nil, &out)
	if len(out.DeadLetters) != 3 || len(out.Readings) != 0 {
		t.Fatalf("dead letters %+v", out)
	}
	copy(bad, strings.Repeat("x", len(bad)))
	dl := out.DeadLetters[0]
	if dl.Partition != 3 || dl.Offset != 42 || ReasonLabel(dl.Reason) != ReasonInvalidEventTime ||
		!strings.HasPrefix(dl.Reason, ReasonInvalidEventTime+": ") || string(dl.Payload) != `{"pboxid":"a","event_time":"yesterday","metric":1}` {
		t.Fatalf("dead letter %+v", dl)
	}
	if ReasonLabel(out.DeadLetters[1].Reason) != ReasonInvalidMetric || ReasonLabel(out.DeadLetters[2].Reason) != ReasonMalformedJSON {
		t.Fatalf("dead letter reasons %q %q", out.DeadLetters[1].Reason, out.DeadLetters[2].Reason)
	}
	if f.p.Watermark() != 95000 {
		t.Fatalf("dead letters moved the watermark to %d", f.p.Watermark())
	}
	want2 := PartitionStats{Received: 5, Valid: 2, Late: 1, DeadLetters: 3}
	if got := f.p.Stats(); got != want2 {
		t.Fatalf("stats %+v, want %+v", got, want2)
	}
	fin := f.finish()
	if len(fin.Windows) != 1 || fin.Windows[0].Count != 1 {
		t.Fatalf("finish windows %+v", fin.Windows)
	}
	// After Finish every record is late.
	out = f.feed(rec("a", 1e9, 1))
	if len(out.Late) != 1 || out.Late[0].Watermark != math.MaxInt64 {
		t.Fatalf("record after Finish: %+v", out)
	}
	want3 := PartitionStats{Received: 6, Valid: 3, Late: 2, DeadLetters: 3, WindowsFired: 1}
	if got := f.p.Stats(); got != want3 {
		t.Fatalf("stats %+v, want %+v", got, want3)
	}
}

func TestWatermarkBeforeAnyRecord(t *testing.T) {
	f := newFeeder(t, DefaultConfig(), nil)
	if f.p.Watermark() != math.MinInt64 {
		t.Fatalf("initial watermark %d", f.p.Watermark())
	}
	f.feed(`{}`)
	if f.p.Watermark() != math.MinInt64 {
		t.Fatalf("watermark after a dead letter %d", f.p.Watermark())
	}
	// The very first record is never late, however old.
	out := f.feed(rec("a", -1e9, 1))
	if len(out.Readings) != 1 || f.p.Watermark() != -1e12-5000 {
		t.Fatalf("first record %+v, watermark %d", out, f.p.Watermark())
	}
	if out := f.finish(); len(out.Windows) != 1 {
		t.Fatalf("finish %+v", out)
	}
}

func TestWindowPosition(t *testing.T) {
	cfg := tumbling(time.Minute)
	f := newFeeder(t, cfg, nil)
	var all []WindowAggregate
	for _, r := range []string{
		`{"pboxid":"b","event_time":1000,"metric":1,"latitude":7}`, // latitude only
		recPos("a", 10, 1, 1, 1),
		rec("a", 20, 1),          // latest by event time, no position
		recPos("a", 5, 1, 3, 3),  // older
		recPos("a", 70, 1, 4, 4), // next window
		recPos("a", 70, 1, 5, 5), // same event time, higher offset wins
		recPos("a", 69, 1, 6, 6),
	} {
		out := f.feed(r)
		all = append(all, out.Windows...)
	}
	all = append(all, f.finish().Windows...)
	if len(all) != 3 {
		t.Fatalf("windows %+v", all)
	}
	pos := func(w WindowAggregate) string { return fmt.Sprint(w.PboxID, w.Start, w.Latitude, w.Longitude) }
	got := []string{pos(all[0]), pos(all[1]), pos(all[2])}
	want := []string{"a0 NaN NaN", "b0 7 NaN", "a60000 5 5"}
	if !slices.Equal(got, want) {
		t.Fatalf("positions %q, want %q", got, want)
	}
}

func TestNewPartitionRejectsBadConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "window size must be > 0") {
			t.Fatalf("panic %v", r)
		}
	}()
	NewPartition(0, Config{}, nil)
}

// TestExtremeEventTimes feeds readings at both ends of EventTimeRange with
// the largest window extents: every window start and end, work period and
// late record stays within the sinks' range, and one millisecond beyond
// the range is a dead letter.
func TestExtremeEventTimes(t *testing.T) {
	for _, kind := range []WindowSpec{
		{Kind: WindowTumbling, Size: time.Minute},
		{Kind: WindowTumbling, Size: 7 * time.Minute},
		{Kind: WindowTumbling, Size: maxDuration},
		{Kind: WindowSliding, Size: maxDuration, Slide: maxDuration / 4},
		{Kind: WindowSliding, Size: 10 * time.Minute, Slide: 3 * time.Minute},
		{Kind: WindowSession, Gap: maxDuration},
		{Kind: WindowSession, Gap: time.Second},
	} {
		cfg := DefaultConfig()
		cfg.Window = kind
		cfg.MaxGap, cfg.OutOfOrderness, cfg.AllowedLateness = maxDuration, maxDuration, maxDuration
		cfg.Threshold = -1
		lo, hi := cfg.EventTimeRange()
		f := newFeeder(t, cfg, nil)
		var all Output
		add := func(out Output) {
			all.Windows = append(all.Windows, out.Windows...)
			all.WorkPeriods = append(all.WorkPeriods, out.WorkPeriods...)
			all.Late = append(all.Late, out.Late...)
			all.DeadLetters = append(all.DeadLetters, out.DeadLetters...)
		}
		recAt := func(t int64, m int) string {
			return `{"pboxid":"a","event_time":` + strconv.FormatInt(t, 10) + `,"metric":` + strconv.Itoa(m) + `}`
		}
		for _, r := range []string{
			recAt(lo, 1),
			recAt(lo-1, 9), // dead letter
			recAt(hi, 2),
			recAt(hi+1, 9), // dead letter
			recAt(lo, 3),   // late
			recAt(hi, 4),
		} {
			add(f.feed(r))
		}
		add(f.finish())
		name := fmt.Sprintf("%s %v/%v/%v", kind.Kind, kind.Size, kind.Slide, kind.Gap)
		if len(all.Late) != 1 || len(all.WorkPeriods) != 2 || len(all.DeadLetters) != 2 {
			t.Fatalf("%s: late %d, dead letters %+v, work periods %+v", name, len(all.Late), all.DeadLetters, all.WorkPeriods)
		}
		for _, d := range all.DeadLetters {
			if ReasonLabel(d.Reason) != ReasonEventTimeOutOfRange {
				t.Fatalf("%s: dead letter %q", name, d.Reason)
			}
		}
		inSink := func(ms int64) bool { return ms >= MinSinkTime && ms <= MaxSinkTime }
		var count int64
		for _, w := range all.Windows {
			if w.Start > w.End || w.Count < 1 || !inSink(w.Start) || !inSink(w.End) {
				t.Fatalf("%s: window [%s, %s) %+v", name, formatMillis(w.Start), formatMillis(w.End), w)
			}
			count += w.Count
		}
		for _, p := range all.WorkPeriods {
			if !inSink(p.Start) || !inSink(p.End) {
				t.Fatalf("%s: work period %+v", name, p)
			}
		}
		if l := all.Late[0]; !inSink(l.EventTime) || !inSink(l.Watermark) {
			t.Fatalf("%s: late record %+v", name, l)
		}
		if kind.Kind != WindowSliding && count != 3 {
			t.Fatalf("%s: windows %+v", name, all.Windows)
		}
	}
}
