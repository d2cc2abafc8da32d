package sinks

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"
)

func day(s string) int64 {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t.Unix() / 86400
}

// layoutOf builds a layout from partition names and the upper-bound dates
// of all but the last.
func layoutOf(names []string, uppers ...string) partLayout {
	l := partLayout{names: names}
	for _, u := range uppers {
		l.bounds = append(l.bounds, day(u))
	}
	return l
}

// apply returns the layout after the reorganisations, as MySQL would
// leave it, and fails t if one is not a valid REORGANIZE of l.
func apply(t *testing.T, l partLayout, rs []reorg) partLayout {
	t.Helper()
	for _, r := range rs {
		i := slices.Index(l.names, r.old)
		if i < 0 {
			t.Fatalf("reorganises unknown partition %s", r.old)
		}
		hi := noBound
		if i < len(l.bounds) {
			hi = l.bounds[i]
		}
		if r.uppers[len(r.uppers)-1] != hi {
			t.Fatalf("reorganising %s changes its upper bound", r.old)
		}
		names := slices.Concat(l.names[:i], r.parts, l.names[i+1:])
		bounds := slices.Concat(l.bounds[:i], r.uppers[:len(r.uppers)-1], l.bounds[i:])
		l = partLayout{names: names, bounds: bounds}
	}
	return l
}

func checkLayout(t *testing.T, l partLayout) {
	t.Helper()
	if len(l.bounds) != len(l.names)-1 {
		t.Fatalf("%d names, %d bounds", len(l.names), len(l.bounds))
	}
	seen := map[string]bool{}
	for i, n := range l.names {
		if seen[n] {
			t.Fatalf("duplicate partition name %s in %v", n, l.names)
		}
		seen[n] = true
		lo, hi := -noBound, noBound
		if i > 0 {
			lo = l.bounds[i-1]
		}
		if i < len(l.bounds) {
			hi = l.bounds[i]
		}
		if lo >= hi {
			t.Fatalf("partition %s has bounds [%d, %d)", n, lo, hi)
		}
		if want := partName(lo, hi); n != want {
			t.Fatalf("partition [%d,%d) is named %s, want %s", lo, hi, n, want)
		}
	}
}

func TestPlanPartitions(t *testing.T) {
	fresh := layoutOf([]string{"p_past", "p_future"}, "2026-03-10")
	for _, tc := range []struct {
		name   string
		l      partLayout
		wanted []string
		max    int
		want   []string // SQL
	}{
		{"nothing wanted", fresh, nil, 100, nil},
		{"days ahead at open", fresh, []string{"2026-03-10", "2026-03-11", "2026-03-12"}, 100, []string{
			"ALTER TABLE `readings` REORGANIZE PARTITION `p_future` INTO (PARTITION `p20260310` VALUES LESS THAN ('2026-03-11'), " +
				"PARTITION `p20260311` VALUES LESS THAN ('2026-03-12'), PARTITION `p20260312` VALUES LESS THAN ('2026-03-13'), " +
				"PARTITION `p_future` VALUES LESS THAN (MAXVALUE))"}},
		{"old data splits p_past, leaves a gap partition", fresh, []string{"2019-03-01", "2019-03-02"}, 100, []string{
			"ALTER TABLE `readings` REORGANIZE PARTITION `p_past` INTO (PARTITION `p_past` VALUES LESS THAN ('2019-03-01'), " +
				"PARTITION `p20190301` VALUES LESS THAN ('2019-03-02'), PARTITION `p20190302` VALUES LESS THAN ('2019-03-03'), " +
				"PARTITION `p20190303` VALUES LESS THAN ('2026-03-10'))"}},
		{"days on both sides", fresh, []string{"2026-03-09", "2026-03-10"}, 100, []string{
			"ALTER TABLE `readings` REORGANIZE PARTITION `p_past` INTO (PARTITION `p_past` VALUES LESS THAN ('2026-03-09'), " +
				"PARTITION `p20260309` VALUES LESS THAN ('2026-03-10'))",
			"ALTER TABLE `readings` REORGANIZE PARTITION `p_future` INTO (PARTITION `p20260310` VALUES LESS THAN ('2026-03-11'), " +
				"PARTITION `p_future` VALUES LESS THAN (MAXVALUE))"}},
		{"gap partition split in the middle",
			layoutOf([]string{"p_past", "p20190301", "p20190302", "p_future"}, "2019-03-01", "2019-03-02", "2026-01-01"),
			[]string{"2019-03-05"}, 100, []string{
				"ALTER TABLE `readings` REORGANIZE PARTITION `p20190302` INTO (PARTITION `p20190302` VALUES LESS THAN ('2019-03-05'), " +
					"PARTITION `p20190305` VALUES LESS THAN ('2019-03-06'), PARTITION `p20190306` VALUES LESS THAN ('2026-01-01'))"}},
		{"already daily", layoutOf([]string{"p_past", "p20190301", "p_future"}, "2019-03-01", "2019-03-02"), []string{"2019-03-01"}, 100, nil},
		{"cap", fresh, []string{"2026-03-10", "2026-03-11", "2026-03-12"}, 3, []string{
			"ALTER TABLE `readings` REORGANIZE PARTITION `p_future` INTO (PARTITION `p20260310` VALUES LESS THAN ('2026-03-11'), " +
				"PARTITION `p_future` VALUES LESS THAN (MAXVALUE))"}},
		{"outside DATETIME", fresh, []string{"9999-12-31", "0999-12-31"}, 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wanted []int64
			for _, w := range tc.wanted {
				wanted = append(wanted, day(w))
			}
			rs := tc.l.plan(wanted, tc.max)
			var got []string
			for _, r := range rs {
				got = append(got, r.sql())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("plan:\n got %q\nwant %q", got, tc.want)
			}
			after := apply(t, tc.l, rs)
			checkLayout(t, after)
			if len(after.names) > tc.max {
				t.Fatalf("%d partitions, cap %d", len(after.names), tc.max)
			}
		})
	}
}

// TestPlanPartitionsRandom applies plans for random wanted days to random
// layouts and checks that every wanted day ends with its own partition
// (unless the cap stops it), names follow the rule, and the cap holds.
func TestPlanPartitionsRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(seed.For(t), 1))
	base := day("2019-03-01")
	for iter := range 500 {
		l := partLayout{names: []string{"p_past", "p_future"}, bounds: []int64{base + int64(rnd.IntN(100))}}
		maxParts := 3 + rnd.IntN(60)
		for range 1 + rnd.IntN(6) {
			var wanted []int64
			for range rnd.IntN(20) {
				wanted = append(wanted, base+int64(rnd.IntN(120)))
			}
			slices.Sort(wanted)
			wanted = slices.Compact(wanted)
			rs := l.plan(wanted, maxParts)
			l = apply(t, l, rs)
			checkLayout(t, l)
			if len(l.names) > maxParts {
				t.Fatalf("iter %d: %d partitions, cap %d", iter, len(l.names), maxParts)
			}
			missing := 0
			for _, w := range wanted {
				if !l.daily(w) {
					missing++
				}
			}
			if missing > 0 && len(l.names)+2 <= maxParts {
				t.Fatalf("iter %d: %d wanted days without a partition, %d/%d partitions used", iter, missing, len(l.names), maxParts)
			}
			if again := l.plan(wanted, maxParts); len(again) != 0 && missing == 0 {
				t.Fatalf("iter %d: plan not idempotent: %v", iter, again)
			}
		}
	}
}

func TestParsePartBound(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"'2019-03-02'", "2019-03-02", true},
		{"'2019-03-02 00:00:00'", "2019-03-02", true},
		{"'2019-03-02 00:00:00.000'", "2019-03-02", true},
		{"'2019-03-02 12:00:00'", "", false},
		{"'2019-02-30'", "", false},
		{"MAXVALUE", "", false},
		{"738000", "", false},
	} {
		got, err := parsePartBound(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parsePartBound(%s): error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && dayString(got) != tc.want {
			t.Errorf("parsePartBound(%s) = %s, want %s", tc.in, dayString(got), tc.want)
		}
	}
}

func TestPartName(t *testing.T) {
	got := []string{partName(-noBound, day("2019-03-01")), partName(day("2019-03-01"), day("2019-03-02")),
		partName(day("2019-03-02"), day("2026-01-01")), partName(day("2019-03-02"), noBound)}
	want := []string{"p_past", "p20190301", "p20190302", "p_future"}
	if !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
}
