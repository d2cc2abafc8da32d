package operators

import (
	"cmp"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "seed of the randomised partition test (0 = random)")
	itersFlag = flag.Int("iters", 400, "iterations of the randomised partition test")
)

// A record of a generated input, in processing (offset) order.
type genRecord struct {
	dev      string
	t        int64
	metric   float64
	lat, lon float64
}

func (r genRecord) json() []byte {
	b := []byte(`{"pboxid":"` + r.dev + `","event_time":` + strconv.FormatInt(r.t, 10) + `,"metric":` + strconv.FormatFloat(r.metric, 'g', -1, 64))
	if !math.IsNaN(r.lat) {
		b = append(b, `,"latitude":`+strconv.FormatFloat(r.lat, 'g', -1, 64)...)
	}
	if !math.IsNaN(r.lon) {
		b = append(b, `,"longitude":"`+strconv.FormatFloat(r.lon, 'g', -1, 64)+`"`...)
	}
	return append(b, '}')
}

type genReading struct {
	genRecord
	offset int64
}

// batchResult is what a batch computation over the whole input yields.
type batchResult struct {
	late     []int64 // offsets
	readings []int64 // offsets of on-time readings
	windows  map[wkey]WindowAggregate
	periods  []WorkPeriod
}

type wkey struct {
	id    string
	start int64
}

// batch is the brute-force reference: simulate the watermark to find late
// records, then compute windows and work periods per device from sorted
// on-time readings.
func batch(cfg Config, devs DeviceMap, recs []genRecord) batchResult {
	var res batchResult
	res.windows = map[wkey]WindowAggregate{}
	L, ooo := cfg.AllowedLateness.Milliseconds(), cfg.OutOfOrderness.Milliseconds()
	wm := int64(math.MinInt64)
	byDev := map[string][]genReading{}
	for i, r := range recs {
		if wm != math.MinInt64 && r.t < wm-L {
			res.late = append(res.late, int64(i))
			continue
		}
		res.readings = append(res.readings, int64(i))
		byDev[r.dev] = append(byDev[r.dev], genReading{r, int64(i)})
		wm = max(wm, r.t-ooo)
	}
	for id, rs := range byDev {
		slices.SortFunc(rs, func(a, b genReading) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.offset, b.offset)) })
		info := devs[id]
		// windows
		add := func(start, end int64, r genReading) {
			k := wkey{id, start}
			w, ok := res.windows[k]
			if !ok {
				w = WindowAggregate{PboxID: id, Start: start, End: end, Min: math.Inf(1), Max: math.Inf(-1), Company: info.Company, Site: info.Site}
			}
			w.End = max(w.End, end)
			w.Count++
			w.Sum += r.metric
			w.Min = math.Min(w.Min, r.metric)
			w.Max = math.Max(w.Max, r.metric)
			w.Avg = w.Sum / float64(w.Count)
			w.Latitude, w.Longitude = r.lat, r.lon // rs sorted by (t, offset): the last one wins
			res.windows[k] = w
		}
		switch cfg.Window.Kind {
		case WindowSession:
			gap := cfg.Window.Gap.Milliseconds()
			var start, last int64
			for i, r := range rs {
				if i == 0 || r.t-last > gap {
					start = r.t
				}
				last = r.t
				add(start, r.t+gap, r)
			}
		default:
			size := cfg.Window.Size.Milliseconds()
			slide := size
			if cfg.Window.Kind == WindowSliding {
				slide = cfg.Window.Slide.Milliseconds()
			}
			for _, r := range rs {
				// every k with k·slide <= t < k·slide + size, by brute force
				k := r.t / slide
				for k*slide > r.t {
					k--
				}
				for ; k*slide+size > r.t; k-- {
					add(k*slide, k*slide+size, r)
				}
			}
		}
		// work periods
		thr := cfg.Threshold
		if info.Threshold != nil {
			thr = *info.Threshold
		}
		maxGap := cfg.MaxGap.Milliseconds()
		var run []genReading
		flush := func() {
			if len(run) == 0 {
				return
			}
			p := WorkPeriod{PboxID: id, Start: run[0].t, End: run[len(run)-1].t, Samples: int64(len(run)), MaxMetric: math.Inf(-1), Company: info.Company, Site: info.Site}
			sum := 0.0
			for _, r := range run {
				sum += r.metric
				p.MaxMetric = math.Max(p.MaxMetric, r.metric)
			}
			p.AvgMetric = sum / float64(len(run))
			res.periods = append(res.periods, p)
			run = run[:0]
		}
		for _, r := range rs {
			if r.metric <= thr {
				flush()
				continue
			}
			if len(run) > 0 && r.t-run[len(run)-1].t > maxGap {
				flush()
			}
			run = append(run, r)
		}
		flush()
	}
	slices.SortFunc(res.periods, comparePeriods)
	return res
}

// comparePeriods orders work periods by (pboxid, start) and then by content:
// readings with equal event times can make two periods share a start.
func comparePeriods(a, b WorkPeriod) int {
	return cmp.Or(cmp.Compare(a.PboxID, b.PboxID), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End),
		cmp.Compare(a.Samples, b.Samples), cmp.Compare(a.MaxMetric, b.MaxMetric), cmp.Compare(a.AvgMetric, b.AvgMetric))
}

func closeEnough(a, b float64) bool {
	if sameFloat(a, b) {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func sameWindow(a, b WindowAggregate) bool {
	return a.PboxID == b.PboxID && a.Start == b.Start && a.End == b.End && a.Count == b.Count &&
		closeEnough(a.Sum, b.Sum) && a.Min == b.Min && a.Max == b.Max && closeEnough(a.Avg, b.Avg) &&
		sameFloat(a.Latitude, b.Latitude) && sameFloat(a.Longitude, b.Longitude) &&
		a.Company == b.Company && a.Site == b.Site
}

func samePeriod(a, b WorkPeriod) bool {
	return a.PboxID == b.PboxID && a.Start == b.Start && a.End == b.End && a.Samples == b.Samples &&
		closeEnough(a.AvgMetric, b.AvgMetric) && a.MaxMetric == b.MaxMetric && a.Company == b.Company && a.Site == b.Site
}

// genCase builds a random configuration and input.
func genCase(rng *rand.Rand) (Config, DeviceMap, []genRecord) {
	cfg := DefaultConfig()
	unit := int64(1 + rng.IntN(3)) // small units make boundaries collide often
	d := func(n int64) time.Duration { return time.Duration(n*unit) * time.Millisecond }
	switch rng.IntN(3) {
	case 0:
		cfg.Window = WindowSpec{Kind: WindowTumbling, Size: d(1 + rng.Int64N(30))}
	case 1:
		slide := 1 + rng.Int64N(15)
		cfg.Window = WindowSpec{Kind: WindowSliding, Size: d(slide + rng.Int64N(40)), Slide: d(slide)}
	case 2:
		cfg.Window = WindowSpec{Kind: WindowSession, Gap: d(1 + rng.Int64N(20))}
	}
	cfg.MaxGap = d(1 + rng.Int64N(20))
	cfg.OutOfOrderness = d(rng.Int64N(25))
	if rng.IntN(2) == 0 {
		cfg.AllowedLateness = d(rng.Int64N(30))
	} else {
		cfg.AllowedLateness = 0
	}
	cfg.Threshold = float64(rng.IntN(10))

	devs := DeviceMap{}
	nDev := 1 + rng.IntN(5)
	ids := make([]string, nDev)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev%d", i)
		if rng.IntN(3) == 0 {
			thr := float64(rng.IntN(10))
			devs[ids[i]] = DeviceInfo{Company: "co" + strconv.Itoa(i), Site: "site", Threshold: &thr}
		} else if rng.IntN(2) == 0 {
			devs[ids[i]] = DeviceInfo{Company: "co" + strconv.Itoa(i)}
		}
	}

	n := 1 + rng.IntN(300)
	ooo := cfg.OutOfOrderness.Milliseconds()
	type keyed struct {
		r   genRecord
		key int64
	}
	farOut := rng.IntN(3) != 0 // otherwise: shuffled within the bound only, nothing late
	recs := make([]keyed, n)
	t := rng.Int64N(2000) - 1000 // negative times too
	for i := range recs {
		t += rng.Int64N(4 * unit) // ties happen
		if rng.IntN(30) == 0 {
			t += rng.Int64N(60 * unit) // long gaps
		}
		r := genRecord{dev: ids[rng.IntN(nDev)], t: t, metric: float64(rng.IntN(12)), lat: math.NaN(), lon: math.NaN()}
		if rng.IntN(4) == 0 {
			r.metric += rng.Float64()
		}
		if rng.IntN(2) == 0 {
			r.lat = float64(rng.IntN(180)) - 90
		}
		if rng.IntN(2) == 0 {
			r.lon = float64(rng.IntN(360)) - 180
		}
		// arrival key: t + jitter within the bound keeps every record on time
		recs[i] = keyed{r, t + rng.Int64N(ooo+1)}
		if farOut && rng.IntN(15) == 0 { // a record far out of order: probably late
			recs[i].key += rng.Int64N(100 * unit)
		}
	}
	slices.SortStableFunc(recs, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	out := make([]genRecord, n)
	for i := range recs {
		out[i] = recs[i].r
	}
	return cfg, devs, out
}

func TestPartitionMatchesBatch(t *testing.T) {
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
		cfg, devs, recs := genCase(rng)
		if err := checkAgainstBatch(cfg, devs, recs); err != nil {
			t.Fatalf("seed %d iteration %d: %v\nconfig %+v\ndevices %v\ninput %v", seed, it, err, cfg, devs, recs)
		}
	}
}

func checkAgainstBatch(cfg Config, devs DeviceMap, recs []genRecord) error {
	want := batch(cfg, devs, recs)
	p := NewPartition(7, cfg, devs)
	var out Output
	fireDelta := int64(0)
	if cfg.Window.Kind == WindowSession {
		fireDelta = 1
	}
	for i, r := range recs {
		nw := len(out.Windows)
		p.Process(int64(i), r.json(), &out)
		wm := p.Watermark()
		for _, w := range out.Windows[nw:] {
			if w.End+fireDelta > wm {
				return fmt.Errorf("window %+v fired at watermark %d", w, wm)
			}
		}
		if !slices.IsSortedFunc(out.Windows[nw:], func(a, b WindowAggregate) int {
			return cmp.Or(cmp.Compare(a.End, b.End), cmp.Compare(a.PboxID, b.PboxID), cmp.Compare(a.Start, b.Start))
		}) {
			return fmt.Errorf("windows of offset %d not ordered by (end, pboxid, start)", i)
		}
	}
	p.Finish(&out)
	if len(out.DeadLetters) != 0 {
		return fmt.Errorf("dead letters: %+v", out.DeadLetters)
	}
	var late, readings []int64
	for _, l := range out.Late {
		late = append(late, l.Offset)
		if l.Partition != 7 || l.Reason != ReasonLate || l.PboxID != recs[l.Offset].dev {
			return fmt.Errorf("bad late record %+v", l)
		}
	}
	for _, r := range out.Readings {
		readings = append(readings, r.Offset)
		g := recs[r.Offset]
		if r.Partition != 7 || r.PboxID != g.dev || r.EventTime != g.t || r.Metric != g.metric ||
			!sameFloat(r.Latitude, g.lat) || !sameFloat(r.Longitude, g.lon) || r.Company != devs[g.dev].Company {
			return fmt.Errorf("bad reading %+v for %+v", r, g)
		}
	}
	if !slices.Equal(late, want.late) {
		return fmt.Errorf("late offsets %v, want %v", late, want.late)
	}
	if !slices.Equal(readings, want.readings) {
		return fmt.Errorf("reading offsets %v, want %v", readings, want.readings)
	}
	st := p.Stats()
	if st.Received != int64(len(recs)) || st.Valid != int64(len(recs)) || st.Late != int64(len(late)) ||
		st.WindowsFired != int64(len(out.Windows)) || st.WorkPeriods != int64(len(out.WorkPeriods)) {
		return fmt.Errorf("stats %+v", st)
	}

	// Windows: the last row per key must equal the batch window. Without
	// allowed lateness every key fires exactly once. Sessions may leave
	// stale keys behind after a late merge; each must lie inside a batch
	// session of its device.
	got := map[wkey]WindowAggregate{}
	for _, w := range out.Windows {
		k := wkey{w.PboxID, w.Start}
		if _, dup := got[k]; dup && cfg.AllowedLateness == 0 {
			return fmt.Errorf("window %v fired twice without allowed lateness", k)
		}
		got[k] = w
	}
	for k, w := range want.windows {
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("missing window %+v", w)
		}
		if !sameWindow(g, w) {
			return fmt.Errorf("window %v\n got %+v\nwant %+v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want.windows[k]; ok {
			continue
		}
		stale := false
		if cfg.Window.Kind == WindowSession && cfg.AllowedLateness > 0 {
			for _, w := range want.windows {
				if w.PboxID == g.PboxID && w.Start <= g.Start && g.End <= w.End && w.Start != g.Start {
					stale = true
				}
			}
		}
		if !stale {
			return fmt.Errorf("unexpected window %+v", g)
		}
	}

	// Work periods: exactly the batch set, each once.
	periods := slices.Clone(out.WorkPeriods)
	slices.SortFunc(periods, comparePeriods)
	if len(periods) != len(want.periods) {
		return fmt.Errorf("%d work periods, want %d:\n got %+v\nwant %+v", len(periods), len(want.periods), periods, want.periods)
	}
	for i := range periods {
		if !samePeriod(periods[i], want.periods[i]) {
			return fmt.Errorf("work period %d\n got %+v\nwant %+v", i, periods[i], want.periods[i])
		}
	}
	return nil
}
