package operators

import (
	"slices"
	"sort"
)

// pendingReading is an on-time reading waiting in a device's buffer until no
// future on-time record can sort before it; then it is released to the
// work-period run detector in (T, Offset) order.
type pendingReading struct {
	T, Offset int64
	Metric    float64
	Above     bool // Metric > the device's threshold when the reading arrived
}

// workRun is the open work period of a device; the zero value is none.
type workRun struct {
	Start, Last int64   // event times of the first and the last reading, Unix ms
	Samples     int64   // readings in the run; 0 when there is no open run
	Sum, Comp   float64 // Neumaier-compensated sum of metrics
	Max         float64
}

// active reports whether w is an open run (it has a reading).
func (w *workRun) active() bool { return w.Samples > 0 }

// addPending inserts r into d's buffer, kept sorted by (T, Offset).
func (d *deviceState) addPending(r pendingReading) {
	ps := d.Pending
	after := func(k int) bool { return ps[k].T > r.T || (ps[k].T == r.T && ps[k].Offset > r.Offset) }
	if len(ps) == 0 || !after(len(ps)-1) { // in order: the common case
		d.Pending = append(ps, r)
		return
	}
	d.Pending = slices.Insert(ps, sort.Search(len(ps), after), r)
}

// feedRun runs one released reading through the run detector of d. It
// returns true and the finished run when the reading ends the open run.
func (d *deviceState) feedRun(r pendingReading, maxGap int64) (workRun, bool) {
	var done workRun
	ended := false
	if !r.Above {
		if d.Run.active() {
			done, ended = d.Run, true
			d.Run = workRun{}
		}
		return done, ended
	}
	if d.Run.active() && r.T-d.Run.Last > maxGap {
		done, ended = d.Run, true
		d.Run = workRun{}
	}
	if !d.Run.active() {
		d.Run = workRun{Start: r.T, Last: r.T, Samples: 1, Sum: r.Metric, Max: r.Metric}
		return done, ended
	}
	d.Run.Last = r.T
	d.Run.Samples++
	d.Run.Sum, d.Run.Comp = neumaierAdd(d.Run.Sum, d.Run.Comp, r.Metric)
	d.Run.Max = max(d.Run.Max, r.Metric)
	return done, ended
}

func (w *workRun) period(id string, info DeviceInfo) WorkPeriod {
	return WorkPeriod{
		PboxID:    id,
		Start:     w.Start,
		End:       w.Last,
		Samples:   w.Samples,
		AvgMetric: (w.Sum + w.Comp) / float64(w.Samples),
		MaxMetric: w.Max,
		Company:   info.Company,
		Site:      info.Site,
	}
}
