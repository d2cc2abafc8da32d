package operators

import (
	"math"
	"slices"
	"sort"
)

// windowState is the open state of one window of one device. Fields are
// exported (on an unexported type) so that snapshots can serialise it.
type windowState struct {
	Start, End int64 // [Start, End), Unix ms
	Count      int64
	Sum, Comp  float64 // Neumaier-compensated sum: value = Sum + Comp
	Min, Max   float64
	// Latest reading by (event time, source offset) and its position.
	LatestT, LatestOffset int64
	Lat, Lon              float64
	// Fired: emitted and unchanged since. A fired window is kept only while
	// allowed lateness can still change it.
	Fired bool
}

func newWindow(start, end int64) windowState {
	return windowState{Start: start, End: end, LatestT: math.MinInt64, LatestOffset: math.MinInt64}
}

// neumaierAdd adds x to the compensated sum (sum, comp).
func neumaierAdd(sum, comp, x float64) (float64, float64) {
	t := sum + x
	if math.Abs(sum) >= math.Abs(x) {
		comp += (sum - t) + x
	} else {
		comp += (x - t) + sum
	}
	return t, comp
}

func (w *windowState) add(t, offset int64, metric, lat, lon float64) {
	if w.Count == 0 {
		w.Min, w.Max = metric, metric
	} else {
		w.Min = math.Min(w.Min, metric)
		w.Max = math.Max(w.Max, metric)
	}
	w.Count++
	w.Sum, w.Comp = neumaierAdd(w.Sum, w.Comp, metric)
	if t > w.LatestT || (t == w.LatestT && offset > w.LatestOffset) {
		w.LatestT, w.LatestOffset, w.Lat, w.Lon = t, offset, lat, lon
	}
	w.Fired = false
}

// merge folds o into w (session merging).
func (w *windowState) merge(o *windowState) {
	if o.Count == 0 {
		return
	}
	if w.Count == 0 {
		w.Min, w.Max = o.Min, o.Max
	} else {
		w.Min = math.Min(w.Min, o.Min)
		w.Max = math.Max(w.Max, o.Max)
	}
	w.Count += o.Count
	w.Sum, w.Comp = neumaierAdd(w.Sum, w.Comp, o.Sum)
	w.Comp += o.Comp
	if o.LatestT > w.LatestT || (o.LatestT == w.LatestT && o.LatestOffset > w.LatestOffset) {
		w.LatestT, w.LatestOffset, w.Lat, w.Lon = o.LatestT, o.LatestOffset, o.Lat, o.Lon
	}
	w.Start = min(w.Start, o.Start)
	w.End = max(w.End, o.End)
	w.Fired = false
}

func (w *windowState) aggregate(id string, info DeviceInfo) WindowAggregate {
	sum := w.Sum + w.Comp
	return WindowAggregate{
		PboxID:    id,
		Start:     w.Start,
		End:       w.End,
		Count:     w.Count,
		Sum:       sum,
		Min:       w.Min,
		Max:       w.Max,
		Avg:       sum / float64(w.Count),
		Latitude:  w.Lat,
		Longitude: w.Lon,
		Company:   info.Company,
		Site:      info.Site,
	}
}

// floorDiv is a / b rounded towards −∞ (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// windowAt returns the window of d starting at start, creating it (sorted by
// start) when missing. The pointer is valid until the next insertion.
func (d *deviceState) windowAt(start, end int64) *windowState {
	ws := d.Windows
	// Fast path: in-order input touches the newest windows.
	i := len(ws) - 1
	for n := 0; i >= 0 && ws[i].Start > start; n++ {
		if n == 4 { // far out of order: binary search
			i = sort.Search(len(ws), func(k int) bool { return ws[k].Start > start }) - 1
			break
		}
		i--
	}
	if i >= 0 && ws[i].Start == start {
		return &ws[i]
	}
	d.Windows = slices.Insert(ws, i+1, newWindow(start, end))
	return &d.Windows[i+1]
}

// addAligned adds a reading to every tumbling/sliding window containing t:
// windows [k·slide, k·slide+size) with k·slide <= t < k·slide+size.
func (d *deviceState) addAligned(size, slide, t, offset int64, metric, lat, lon float64) {
	for k := floorDiv(t-size, slide) + 1; k*slide <= t; k++ {
		start := k * slide
		d.windowAt(start, start+size).add(t, offset, metric, lat, lon)
	}
}

// addSession adds a reading to the sessions of d: the reading's window
// [t, t+gap) merges with every session it overlaps or touches. Sessions stay
// sorted by start, pairwise disjoint and not touching, so the sessions to
// merge are a contiguous run and the result does not depend on arrival order.
func (d *deviceState) addSession(gap, t, offset int64, metric, lat, lon float64) {
	ns := newWindow(t, t+gap)
	ns.add(t, offset, metric, lat, lon)
	ws := d.Windows
	// Sessions ending before t cannot touch; ends ascend with starts.
	i := sort.Search(len(ws), func(k int) bool { return ws[k].End >= t })
	j := i
	for j < len(ws) && ws[j].Start <= ns.End {
		ns.merge(&ws[j])
		j++
	}
	d.Windows = slices.Replace(ws, i, j, ns)
}
