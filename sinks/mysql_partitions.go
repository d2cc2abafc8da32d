package sinks

import (
	"fmt"
	"sort"
	"strings"
)

// Daily partitions of the MySQL readings table
//
// readings is PARTITION BY RANGE COLUMNS(event_time). Its partitions, in
// order, cover the whole time line with no gap:
//
//	p_past        VALUES LESS THAN ('D0')        everything before the first day D0
//	pYYYYMMDD     VALUES LESS THAN ('next day')  rows of that day (its lower bound)
//	...
//	p_future      VALUES LESS THAN (MAXVALUE)    everything after the last day
//
// A partition pYYYYMMDD holds the rows from YYYY-MM-DD up to the next
// partition's first day: normally one day, more where days have not been
// split out yet. Because p_past and p_future catch every time, an INSERT
// never fails for want of a partition, and creating partitions is never on
// the correctness path.
//
// Before each transaction the sink makes every event day of the readings in
// it, and the Config.PartitionDaysAhead days after it, a partition of its
// own (on Open: today and the days ahead). It does so with
// ALTER TABLE readings REORGANIZE PARTITION x INTO (...), which splits the
// wider partition x (usually the empty p_future, or p_past during a replay
// of old data) at day boundaries; the cost is a copy of the rows already in
// x, nil when x is empty. ADD PARTITION is not used: it cannot coexist with
// a MAXVALUE partition. No more than Config.MaxPartitions partitions are
// made; later days stay in wider partitions. Dropping old partitions
// (retention) is left to the operator.

// partLayout is the partitioning of readings: partition i holds the event
// days [bounds[i-1], bounds[i]) (days since 1970-01-01 UTC); the first
// partition has no lower bound, the last no upper bound (MAXVALUE), so
// len(bounds) == len(names)-1.
type partLayout struct {
	names  []string
	bounds []int64
}

// find is the index of the partition holding day.
func (l *partLayout) find(day int64) int {
	return sort.Search(len(l.bounds), func(i int) bool { return l.bounds[i] > day })
}

// daily reports whether day has a partition of its own.
func (l *partLayout) daily(day int64) bool {
	i := l.find(day)
	return i > 0 && i < len(l.bounds) && l.bounds[i-1] == day && l.bounds[i] == day+1
}

// reorg is one REORGANIZE PARTITION statement: old is split into parts,
// whose upper bounds are uppers (the last one is old's own upper bound;
// noBound for MAXVALUE).
type reorg struct {
	old    string
	parts  []string
	uppers []int64
}

const noBound = int64(1) << 62

// maxDay is the last day a daily partition may have: its upper bound,
// 9999-12-31, is the last date DATETIME can hold.
var maxDay = daysFromCivil(9999, 12, 30)

// partName names the partition whose lower bound is lo (noBound negated
// for none) and upper bound hi (noBound for none).
func partName(lo, hi int64) string {
	switch {
	case lo == -noBound:
		return "p_past"
	case hi == noBound:
		return "p_future"
	}
	return "p" + strings.ReplaceAll(dayString(lo), "-", "")
}

// plan returns the reorganisations that give every day in wanted (sorted,
// distinct) a partition of its own, without exceeding maxParts partitions:
// days are taken in order until the next would exceed it. Days outside
// [minTimeMs, maxDay] are ignored.
func (l *partLayout) plan(wanted []int64, maxParts int) []reorg {
	bounds := make(map[int64]bool, len(l.bounds)+2*len(wanted))
	for _, b := range l.bounds {
		bounds[b] = true
	}
	minDay := minTimeMs / msPerDay
	var added []int64
	for _, d := range wanted {
		if d < minDay || d > maxDay || l.daily(d) {
			continue
		}
		var nb []int64
		for _, b := range [2]int64{d, d + 1} {
			if !bounds[b] {
				nb = append(nb, b)
			}
		}
		if len(l.names)+len(added)+len(nb) > maxParts {
			break
		}
		for _, b := range nb {
			bounds[b] = true
			added = append(added, b)
		}
	}
	if len(added) == 0 {
		return nil
	}
	sort.Slice(added, func(i, j int) bool { return added[i] < added[j] })
	// Group the new bounds by the partition they fall into.
	var out []reorg
	for j := 0; j < len(added); {
		i := l.find(added[j])
		lo, hi := -noBound, noBound
		if i > 0 {
			lo = l.bounds[i-1]
		}
		if i < len(l.bounds) {
			hi = l.bounds[i]
		}
		r := reorg{old: l.names[i]}
		prev := lo
		for ; j < len(added) && added[j] < hi; j++ {
			r.parts = append(r.parts, partName(prev, added[j]))
			r.uppers = append(r.uppers, added[j])
			prev = added[j]
		}
		r.parts = append(r.parts, partName(prev, hi))
		r.uppers = append(r.uppers, hi)
		out = append(out, r)
	}
	return out
}

// sql is the ALTER TABLE statement of r.
func (r *reorg) sql() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ALTER TABLE `readings` REORGANIZE PARTITION `%s` INTO (", r.old)
	for i, p := range r.parts {
		if i > 0 {
			b.WriteString(", ")
		}
		if r.uppers[i] == noBound {
			fmt.Fprintf(&b, "PARTITION `%s` VALUES LESS THAN (MAXVALUE)", p)
		} else {
			fmt.Fprintf(&b, "PARTITION `%s` VALUES LESS THAN ('%s')", p, dayString(r.uppers[i]))
		}
	}
	b.WriteString(")")
	return b.String()
}

// parsePartBound parses a RANGE COLUMNS partition description of a DATETIME
// column ("'2019-03-02'", "'2019-03-02 00:00:00'") to a day; it must fall
// on midnight.
func parsePartBound(desc string) (int64, error) {
	s := strings.Trim(desc, "'")
	date, clock, _ := strings.Cut(s, " ")
	if clock != "" && strings.Trim(clock, "0:.") != "" {
		return 0, fmt.Errorf("partition bound %s is not at midnight", desc)
	}
	var y, m, d int64
	if n, err := fmt.Sscanf(date, "%4d-%2d-%2d", &y, &m, &d); n != 3 || err != nil {
		return 0, fmt.Errorf("partition bound %s is not a date", desc)
	}
	day := daysFromCivil(y, m, d)
	if dayString(day) != date {
		return 0, fmt.Errorf("partition bound %s is not a valid date", desc)
	}
	return day, nil
}
