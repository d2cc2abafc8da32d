package sinks

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/eddy-iot/eddy/operators"
)

// Column limits, in characters (Unicode code points), shared by all SQL
// dialects so that every store holds the same values.
const (
	maxPboxIDChars = 64  // pboxid VARCHAR(64)
	maxNameChars   = 255 // company, site VARCHAR(255)
	maxReasonChars = 255 // reason VARCHAR(255)
)

const msPerDay = 86_400_000

// Range of storable times (MySQL DATETIME): [1000-01-01, 10000-01-01) UTC,
// in Unix ms.
var (
	minTimeMs = daysFromCivil(1000, 1, 1) * msPerDay
	endTimeMs = daysFromCivil(10000, 1, 1) * msPerDay
)

// pending holds cleaned copies of the rows handed to Write and not yet
// committed. lateBytes and deadBytes hold the original payload lengths
// (the payloads themselves may be cut to Config.MaxPayloadBytes). Rejected
// holds the rejections of windows and work periods (table rejected_rows).
type pending struct {
	operators.Output
	Rejected  []rejectedRow
	lateBytes []int64
	deadBytes []int64
}

// rejectedRow is a window aggregate or work period that the store cannot
// hold, as stored in the table rejected_rows: keyed by its source table,
// pboxid and start (Unix ms, which may lie outside the storable times), with
// the reason and the row as JSON.
type rejectedRow struct {
	Table   string
	PboxID  string
	StartMs int64
	Reason  string
	Payload []byte // the row as JSON (appendWindowJSON, appendWorkPeriodJSON)
}

// ReasonSinkRejected starts the reason of a row the store refused (or that
// no SQL store can hold: a time outside years 1000–9999, a non-finite
// number), followed by ": " and the store's error. A rejected reading or
// late record becomes a dead letter with the source record's (partition,
// offset); a rejected dead letter is stored again without its payload; a
// rejected window aggregate or work period goes to the table rejected_rows.
const ReasonSinkRejected = "sink_rejected"

// numTables is the number of tables the SQL sinks write: the five output
// tables and rejected_rows.
const numTables = 6

// Indexes of the tables in tableDefs and of the slices of pending.
const (
	tReadings = iota
	tWindows
	tWorkPeriods
	tLate
	tDeadLetters
	tRejected
)

// len returns the rows of table t in p.
func (p *pending) len(t int) int {
	switch t {
	case tReadings:
		return len(p.Readings)
	case tWindows:
		return len(p.Windows)
	case tWorkPeriods:
		return len(p.WorkPeriods)
	case tLate:
		return len(p.Late)
	case tDeadLetters:
		return len(p.DeadLetters)
	}
	return len(p.Rejected)
}

// rows returns the rows of every table in p.
func (p *pending) rows() int { return p.Output.Len() + len(p.Rejected) }

// removeFront removes the first k[t] rows of each table t of p, keeping
// the rest in order, and returns the bytes (rowBytes) they held.
func (p *pending) removeFront(k *[numTables]int) int64 {
	var freed int64
	for t := range numTables {
		for i := 0; i < k[t]; i++ {
			freed += p.rowBytes(t, i)
		}
	}
	p.Readings = dropFront(p.Readings, k[tReadings])
	p.Windows = dropFront(p.Windows, k[tWindows])
	p.WorkPeriods = dropFront(p.WorkPeriods, k[tWorkPeriods])
	p.Late = dropFront(p.Late, k[tLate])
	p.lateBytes = dropFront(p.lateBytes, k[tLate])
	p.DeadLetters = dropFront(p.DeadLetters, k[tDeadLetters])
	p.deadBytes = dropFront(p.deadBytes, k[tDeadLetters])
	p.Rejected = dropFront(p.Rejected, k[tRejected])
	return freed
}

// dropFront removes the first k elements of s in place, clearing the freed
// tail so that it holds no references.
func dropFront[T any](s []T, k int) []T {
	if k == 0 {
		return s
	}
	n := copy(s, s[k:])
	clear(s[n:])
	return s[:n]
}

// Sizes of the row structs, for the buffer's byte accounting.
var (
	sizeReading  = int64(unsafe.Sizeof(operators.Reading{}))
	sizeWindow   = int64(unsafe.Sizeof(operators.WindowAggregate{}))
	sizePeriod   = int64(unsafe.Sizeof(operators.WorkPeriod{}))
	sizeLate     = int64(unsafe.Sizeof(operators.LateRecord{})) + 8
	sizeDead     = int64(unsafe.Sizeof(operators.DeadLetter{})) + 8
	sizeRejected = int64(unsafe.Sizeof(rejectedRow{}))
)

// rowBytes is the memory row i of table t holds in p (its struct and the
// bytes of its strings and payload): the unit of Config.MaxBufferBytes.
func (p *pending) rowBytes(t, i int) int64 {
	switch t {
	case tReadings:
		r := &p.Readings[i]
		return sizeReading + int64(len(r.PboxID)+len(r.Company)+len(r.Site))
	case tWindows:
		w := &p.Windows[i]
		return sizeWindow + int64(len(w.PboxID)+len(w.Company)+len(w.Site))
	case tWorkPeriods:
		w := &p.WorkPeriods[i]
		return sizePeriod + int64(len(w.PboxID)+len(w.Company)+len(w.Site))
	case tLate:
		l := &p.Late[i]
		return sizeLate + int64(len(l.PboxID)+len(l.Reason)+len(l.Payload))
	case tDeadLetters:
		d := &p.DeadLetters[i]
		return sizeDead + int64(len(d.Reason)+len(d.Payload))
	}
	r := &p.Rejected[i]
	return sizeRejected + int64(len(r.Table)+len(r.PboxID)+len(r.Reason)+len(r.Payload))
}

// batchBytes estimates the bytes the rows of b will hold once buffered
// (payloads cut to maxPayload): what a Write waits for under
// Config.MaxBufferBytes.
func batchBytes(b *Batch, maxPayload int) int64 {
	n := int64(len(b.Readings))*sizeReading + int64(len(b.Windows))*sizeWindow +
		int64(len(b.WorkPeriods))*sizePeriod + int64(len(b.Late))*sizeLate + int64(len(b.DeadLetters))*sizeDead
	for i := range b.Readings {
		r := &b.Readings[i]
		n += int64(len(r.PboxID) + len(r.Company) + len(r.Site))
	}
	for i := range b.Windows {
		w := &b.Windows[i]
		n += int64(len(w.PboxID) + len(w.Company) + len(w.Site))
	}
	for i := range b.WorkPeriods {
		w := &b.WorkPeriods[i]
		n += int64(len(w.PboxID) + len(w.Company) + len(w.Site))
	}
	for i := range b.Late {
		l := &b.Late[i]
		n += int64(len(l.PboxID) + len(l.Reason) + min(len(l.Payload), maxPayload))
	}
	for i := range b.DeadLetters {
		d := &b.DeadLetters[i]
		n += int64(len(d.Reason) + min(len(d.Payload), maxPayload))
	}
	return n
}

// checkReading, checkWindow, checkWorkPeriod and checkLate report why no
// SQL store can hold a row (a time outside years 1000–9999, a non-finite
// number), or "".
func checkReading(r *operators.Reading) string {
	if why := checkTime("readings", "event_time", r.EventTime); why != "" {
		return why
	}
	if !finite(r.Metric) {
		return fmt.Sprintf("readings.metric is %v", r.Metric)
	}
	return ""
}

func checkWindow(w *operators.WindowAggregate) string {
	if why := checkTime("window_aggregates", "window_start", w.Start); why != "" {
		return why
	}
	if why := checkTime("window_aggregates", "window_end", w.End); why != "" {
		return why
	}
	for _, f := range [...]struct {
		col string
		v   float64
	}{{"sum", w.Sum}, {"min", w.Min}, {"max", w.Max}, {"avg", w.Avg}} {
		if !finite(f.v) {
			return fmt.Sprintf("window_aggregates.%s is %v", f.col, f.v)
		}
	}
	return ""
}

func checkWorkPeriod(p *operators.WorkPeriod) string {
	if why := checkTime("work_periods", "period_start", p.Start); why != "" {
		return why
	}
	if why := checkTime("work_periods", "period_end", p.End); why != "" {
		return why
	}
	if !finite(p.AvgMetric) {
		return fmt.Sprintf("work_periods.avg_metric is %v", p.AvgMetric)
	}
	if !finite(p.MaxMetric) {
		return fmt.Sprintf("work_periods.max_metric is %v", p.MaxMetric)
	}
	return ""
}

func checkLate(l *operators.LateRecord) string {
	if why := checkTime("late_records", "event_time", l.EventTime); why != "" {
		return why
	}
	return checkTime("late_records", "watermark", l.Watermark)
}

func checkTime(table, col string, ms int64) string {
	if ms < minTimeMs || ms >= endTimeMs {
		return fmt.Sprintf("%s.%s is %d ms, outside years 1000-9999", table, col, ms)
	}
	return ""
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// rejectedReason is the reason of a row rejected because of why.
func rejectedReason(why string) string {
	return cleanString(ReasonSinkRejected+": "+why, maxReasonChars)
}

// add appends cleaned copies of the rows of b to p: strings made valid
// UTF-8 and cut to their column's length, non-finite coordinates made NaN
// (NULL), payloads copied and cut to maxPayload bytes. A row no store can
// hold (checkReading etc.) is appended as its rejection instead (see
// ReasonSinkRejected). It returns the number of rows rejected by table.
func (p *pending) add(b *Batch, maxPayload int) (rejected [numTables]int) {
	for _, r := range b.Readings {
		r.PboxID = cleanString(r.PboxID, maxPboxIDChars)
		r.Company = cleanString(r.Company, maxNameChars)
		r.Site = cleanString(r.Site, maxNameChars)
		r.Latitude, r.Longitude = cleanCoord(r.Latitude), cleanCoord(r.Longitude)
		if why := checkReading(&r); why != "" {
			p.rejectReading(&r, why, maxPayload)
			rejected[tReadings]++
			continue
		}
		p.Readings = append(p.Readings, r)
	}
	for _, w := range b.Windows {
		w.PboxID = cleanString(w.PboxID, maxPboxIDChars)
		w.Company = cleanString(w.Company, maxNameChars)
		w.Site = cleanString(w.Site, maxNameChars)
		w.Latitude, w.Longitude = cleanCoord(w.Latitude), cleanCoord(w.Longitude)
		if why := checkWindow(&w); why != "" {
			p.rejectWindow(&w, why, maxPayload)
			rejected[tWindows]++
			continue
		}
		p.Windows = append(p.Windows, w)
	}
	for _, w := range b.WorkPeriods {
		w.PboxID = cleanString(w.PboxID, maxPboxIDChars)
		w.Company = cleanString(w.Company, maxNameChars)
		w.Site = cleanString(w.Site, maxNameChars)
		if why := checkWorkPeriod(&w); why != "" {
			p.rejectWorkPeriod(&w, why, maxPayload)
			rejected[tWorkPeriods]++
			continue
		}
		p.WorkPeriods = append(p.WorkPeriods, w)
	}
	for _, l := range b.Late {
		l.PboxID = cleanString(l.PboxID, maxPboxIDChars)
		l.Reason = cleanString(l.Reason, maxReasonChars)
		n := int64(len(l.Payload))
		l.Payload = clipBytes(l.Payload, maxPayload)
		if why := checkLate(&l); why != "" {
			p.rejectLate(&l, n, why)
			rejected[tLate]++
			continue
		}
		p.lateBytes = append(p.lateBytes, n)
		p.Late = append(p.Late, l)
	}
	for _, d := range b.DeadLetters {
		d.Reason = cleanString(d.Reason, maxReasonChars)
		p.deadBytes = append(p.deadBytes, int64(len(d.Payload)))
		d.Payload = clipBytes(d.Payload, maxPayload)
		p.DeadLetters = append(p.DeadLetters, d)
	}
	return rejected
}

// rejectReading appends the dead letter of a rejected reading: the source
// record's key, the reading as JSON as payload.
func (p *pending) rejectReading(r *operators.Reading, why string, maxPayload int) {
	js := appendReadingJSON(nil, r)
	p.deadLetter(operators.DeadLetter{Partition: r.Partition, Offset: r.Offset, Reason: rejectedReason(why),
		Payload: js[:len(js)-1]}, maxPayload)
}

// rejectLate appends the dead letter of a rejected late record: the source
// record's key and payload (n is its original length).
func (p *pending) rejectLate(l *operators.LateRecord, n int64, why string) {
	p.DeadLetters = append(p.DeadLetters, operators.DeadLetter{Partition: l.Partition, Offset: l.Offset,
		Reason: rejectedReason(why), Payload: l.Payload})
	p.deadBytes = append(p.deadBytes, n)
}

// rejectDeadLetter appends a rejected dead letter again, under its key,
// with the rejection as reason and without its payload (n is the original
// payload length).
func (p *pending) rejectDeadLetter(d *operators.DeadLetter, n int64, why string) {
	p.DeadLetters = append(p.DeadLetters, operators.DeadLetter{Partition: d.Partition, Offset: d.Offset,
		Reason: rejectedReason(why), Payload: []byte{}})
	p.deadBytes = append(p.deadBytes, n)
}

func (p *pending) rejectWindow(w *operators.WindowAggregate, why string, maxPayload int) {
	js := appendWindowJSON(nil, w)
	p.Rejected = append(p.Rejected, rejectedRow{Table: TableWindows, PboxID: w.PboxID, StartMs: w.Start,
		Reason: rejectedReason(why), Payload: clipBytes(js[:len(js)-1], maxPayload)})
}

func (p *pending) rejectWorkPeriod(w *operators.WorkPeriod, why string, maxPayload int) {
	js := appendWorkPeriodJSON(nil, w)
	p.Rejected = append(p.Rejected, rejectedRow{Table: TableWorkPeriods, PboxID: w.PboxID, StartMs: w.Start,
		Reason: rejectedReason(why), Payload: clipBytes(js[:len(js)-1], maxPayload)})
}

func (p *pending) deadLetter(d operators.DeadLetter, maxPayload int) {
	p.deadBytes = append(p.deadBytes, int64(len(d.Payload)))
	d.Payload = clipBytes(d.Payload, maxPayload)
	p.DeadLetters = append(p.DeadLetters, d)
}

// cleanString returns s with invalid UTF-8 replaced by U+FFFD and cut to at
// most n code points.
func cleanString(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

func cleanCoord(f float64) float64 {
	if !finite(f) {
		return math.NaN()
	}
	return f
}

// clipBytes returns a copy of at most the first n bytes of b; nil for nil.
func clipBytes(b []byte, n int) []byte {
	if b == nil {
		return nil
	}
	if len(b) > n {
		b = b[:n]
	}
	return append(make([]byte, 0, len(b)), b...)
}

// daysFromCivil is the number of days from 1970-01-01 to the proleptic
// Gregorian date y-m-d (Howard Hinnant's days_from_civil).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil (Hinnant's civil_from_days).
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// floorDiv is a / b rounded towards minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// appendTime appends the UTC time ms (Unix ms, year 0–9999) as
// "YYYY-MM-DD HH:MM:SS.sss" (sep ' ') or "YYYY-MM-DDTHH:MM:SS.sss" (sep
// 'T'): always three fraction digits, so the text sorts like the time.
func appendTime(b []byte, ms int64, sep byte) []byte {
	days := floorDiv(ms, msPerDay)
	rem := ms - days*msPerDay
	y, mo, d := civilFromDays(days)
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, mo)
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, sep)
	b = append2(b, rem/3_600_000)
	b = append(b, ':')
	b = append2(b, rem/60_000%60)
	b = append(b, ':')
	b = append2(b, rem/1000%60)
	b = append(b, '.')
	f := rem % 1000
	return append(b, byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

func append2(b []byte, v int64) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func append4(b []byte, v int64) []byte {
	return append(b, byte('0'+v/1000%10), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}

// sqlTime formats ms as the SQL text "YYYY-MM-DD HH:MM:SS.sss" (UTC).
func sqlTime(ms int64) string {
	var buf [23]byte
	return string(appendTime(buf[:0], ms, ' '))
}

// dayString formats a day number (days since 1970-01-01) as "YYYY-MM-DD".
func dayString(day int64) string {
	y, m, d := civilFromDays(day)
	var buf [10]byte
	b := append4(buf[:0], y)
	b = append(b, '-')
	b = append2(b, m)
	b = append(b, '-')
	b = append2(b, d)
	return string(b)
}
