package oracle

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"time"
)

// Window is one window aggregate row. Times are Unix ms UTC.
type Window struct {
	PboxID    string
	Start     int64 // inclusive
	End       int64 // exclusive
	Count     int64
	Sum       float64
	Min       float64
	Max       float64
	Avg       float64
	Latitude  float64 // of the latest reading by event time (ties: higher offset); NaN = NULL
	Longitude float64 // idem
	Company   string
	Site      string
}

// WorkPeriod is one work period row. Times are Unix ms UTC.
type WorkPeriod struct {
	PboxID    string
	Start     int64   // event time of the first reading of the run
	End       int64   // event time of the last reading of the run
	DurationS float64 // (End − Start) / 1000
	Samples   int64
	AvgMetric float64
	MaxMetric float64
	Company   string
	Site      string
}

// Reading is one on-time valid reading with its source position.
type Reading struct {
	Partition int32
	Offset    int64
	PboxID    string
	EventTime int64 // Unix ms UTC
	Metric    float64
	Latitude  float64 // NaN when absent
	Longitude float64 // NaN when absent
}

// Late is a valid record that arrived behind the watermark.
type Late struct {
	Partition int32
	Offset    int64
	PboxID    string
	EventTime int64 // Unix ms UTC
	Watermark int64 // partition watermark before the record, Unix ms UTC
}

// DeadLetter is a sent record that failed decoding or validation.
type DeadLetter struct {
	Partition int32
	Offset    int64
	Line      int64 // 1-based data record number in the file (header excluded), for humans
	Reason    string
}

// Result is what a bounded run of the job must produce. Windows are sorted by
// (PboxID, Start, End), WorkPeriods by (PboxID, Start).
//
// Records = Readings + Late + DeadLetters. For a Result loaded from a sink
// (LoadSQLite, LoadMySQL) only Readings, Late, DeadLetters (the row counts of
// those tables), Windows, WorkPeriods and DeadLetterRecords are set.
type Result struct {
	Records     int64 // records sent to Kafka
	Skipped     int64 // input rows the replayer skips (bad column count, blank lines)
	Readings    int64 // valid on-time records
	Late        int64
	DeadLetters int64

	Windows     []Window
	WorkPeriods []WorkPeriod

	// Detail, set by Compute only.
	LateRecords       []Late
	DeadLetterRecords []DeadLetter
	PartitionRecords  []int64 // records sent per partition
}

// Summary is a one-line description of r.
func (r *Result) Summary() string {
	return fmt.Sprintf("records=%d skipped=%d valid=%d late=%d dead_letters=%d windows=%d work_periods=%d",
		r.Records, r.Skipped, r.Readings+r.Late, r.Late, r.DeadLetters, len(r.Windows), len(r.WorkPeriods))
}

// Partition returns the partition sarama's default hash partitioner
// (NewHashPartitioner) picks for key among n partitions: FNV-1a 32 of the key
// bytes, taken as int32, modulo n, negated when negative.
func Partition(key string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// ComputeFile is Compute on the file at path.
func ComputeFile(path string, opts Options) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	defer f.Close()
	return Compute(f, opts)
}

// Compute reads the whole dataset from r (plain or gzip) and returns what a
// bounded run of the job over it must produce. It returns an error for
// invalid options, an unreadable input or a CSV header that lacks a mapped
// column; bad records are dead letters, not errors.
func Compute(r io.Reader, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	res := &Result{PartitionRecords: make([]int64, opts.Partitions)}
	ooo := opts.OutOfOrderness.Milliseconds()
	lateness := opts.AllowedLateness.Milliseconds()
	// Per partition: max event time of the valid records so far.
	maxT := make([]int64, opts.Partitions)
	seen := make([]bool, opts.Partitions)
	var readings []Reading
	val := newValidator(&opts)
	future := int64(math.MaxInt64)
	if opts.MaxFuture > 0 {
		future = opts.Now.UnixMilli() + opts.MaxFuture.Milliseconds()
	}

	skipped, err := readRecords(r, &opts, func(raw *rawRecord) {
		res.Records++
		p := Partition(keyOf(raw), opts.Partitions)
		off := res.PartitionRecords[p]
		res.PartitionRecords[p]++
		d, reason := val.decode(raw)
		if reason == "" && d.eventTime > future {
			reason = fmt.Sprintf("%s: %s is more than %v after %s", reasonFutureEventTime, FormatTime(d.eventTime), opts.MaxFuture, opts.Now.UTC().Format(time.RFC3339))
		}
		if reason != "" {
			res.DeadLetters++
			res.DeadLetterRecords = append(res.DeadLetterRecords, DeadLetter{Partition: p, Offset: off, Line: res.Records, Reason: reason})
			return
		}
		if seen[p] {
			w := maxT[p] - ooo
			if d.eventTime < w-lateness {
				res.Late++
				res.LateRecords = append(res.LateRecords, Late{Partition: p, Offset: off, PboxID: d.pboxid, EventTime: d.eventTime, Watermark: w})
				return
			}
		}
		if !seen[p] || d.eventTime > maxT[p] {
			maxT[p], seen[p] = d.eventTime, true
		}
		res.Readings++
		readings = append(readings, Reading{Partition: p, Offset: off, PboxID: d.pboxid, EventTime: d.eventTime,
			Metric: d.metric, Latitude: d.lat, Longitude: d.lon})
	})
	if err != nil {
		return nil, err
	}
	res.Skipped = skipped

	// Per device, readings in (event time, offset) order. A device lives in
	// one partition, so the offset breaks every tie.
	sort.SliceStable(readings, func(i, j int) bool {
		a, b := &readings[i], &readings[j]
		if a.PboxID != b.PboxID {
			return a.PboxID < b.PboxID
		}
		if a.EventTime != b.EventTime {
			return a.EventTime < b.EventTime
		}
		return a.Offset < b.Offset
	})
	for i := 0; i < len(readings); {
		j := i
		for j < len(readings) && readings[j].PboxID == readings[i].PboxID {
			j++
		}
		dev := readings[i:j]
		at := deviceAt(opts, dev[0].PboxID)
		threshold := func(t int64) float64 {
			if th := at(t).Threshold; th != nil {
				return *th
			}
			return opts.Threshold
		}
		for _, w := range deviceWindows(dev, opts.Window) {
			info := at(w.Start)
			w.Company, w.Site = info.Company, info.Site
			res.Windows = append(res.Windows, w)
		}
		for _, p := range deviceWorkPeriods(dev, threshold, opts.MaxGap.Milliseconds()) {
			info := at(p.Start)
			p.Company, p.Site = info.Company, info.Site
			res.WorkPeriods = append(res.WorkPeriods, p)
		}
		i = j
	}
	sortWindows(res.Windows)
	sortWorkPeriods(res.WorkPeriods)
	return res, nil
}

func sortWindows(ws []Window) {
	sort.Slice(ws, func(i, j int) bool {
		a, b := &ws[i], &ws[j]
		if a.PboxID != b.PboxID {
			return a.PboxID < b.PboxID
		}
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.End < b.End
	})
}

func sortWorkPeriods(ps []WorkPeriod) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := &ps[i], &ps[j]
		if a.PboxID != b.PboxID {
			return a.PboxID < b.PboxID
		}
		return a.Start < b.Start
	})
}

// floorDiv is a/b rounded towards −∞ (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// deviceWindows returns the windows of one device; dev is sorted by
// (event time, offset).
func deviceWindows(dev []Reading, spec WindowSpec) []Window {
	// Assign every reading to its windows, then aggregate each window over
	// its readings in (event time, offset) order: the last one is the latest.
	type key struct{ start, end int64 }
	members := map[key][]int{}
	var order []key
	add := func(k key, i int) {
		if _, ok := members[k]; !ok {
			order = append(order, k)
		}
		members[k] = append(members[k], i)
	}
	switch spec.Kind {
	case WindowTumbling:
		s := spec.Size.Milliseconds()
		for i, r := range dev {
			k := floorDiv(r.EventTime, s)
			add(key{k * s, (k + 1) * s}, i)
		}
	case WindowSliding:
		s, d := spec.Size.Milliseconds(), spec.Slide.Milliseconds()
		for i, r := range dev {
			// Every k with k·d <= t < k·d + s.
			for k := floorDiv(r.EventTime-s, d) + 1; k*d <= r.EventTime; k++ {
				add(key{k * d, k*d + s}, i)
			}
		}
	case WindowSession:
		g := spec.Gap.Milliseconds()
		// Sorted by time: a reading joins the current session when its
		// interval [t, t+g) intersects or touches the session's [start, end).
		var cur key
		var idx []int
		for i, r := range dev {
			if len(idx) > 0 && r.EventTime <= cur.end {
				cur.end = max(cur.end, r.EventTime+g)
				idx = append(idx, i)
				continue
			}
			if len(idx) > 0 {
				for _, j := range idx {
					add(cur, j)
				}
			}
			cur, idx = key{r.EventTime, r.EventTime + g}, []int{i}
		}
		for _, j := range idx {
			add(cur, j)
		}
	}
	out := make([]Window, 0, len(order))
	for _, k := range order {
		w := Window{PboxID: dev[0].PboxID, Start: k.start, End: k.end, Min: math.Inf(1), Max: math.Inf(-1)}
		for _, i := range members[k] {
			r := dev[i]
			w.Count++
			w.Sum += r.Metric
			w.Min = min(w.Min, r.Metric)
			w.Max = max(w.Max, r.Metric)
			w.Latitude, w.Longitude = r.Latitude, r.Longitude // ends as the latest
		}
		w.Avg = w.Sum / float64(w.Count)
		out = append(out, w)
	}
	return out
}

// deviceWorkPeriods returns the work periods of one device; dev is sorted by
// (event time, offset).
// deviceAt returns the business data of pboxid as a function of event time.
func deviceAt(opts Options, pboxid string) func(t int64) Device {
	vs, ok := opts.DeviceVersions[pboxid]
	if !ok {
		d := opts.Devices[pboxid]
		return func(int64) Device { return d }
	}
	vs = slices.Clone(vs)
	slices.SortStableFunc(vs, func(a, b DeviceVersion) int { return cmp.Compare(a.ValidFromMs, b.ValidFromMs) })
	return func(t int64) Device {
		var cur Device
		for _, v := range vs { // few versions
			if v.ValidFromMs > t {
				break
			}
			cur = v.Device
			if v.Deleted {
				cur = Device{}
			}
		}
		return cur
	}
}

func deviceWorkPeriods(dev []Reading, threshold func(t int64) float64, maxGap int64) []WorkPeriod {
	var out []WorkPeriod
	var run []Reading
	flush := func() {
		if len(run) == 0 {
			return
		}
		p := WorkPeriod{PboxID: run[0].PboxID, Start: run[0].EventTime, End: run[len(run)-1].EventTime,
			Samples: int64(len(run)), MaxMetric: math.Inf(-1)}
		sum := 0.0
		for _, r := range run {
			sum += r.Metric
			p.MaxMetric = max(p.MaxMetric, r.Metric)
		}
		p.AvgMetric = sum / float64(len(run))
		p.DurationS = float64(p.End-p.Start) / 1000
		out = append(out, p)
		run = run[:0]
	}
	for _, r := range dev {
		if r.Metric <= threshold(r.EventTime) {
			flush()
			continue
		}
		if len(run) > 0 && r.EventTime-run[len(run)-1].EventTime > maxGap {
			flush()
		}
		run = append(run, r)
	}
	flush()
	return out
}
