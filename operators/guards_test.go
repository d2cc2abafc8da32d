package operators

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// now0 is the processing time of the guard tests: 2026-01-01 00:00:00 UTC.
var now0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func recMs(dev string, t int64, metric float64) string {
	return `{"pboxid":"` + dev + `","event_time":` + strconv.FormatInt(t, 10) + `,"metric":` + strconv.FormatFloat(metric, 'g', -1, 64) + `}`
}

// TestMaxFuture: a reading more than MaxFuture ahead of the processing time
// is a dead letter future_event_time and leaves the watermark where it was;
// exactly MaxFuture ahead is still on time; without a processing time there
// is no check; the guard follows the processing time.
func TestMaxFuture(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxFuture = time.Hour
	f := newFeeder(t, cfg, nil)

	// No processing time yet: nothing is "in the future".
	if out := f.feed(recMs("a", now0+10*time.Hour.Milliseconds(), 1)); len(out.Readings) != 1 {
		t.Fatalf("without a processing time: %+v", out)
	}
	f = newFeeder(t, cfg, nil)
	var out Output
	f.p.AdvanceProcessingTime(now0, &out)
	if out.Len() != 0 {
		t.Fatalf("AdvanceProcessingTime emitted %+v", out)
	}
	if out := f.feed(recMs("a", now0-time.Minute.Milliseconds(), 1)); len(out.Readings) != 1 {
		t.Fatalf("past reading: %+v", out)
	}
	wm := f.p.Watermark()
	for _, et := range []int64{
		now0 + time.Hour.Milliseconds() + 1,
		time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC).UnixMilli(), // uint32 seconds wrapped
		time.Date(9999, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
	} {
		out := f.feed(recMs("a", et, 1))
		if len(out.DeadLetters) != 1 || ReasonLabel(out.DeadLetters[0].Reason) != ReasonFutureEventTime {
			t.Fatalf("event time %s: %+v", formatMillis(et), out)
		}
		if !strings.Contains(out.DeadLetters[0].Reason, "more than 1h0m0s ahead of the processing time 2026-01-01 00:00:00.000") {
			t.Fatalf("reason %q", out.DeadLetters[0].Reason)
		}
		if f.p.Watermark() != wm {
			t.Fatalf("watermark moved to %s", formatMillis(f.p.Watermark()))
		}
	}
	if out := f.feed(recMs("a", now0+time.Hour.Milliseconds(), 1)); len(out.Readings) != 1 {
		t.Fatalf("exactly max_future ahead: %+v", out)
	}
	// Processing time moves on: the same event time is no longer future;
	// an earlier processing time is ignored.
	f.p.AdvanceProcessingTime(now0+2*time.Hour.Milliseconds(), &out)
	f.p.AdvanceProcessingTime(now0, &out)
	if out := f.feed(recMs("a", now0+3*time.Hour.Milliseconds(), 1)); len(out.Readings) != 1 {
		t.Fatalf("after the clock advanced: %+v", out)
	}
	if st := f.p.Stats(); st.DeadLetters != 3 || st.Received != 6 || st.Valid != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMaxFutureOff: with MaxFuture 0 (bounded replays) a far-future reading
// is valid and moves the watermark, whatever the processing time.
func TestMaxFutureOff(t *testing.T) {
	f := newFeeder(t, DefaultConfig(), nil)
	var out Output
	f.p.AdvanceProcessingTime(now0, &out)
	et := time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC).UnixMilli()
	if out := f.feed(recMs("a", et, 1)); len(out.Readings) != 1 {
		t.Fatalf("%+v", out)
	}
	if f.p.Watermark() != et-DefaultOutOfOrderness.Milliseconds() {
		t.Fatalf("watermark %s", formatMillis(f.p.Watermark()))
	}
}

// TestIdleTimeout: a partition without records for IdleTimeout advances its
// watermark with processing time (now − out-of-orderness), so its windows
// and work periods fire; a partition that receives records is not idle.
func TestIdleTimeout(t *testing.T) {
	cfg := tumbling(time.Minute)
	cfg.IdleTimeout = 30 * time.Second
	f := newFeeder(t, cfg, nil)
	var out Output
	sec := func(s int64) int64 { return now0 + s*1000 }
	f.p.AdvanceProcessingTime(sec(0), &out)
	f.feed(recMs("a", sec(1), 60))
	f.feed(recMs("a", sec(2), 70))
	// 29 s after the last record: not idle yet.
	f.p.AdvanceProcessingTime(sec(29), &out)
	if out.Len() != 0 || f.p.Watermark() != sec(2)-5000 {
		t.Fatalf("before the idle timeout: watermark %s, %+v", formatMillis(f.p.Watermark()), out)
	}
	// A record at 20 s restarts the idle clock... (processing time 20 s is
	// in the past: the record counts at the latest processing time, 29 s).
	f.feed(recMs("b", sec(3), 10))
	f.p.AdvanceProcessingTime(sec(58), &out)
	if out.Len() != 0 {
		t.Fatalf("29 s after the last record: %+v", out)
	}
	// Idle: watermark = now − out-of-orderness; the window [0, 60 s) of
	// both devices ends at 60 s and fires at watermark 60 s (now 65 s).
	f.p.AdvanceProcessingTime(sec(64), &out)
	if out.Len() != 0 || f.p.Watermark() != sec(59) {
		t.Fatalf("idle at 64 s: watermark %s, %+v", formatMillis(f.p.Watermark()), out)
	}
	f.p.AdvanceProcessingTime(sec(65+10*60+1), &out) // past max gap 10 min: the work period ends
	if len(out.Windows) != 2 || len(out.WorkPeriods) != 1 {
		t.Fatalf("idle: windows %+v, work periods %+v", out.Windows, out.WorkPeriods)
	}
	if p := out.WorkPeriods[0]; p.PboxID != "a" || p.Start != sec(1) || p.End != sec(2) || p.Samples != 2 {
		t.Fatalf("work period %+v", p)
	}
	// A reading older than the idle watermark is now late: the output
	// depends on processing time, which is why the timeout is off by
	// default.
	if out := f.feed(recMs("a", sec(300), 1)); len(out.Late) != 1 {
		t.Fatalf("after idleness: %+v", out)
	}
	// After Finish nothing moves.
	var fin Output
	f.p.Finish(&fin)
	f.p.AdvanceProcessingTime(sec(100000), &out)
	if f.p.Watermark() != math.MaxInt64 {
		t.Fatalf("watermark after Finish: %d", f.p.Watermark())
	}
}

// TestIdleTimeoutOff: without IdleTimeout processing time never moves the
// watermark.
func TestIdleTimeoutOff(t *testing.T) {
	f := newFeeder(t, DefaultConfig(), nil)
	var out Output
	f.p.AdvanceProcessingTime(now0, &out)
	f.feed(recMs("a", now0, 1))
	f.p.AdvanceProcessingTime(now0+24*time.Hour.Milliseconds(), &out)
	if out.Len() != 0 || f.p.Watermark() != now0-DefaultOutOfOrderness.Milliseconds() {
		t.Fatalf("watermark %s, %+v", formatMillis(f.p.Watermark()), out)
	}
}

// TestIdleNeverActivePartition: the idle clock of a partition that never
// received a record starts at the first processing time.
func TestIdleNeverActivePartition(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleTimeout = time.Minute
	f := newFeeder(t, cfg, nil)
	var out Output
	f.p.AdvanceProcessingTime(now0, &out)
	f.p.AdvanceProcessingTime(now0+59_999, &out)
	if f.p.Watermark() != math.MinInt64 {
		t.Fatalf("watermark %s before the idle timeout", formatMillis(f.p.Watermark()))
	}
	f.p.AdvanceProcessingTime(now0+60_000, &out)
	if f.p.Watermark() != now0+60_000-DefaultOutOfOrderness.Milliseconds() {
		t.Fatalf("watermark %s", formatMillis(f.p.Watermark()))
	}
}

// TestAggregatesStayFinite: readings at ±MaxAbsMetric, many in one window,
// sliding windows, a merged session and one long work period: every
// aggregate is finite; 1e308 twice in a window is two dead letters.
func TestAggregatesStayFinite(t *testing.T) {
	for _, w := range []WindowSpec{
		{Kind: WindowTumbling, Size: time.Hour},
		{Kind: WindowSliding, Size: time.Hour, Slide: time.Minute},
		{Kind: WindowSession, Gap: time.Hour},
	} {
		cfg := DefaultConfig()
		cfg.Window = w
		f := newFeeder(t, cfg, nil)
		var all Output
		for i := int64(0); i < 5000; i++ {
			m := MaxAbsMetric
			if i%7 == 3 {
				m = -MaxAbsMetric
			}
			out := f.feed(recMs("a", now0+i*100, m))
			all.Windows = append(all.Windows, out.Windows...)
			all.WorkPeriods = append(all.WorkPeriods, out.WorkPeriods...)
		}
		for _, v := range []string{`1e308`, `"1e308"`, `1.7976931348623157e308`} {
			out := f.feed(`{"pboxid":"a","event_time":` + strconv.FormatInt(now0+1000, 10) + `,"metric":` + v + `}`)
			if len(out.DeadLetters) != 1 || ReasonLabel(out.DeadLetters[0].Reason) != ReasonMetricOutOfRange {
				t.Fatalf("%s metric %s: %+v", w.Kind, v, out)
			}
		}
		fin := f.finish()
		all.Windows = append(all.Windows, fin.Windows...)
		all.WorkPeriods = append(all.WorkPeriods, fin.WorkPeriods...)
		finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
		if len(all.Windows) == 0 || len(all.WorkPeriods) == 0 {
			t.Fatalf("%s: no output", w.Kind)
		}
		for _, a := range all.Windows {
			if !finite(a.Sum) || !finite(a.Avg) || !finite(a.Min) || !finite(a.Max) {
				t.Fatalf("%s: window %+v", w.Kind, a)
			}
		}
		for _, p := range all.WorkPeriods {
			if !finite(p.AvgMetric) || !finite(p.MaxMetric) {
				t.Fatalf("%s: work period %+v", w.Kind, p)
			}
		}
	}
}
