package oracle

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// RelTolerance is the relative tolerance of float comparisons: sums are
// accumulated in different orders by eddy and by the oracle.
const RelTolerance = 1e-9

// FieldDiff is one differing field of a row present on both sides.
type FieldDiff struct {
	Field     string
	Got, Want string
}

// WindowChange is a window present in both results with differing fields.
type WindowChange struct {
	Got, Want Window
	Fields    []FieldDiff
}

// WorkPeriodChange is a work period present in both results with differing
// fields.
type WorkPeriodChange struct {
	Got, Want WorkPeriod
	Fields    []FieldDiff
}

// Diff is the difference between a sink's contents (got) and the oracle's
// Result (want). Windows are keyed by (PboxID, Start), work periods by
// (PboxID, Start); a key that occurs twice in got is reported as extra.
type Diff struct {
	Counts []FieldDiff // readings, late, dead_letters

	WindowsGot, WindowsWant int
	MissingWindows          []Window // in want, not in got
	ExtraWindows            []Window // in got, not in want
	ChangedWindows          []WindowChange

	WorkPeriodsGot, WorkPeriodsWant int
	MissingWorkPeriods              []WorkPeriod
	ExtraWorkPeriods                []WorkPeriod
	ChangedWorkPeriods              []WorkPeriodChange
}

// Equal reports whether no difference was found.
func (d *Diff) Equal() bool {
	return len(d.Counts) == 0 &&
		len(d.MissingWindows)+len(d.ExtraWindows)+len(d.ChangedWindows) == 0 &&
		len(d.MissingWorkPeriods)+len(d.ExtraWorkPeriods)+len(d.ChangedWorkPeriods) == 0
}

// Format renders d for humans: a count line per category and at most max
// example rows per category (max <= 0: all).
func (d *Diff) Format(max int) string {
	var b strings.Builder
	if d.Equal() {
		fmt.Fprintf(&b, "MATCH: %d windows, %d work periods, counts equal\n", d.WindowsWant, d.WorkPeriodsWant)
		return b.String()
	}
	for _, c := range d.Counts {
		fmt.Fprintf(&b, "count %s: got %s, want %s\n", c.Field, c.Got, c.Want)
	}
	fmt.Fprintf(&b, "windows: got %d, want %d; missing %d, extra %d, differing %d\n", d.WindowsGot, d.WindowsWant,
		len(d.MissingWindows), len(d.ExtraWindows), len(d.ChangedWindows))
	list(&b, "missing window", max, len(d.MissingWindows), func(i int) string { return d.MissingWindows[i].String() })
	list(&b, "extra window", max, len(d.ExtraWindows), func(i int) string { return d.ExtraWindows[i].String() })
	list(&b, "differing window", max, len(d.ChangedWindows), func(i int) string {
		c := d.ChangedWindows[i]
		return c.Want.keyString() + " " + fieldsString(c.Fields)
	})
	fmt.Fprintf(&b, "work periods: got %d, want %d; missing %d, extra %d, differing %d\n", d.WorkPeriodsGot, d.WorkPeriodsWant,
		len(d.MissingWorkPeriods), len(d.ExtraWorkPeriods), len(d.ChangedWorkPeriods))
	list(&b, "missing work period", max, len(d.MissingWorkPeriods), func(i int) string { return d.MissingWorkPeriods[i].String() })
	list(&b, "extra work period", max, len(d.ExtraWorkPeriods), func(i int) string { return d.ExtraWorkPeriods[i].String() })
	list(&b, "differing work period", max, len(d.ChangedWorkPeriods), func(i int) string {
		c := d.ChangedWorkPeriods[i]
		return c.Want.keyString() + " " + fieldsString(c.Fields)
	})
	return b.String()
}

func list(b *strings.Builder, what string, max, n int, row func(int) string) {
	for i := 0; i < n; i++ {
		if max > 0 && i == max {
			fmt.Fprintf(b, "  ... %d more %ss\n", n-max, what)
			return
		}
		fmt.Fprintf(b, "  %s: %s\n", what, row(i))
	}
}

func fieldsString(fs []FieldDiff) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s got %s want %s", f.Field, f.Got, f.Want)
	}
	return strings.Join(parts, "; ")
}

// FormatTime renders Unix ms as "YYYY-MM-DD HH:MM:SS.sss" UTC.
func FormatTime(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") }

func fmtFloat(f float64) string {
	if math.IsNaN(f) {
		return "NULL"
	}
	return fmt.Sprint(f)
}

func (w Window) keyString() string { return fmt.Sprintf("%s@%s", w.PboxID, FormatTime(w.Start)) }

// String renders every field of w.
func (w Window) String() string {
	return fmt.Sprintf("%s [%s, %s) count=%d sum=%v min=%v max=%v avg=%v lat=%s lon=%s company=%q site=%q",
		w.PboxID, FormatTime(w.Start), FormatTime(w.End), w.Count, w.Sum, w.Min, w.Max, w.Avg,
		fmtFloat(w.Latitude), fmtFloat(w.Longitude), w.Company, w.Site)
}

func (p WorkPeriod) keyString() string { return fmt.Sprintf("%s@%s", p.PboxID, FormatTime(p.Start)) }

// String renders every field of p.
func (p WorkPeriod) String() string {
	return fmt.Sprintf("%s [%s, %s] duration_s=%v samples=%d avg=%v max=%v company=%q site=%q",
		p.PboxID, FormatTime(p.Start), FormatTime(p.End), p.DurationS, p.Samples, p.AvgMetric, p.MaxMetric, p.Company, p.Site)
}

// FloatsEqual reports whether a and b are equal within RelTolerance
// (relative to the larger magnitude, with an absolute floor of 1e-12). Two
// NaNs (two NULLs) are equal.
func FloatsEqual(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b {
		return true
	}
	return math.Abs(a-b) <= max(RelTolerance*max(math.Abs(a), math.Abs(b)), 1e-12)
}

type fieldCmp struct{ d []FieldDiff }

func (c *fieldCmp) int(name string, got, want int64) {
	if got != want {
		c.d = append(c.d, FieldDiff{name, fmt.Sprint(got), fmt.Sprint(want)})
	}
}

func (c *fieldCmp) time(name string, got, want int64) {
	if got != want {
		c.d = append(c.d, FieldDiff{name, FormatTime(got), FormatTime(want)})
	}
}

func (c *fieldCmp) float(name string, got, want float64) {
	if !FloatsEqual(got, want) {
		c.d = append(c.d, FieldDiff{name, fmtFloat(got), fmtFloat(want)})
	}
}

func (c *fieldCmp) str(name, got, want string) {
	if got != want {
		c.d = append(c.d, FieldDiff{name, fmt.Sprintf("%q", got), fmt.Sprintf("%q", want)})
	}
}

type rowKey struct {
	pboxid string
	start  int64
}

// Compare diffs got (typically loaded from a sink) against want (the
// oracle). It compares the Readings, Late and DeadLetters counts, and every
// window and work period field; floats with FloatsEqual. Missing, extra and
// differing rows are listed in want's key order, extras in got's order.
func Compare(got, want *Result) *Diff {
	d := &Diff{WindowsGot: len(got.Windows), WindowsWant: len(want.Windows),
		WorkPeriodsGot: len(got.WorkPeriods), WorkPeriodsWant: len(want.WorkPeriods)}
	var counts fieldCmp
	counts.int("readings", got.Readings, want.Readings)
	counts.int("late_records", got.Late, want.Late)
	counts.int("dead_letters", got.DeadLetters, want.DeadLetters)
	d.Counts = counts.d

	gotW := make(map[rowKey]Window, len(got.Windows))
	for _, w := range got.Windows {
		if _, dup := gotW[rowKey{w.PboxID, w.Start}]; !dup {
			gotW[rowKey{w.PboxID, w.Start}] = w
		}
	}
	wantKeys := make(map[rowKey]bool, len(want.Windows))
	for _, w := range want.Windows {
		k := rowKey{w.PboxID, w.Start}
		wantKeys[k] = true
		g, ok := gotW[k]
		if !ok {
			d.MissingWindows = append(d.MissingWindows, w)
			continue
		}
		var c fieldCmp
		c.time("window_end", g.End, w.End)
		c.int("count", g.Count, w.Count)
		c.float("sum", g.Sum, w.Sum)
		c.float("min", g.Min, w.Min)
		c.float("max", g.Max, w.Max)
		c.float("avg", g.Avg, w.Avg)
		c.float("latitude", g.Latitude, w.Latitude)
		c.float("longitude", g.Longitude, w.Longitude)
		c.str("company", g.Company, w.Company)
		c.str("site", g.Site, w.Site)
		if c.d != nil {
			d.ChangedWindows = append(d.ChangedWindows, WindowChange{Got: g, Want: w, Fields: c.d})
		}
	}
	// Extra: keys want lacks, and every repetition of a key.
	first := make(map[rowKey]bool, len(got.Windows))
	for _, w := range got.Windows {
		k := rowKey{w.PboxID, w.Start}
		if !wantKeys[k] || first[k] {
			d.ExtraWindows = append(d.ExtraWindows, w)
		}
		first[k] = true
	}

	gotP := make(map[rowKey]WorkPeriod, len(got.WorkPeriods))
	for _, p := range got.WorkPeriods {
		if _, dup := gotP[rowKey{p.PboxID, p.Start}]; !dup {
			gotP[rowKey{p.PboxID, p.Start}] = p
		}
	}
	wantKeys = make(map[rowKey]bool, len(want.WorkPeriods))
	for _, p := range want.WorkPeriods {
		k := rowKey{p.PboxID, p.Start}
		wantKeys[k] = true
		g, ok := gotP[k]
		if !ok {
			d.MissingWorkPeriods = append(d.MissingWorkPeriods, p)
			continue
		}
		var c fieldCmp
		c.time("period_end", g.End, p.End)
		c.float("duration_s", g.DurationS, p.DurationS)
		c.int("samples", g.Samples, p.Samples)
		c.float("avg_metric", g.AvgMetric, p.AvgMetric)
		c.float("max_metric", g.MaxMetric, p.MaxMetric)
		c.str("company", g.Company, p.Company)
		c.str("site", g.Site, p.Site)
		if c.d != nil {
			d.ChangedWorkPeriods = append(d.ChangedWorkPeriods, WorkPeriodChange{Got: g, Want: p, Fields: c.d})
		}
	}
	first = make(map[rowKey]bool, len(got.WorkPeriods))
	for _, p := range got.WorkPeriods {
		k := rowKey{p.PboxID, p.Start}
		if !wantKeys[k] || first[k] {
			d.ExtraWorkPeriods = append(d.ExtraWorkPeriods, p)
		}
		first[k] = true
	}
	return d
}
