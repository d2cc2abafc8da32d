package operators

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// PartitionStats are the cumulative counters of a Partition.
type PartitionStats struct {
	Received     int64 // Process calls
	Valid        int64 // records that decoded and validated (on-time readings + Late)
	Late         int64 // valid records behind watermark − allowed lateness
	DeadLetters  int64 // records that failed to decode or validate
	WindowsFired int64 // window emissions, re-fires included
	WorkPeriods  int64 // work periods emitted
}

// deviceState is the keyed state of one device. Exported fields (on an
// unexported type) are the state a snapshot keeps (see encodeDeviceState).
//
// It is kept small (128 bytes): a partition may cache a million of them. The
// device id is its entry's (e.id).
type deviceState struct {
	Windows []windowState    // open windows, sorted by Start (and so by End)
	Pending []pendingReading // readings not yet released to the run detector
	Run     workRun          // open work period

	e          *deviceEntry
	dirty      bool         // changed since it was last saved to the store
	prev, next *deviceState // LRU list of cached states (Partition.lru)
}

// Partition is the operator chain of one device partition: decode →
// validate → lateness → enrich → windows → work periods, for every device
// whose records the partition receives.
//
// Records are fed in source-offset order by Process; the partition keeps
// one watermark W = (max event time of all valid records so far) −
// Config.OutOfOrderness (math.MinInt64 before the first). Per record:
//
//  1. A record that fails decoding is appended to Output.DeadLetters.
//     So is, with reason future_event_time, a record whose event time is
//     more than Config.MaxFuture ahead of the processing time (when both
//     are set): it neither moves W nor enters any state.
//  2. A valid record with event time t < W − Config.AllowedLateness (W
//     before this record) is appended to Output.Late and otherwise ignored.
//  3. Every other record is enriched from the DeviceLookup, appended to
//     Output.Readings, added to its windows and to its device's work-period
//     buffer; then W advances, and every window and work period that W
//     completes is appended to Output.Windows and Output.WorkPeriods.
//
// Windows (Config.Window) aggregate per device and fire when W >= their end
// (sessions: W > their end, because a reading exactly at the end would still
// merge into the session). With allowed lateness L a fired window is kept
// until W >= end + L (sessions: W > end + L); an on-time record that lands in
// it changes it and it fires again under the same key, replacing the earlier
// row. Sessions can also merge after firing; when that moves a session's
// start, the row emitted under the old start is left stale (superseded by the
// merged session's row).
//
// Work periods are the maximal runs of a device's on-time readings, in
// (event time, offset) order, with metric strictly above the threshold and
// consecutive readings at most Config.MaxGap apart. Readings are buffered and
// released to the run detector once t <= W − L, so the result equals that
// batch definition whatever the arrival order within the lateness bound. A
// period is emitted when a released reading ends it or when W − L > its last
// reading + MaxGap. (Readings with equal event times can make two periods of
// a device share a start, and so a sink key (pboxid, start).) The threshold
// is that of the device (DeviceInfo.Threshold, else Config.Threshold); with
// a VersionedDeviceLookup it is the version in force at the reading's event
// time, and company and site of windows and work periods are those in force
// at their start (an event-time temporal join); with a plain DeviceLookup
// they are looked up when each reading arrives and when rows are emitted.
//
// Within one Process, Finish or AdvanceProcessingTime call emissions are
// ordered by (end, pboxid, start). Finish is the final watermark of bounded
// mode.
//
// Processing time (the wall clock) enters only through
// AdvanceProcessingTime; it matters only for Config.MaxFuture and
// Config.IdleTimeout, both off by default, so that by default the output
// depends on the records alone.
//
// A Partition is not safe for concurrent use; it starts no goroutines and
// does no I/O.
type Partition struct {
	partition int32
	devices   DeviceLookup
	versioned VersionedDeviceLookup // devices, when it keeps versions
	dec       *Decoder

	session               bool
	size, slide, gap      int64 // window parameters, ms
	maxGap, ooo, lateness int64 // ms
	fireDelta             int64 // 0; 1 for sessions (fire when W > end)
	wm                    int64
	maxFuture, idle       int64 // Config.MaxFuture, Config.IdleTimeout, ms; 0 = off
	now                   int64 // processing time, Unix ms; valid when hasNow
	hasNow                bool
	lastRecord            int64 // processing time of the last record received
	stats                 PartitionStats
	raw                   rawDecoded
	defaultThreshold      float64

	// Keyed state (keyedstate.go): every device with open state has an
	// entry in index and in the wake heap; its state is cached in memory
	// (and on the LRU list) or evicted to store.
	index    map[string]*deviceEntry
	heap     []*deviceEntry // min-heap by (wake, id)
	store    StateStore     // nil: every state stays in memory
	cacheCap int            // most cached states when store is set
	cached   int
	lru      deviceState    // sentinel: lru.next is the most recently used
	free     []*deviceState // recycled states
	// recycled entries
	freeEntries []*deviceEntry
	// Parked entries (keyedstate.go, park): a ring of maxParked slots,
	// len(parkRing) of them in use from parkHead; parkedN entries parked.
	parkRing []parkSlot
	parkHead int
	parkSeq  uint64
	parkedN  int
	buf      []byte // encode/load buffer
}

// NewPartition returns the operator chain of source partition partition.
// devices may be nil (every device unknown). cfg must pass Validate:
// NewPartition panics otherwise, as that is a programming error of the
// caller.
func NewPartition(partition int32, cfg Config, devices DeviceLookup) *Partition {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("operators.NewPartition: invalid config: %v", err))
	}
	p := &Partition{
		partition:        partition,
		devices:          devices,
		dec:              NewDecoder(cfg),
		maxGap:           cfg.MaxGap.Milliseconds(),
		ooo:              cfg.OutOfOrderness.Milliseconds(),
		lateness:         cfg.AllowedLateness.Milliseconds(),
		maxFuture:        cfg.MaxFuture.Milliseconds(),
		idle:             cfg.IdleTimeout.Milliseconds(),
		wm:               math.MinInt64,
		index:            make(map[string]*deviceEntry),
		defaultThreshold: cfg.Threshold,
	}
	p.versioned, _ = devices.(VersionedDeviceLookup)
	p.lru.next, p.lru.prev = &p.lru, &p.lru
	switch cfg.Window.Kind {
	case WindowSession:
		p.session = true
		p.gap = cfg.Window.Gap.Milliseconds()
		p.fireDelta = 1
	case WindowSliding:
		p.size, p.slide = cfg.Window.Size.Milliseconds(), cfg.Window.Slide.Milliseconds()
	default:
		p.size = cfg.Window.Size.Milliseconds()
		p.slide = p.size
	}
	return p
}

// Watermark returns the current watermark in Unix ms: math.MinInt64 before
// the first valid record, math.MaxInt64 after Finish.
func (p *Partition) Watermark() int64 { return p.wm }

// Stats returns the cumulative counters.
func (p *Partition) Stats() PartitionStats { return p.stats }

// lookup returns the data of device id in force at event time t.
func (p *Partition) lookup(id string, t int64) DeviceInfo {
	if p.devices == nil {
		return DeviceInfo{}
	}
	var info DeviceInfo
	if p.versioned != nil {
		info, _ = p.versioned.DeviceAt(id, t)
	} else {
		info, _ = p.devices.Device(id)
	}
	return info
}

// Process runs the record at offset with message value through the chain
// and appends its emissions to out. value is not retained (payloads of dead
// letters and late records are copied).
//
// The device lookup of an on-time reading happens before any state or
// counter changes, so a panic raised by the DeviceLookup leaves the
// partition as if the record had never been processed: the caller may retry
// it (the partition actor does, after a supervised restart).
func (p *Partition) Process(offset int64, value []byte, out *Output) {
	r := &p.raw
	p.lastRecord = p.now
	if err := p.dec.decode(value, r); err != nil {
		p.deadLetter(offset, err.Error(), value, out)
		return
	}
	t := r.eventTime
	if p.maxFuture > 0 && p.hasNow && t-p.now > p.maxFuture {
		p.deadLetter(offset, ReasonFutureEventTime+": "+formatMillis(t)+" is more than "+
			time.Duration(p.maxFuture*int64(time.Millisecond)).String()+" ahead of the processing time "+formatMillis(p.now), value, out)
		return
	}
	if p.wm != math.MinInt64 && t < p.wm-p.lateness {
		p.stats.Received++
		p.stats.Valid++
		p.stats.Late++
		id := string(r.pboxID)
		if e, ok := p.index[id]; ok {
			id = e.id
		}
		out.Late = append(out.Late, LateRecord{
			Partition: p.partition,
			Offset:    offset,
			PboxID:    id,
			EventTime: t,
			Watermark: p.wm,
			Reason:    ReasonLate,
			Payload:   slices.Clone(value),
		})
		return
	}

	// The lookup comes before any state change (see above).
	e, known := p.index[string(r.pboxID)]
	var id string
	if known {
		id = e.id
	} else {
		id = string(r.pboxID) // interned in the new entry: one allocation per device
	}
	info := p.lookup(id, t)
	var d *deviceState
	switch {
	case known && e.parked != 0:
		d = p.unpark(e)
	case known:
		d = p.load(e)
	default:
		d = p.newDevice(id)
	}
	d.dirty = true
	p.stats.Received++
	p.stats.Valid++
	out.Readings = append(out.Readings, Reading{
		Partition: p.partition,
		Offset:    offset,
		PboxID:    id,
		EventTime: t,
		Metric:    r.metric,
		Latitude:  r.lat,
		Longitude: r.lon,
		Company:   info.Company,
		Site:      info.Site,
	})
	if p.session {
		d.addSession(p.gap, t, offset, r.metric, r.lat, r.lon)
	} else {
		d.addAligned(p.size, p.slide, t, offset, r.metric, r.lat, r.lon)
	}
	threshold := p.defaultThreshold
	if info.Threshold != nil {
		threshold = *info.Threshold
	}
	d.addPending(pendingReading{T: t, Offset: offset, Metric: r.metric, Above: r.metric > threshold})

	if w := t - p.ooo; w > p.wm {
		p.wm = w
	}
	p.reschedule(d.e)
	p.fire(out)
}

// deadLetter appends a dead letter of the record at offset.
func (p *Partition) deadLetter(offset int64, reason string, value []byte, out *Output) {
	p.stats.Received++
	p.stats.DeadLetters++
	out.DeadLetters = append(out.DeadLetters, DeadLetter{
		Partition: p.partition,
		Offset:    offset,
		Reason:    reason,
		Payload:   slices.Clone(value),
	})
}

// fire does the work of every device that the watermark has reached.
func (p *Partition) fire(out *Output) {
	nw, np := len(out.Windows), len(out.WorkPeriods)
	for len(p.heap) > 0 && p.heap[0].wake <= p.wm {
		top := p.heap[0]
		p.advance(p.load(top), p.wm, out)
		p.reschedule(top)
	}
	sortEmissions(out, nw, np)
	p.evict()
}

// AdvanceProcessingTime sets the processing time (the wall clock), now in
// Unix ms UTC; the partition actor calls it before every batch, and, with
// Config.IdleTimeout set, on a timer while no records arrive. Processing
// time never goes back: an earlier now is ignored. It is used for
// Config.MaxFuture (a record is checked against the latest processing
// time; before the first call there is no check) and Config.IdleTimeout:
// when the partition has received no record (valid, late or dead letter)
// for IdleTimeout — counted from the first call if it never received one —
// the watermark becomes max(W, now − OutOfOrderness) and what that
// completes is appended to out. Processing time is not part of the
// snapshot: after a restore the idle clock starts again at the first call.
// After Finish it does nothing.
func (p *Partition) AdvanceProcessingTime(now int64, out *Output) {
	if !p.hasNow {
		p.now, p.hasNow, p.lastRecord = now, true, now
	} else if now > p.now {
		p.now = now
	}
	if p.idle <= 0 || p.now-p.lastRecord < p.idle || p.wm == math.MaxInt64 {
		return
	}
	if w := p.now - p.ooo; w > p.wm {
		p.wm = w
		p.fire(out)
	}
}

// Finish applies the final watermark of bounded mode (+∞): it fires every
// window, releases every buffered reading and closes every open work period,
// appending them to out, and drops all keyed state. Afterwards Watermark is
// math.MaxInt64 and every further record is late.
func (p *Partition) Finish(out *Output) {
	p.wm = math.MaxInt64
	nw, np := len(out.Windows), len(out.WorkPeriods)
	// Every device with state is in the heap. Taking them from its end
	// needs no sifting; emissions are sorted below.
	for len(p.heap) > 0 {
		e := p.heap[len(p.heap)-1]
		p.advance(p.load(e), math.MaxInt64, out)
		p.drop(e)
	}
	p.forgetParked()
	sortEmissions(out, nw, np)
}

// advance does the work of d that watermark w completes.
func (p *Partition) advance(d *deviceState, w int64, out *Output) {
	d.dirty = true
	// Windows are sorted by end: those that fire form a prefix, and so do
	// those beyond allowed lateness (all fired by then), which are dropped.
	drop := 0
	for i := range d.Windows {
		win := &d.Windows[i]
		if win.End+p.fireDelta > w {
			break
		}
		if !win.Fired {
			out.Windows = append(out.Windows, win.aggregate(d.e.id, p.lookup(d.e.id, win.Start)))
			p.stats.WindowsFired++
			win.Fired = true
		}
		if win.End+p.fireDelta+p.lateness <= w {
			drop = i + 1
		}
	}
	if drop > 0 {
		d.Windows = dropFront(d.Windows, drop)
	}

	limit := w - p.lateness
	k := 0
	for k < len(d.Pending) && d.Pending[k].T <= limit {
		if run, ended := d.feedRun(d.Pending[k], p.maxGap); ended {
			p.emitRun(&run, d.e.id, out)
		}
		k++
	}
	if k > 0 {
		d.Pending = dropFront(d.Pending, k)
	}
	if d.Run.active() && limit-p.maxGap > d.Run.Last {
		p.emitRun(&d.Run, d.e.id, out)
		d.Run = workRun{}
	}
}

func (p *Partition) emitRun(r *workRun, id string, out *Output) {
	out.WorkPeriods = append(out.WorkPeriods, r.period(id, p.lookup(id, r.Start)))
	p.stats.WorkPeriods++
}

// dropFront removes the first k elements of s in amortised O(k): it shifts
// the rest down (keeping the capacity for reuse) when that costs no more than
// k copies or the rest is short, and reslices otherwise.
func dropFront[T any](s []T, k int) []T {
	if rest := len(s) - k; rest <= k || rest <= 32 {
		copy(s, s[k:])
		return s[:rest]
	}
	return s[k:]
}

// nextWake is the smallest watermark at which d has work to do.
func (p *Partition) nextWake(d *deviceState) int64 {
	w := int64(math.MaxInt64)
	// Windows are sorted by end. The first one has the earliest cleanup;
	// the first unfired one the earliest firing (fired windows are at most
	// those within allowed lateness).
	if len(d.Windows) > 0 && d.Windows[0].Fired {
		w = d.Windows[0].End + p.fireDelta + p.lateness
	}
	for i := range d.Windows {
		if win := &d.Windows[i]; !win.Fired {
			w = min(w, win.End+p.fireDelta)
			break
		}
	}
	if len(d.Pending) > 0 {
		w = min(w, d.Pending[0].T+p.lateness)
	}
	if d.Run.active() {
		// Closed once W − L > Last + MaxGap.
		w = min(w, d.Run.Last+p.maxGap+p.lateness+1)
	}
	return w
}

func compareWindows(a, b WindowAggregate) int {
	return cmp.Or(cmp.Compare(a.End, b.End), cmp.Compare(a.PboxID, b.PboxID), cmp.Compare(a.Start, b.Start))
}

func comparePeriodsEmission(a, b WorkPeriod) int {
	return cmp.Or(cmp.Compare(a.End, b.End), cmp.Compare(a.PboxID, b.PboxID), cmp.Compare(a.Start, b.Start))
}

// sortEmissions orders the windows and work periods appended since nw and
// np by (end, pboxid, start); the sort is stable so that equal keys (work
// periods of equal event times) keep their emission order.
func sortEmissions(out *Output, nw, np int) {
	if ws := out.Windows[nw:]; len(ws) > 1 && !slices.IsSortedFunc(ws, compareWindows) {
		slices.SortStableFunc(ws, compareWindows)
	}
	if ps := out.WorkPeriods[np:]; len(ps) > 1 && !slices.IsSortedFunc(ps, comparePeriodsEmission) {
		slices.SortStableFunc(ps, comparePeriodsEmission)
	}
}

// reschedule recomputes the wake time of e (whose state is loaded) and
// fixes its heap position; a device left without state is dropped.
func (p *Partition) reschedule(e *deviceEntry) {
	e.wake = p.nextWake(e.state)
	switch {
	case e.wake == math.MaxInt64:
		p.drop(e)
	case e.heapIdx < 0:
		e.heapIdx = int32(len(p.heap))
		p.heap = append(p.heap, e)
		p.heapUp(int(e.heapIdx))
	default:
		if !p.heapDown(int(e.heapIdx)) {
			p.heapUp(int(e.heapIdx))
		}
	}
}

// The wake heap: an indexed binary min-heap of devices by wake time.

// heapLess orders by (wake, id): devices due at the same watermark are
// advanced in pboxid order, so their emissions usually need no sorting.
func (p *Partition) heapLess(i, j int) bool {
	a, b := p.heap[i], p.heap[j]
	return a.wake < b.wake || (a.wake == b.wake && a.id < b.id)
}

func (p *Partition) heapSwap(i, j int) {
	h := p.heap
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}

func (p *Partition) heapUp(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !p.heapLess(j, i) {
			break
		}
		p.heapSwap(i, j)
		j = i
	}
}

func (p *Partition) heapDown(i0 int) bool {
	i := i0
	n := len(p.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && p.heapLess(r, l) {
			j = r
		}
		if !p.heapLess(j, i) {
			break
		}
		p.heapSwap(i, j)
		i = j
	}
	return i > i0
}

func (p *Partition) heapRemove(i int) {
	n := len(p.heap) - 1
	e := p.heap[i]
	if i != n {
		p.heapSwap(i, n)
	}
	p.heap[n] = nil
	p.heap = p.heap[:n]
	e.heapIdx = -1
	if i != n {
		if !p.heapDown(i) {
			p.heapUp(i)
		}
	}
}
