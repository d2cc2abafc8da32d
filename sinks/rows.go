package sinks

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

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
// (the payloads themselves may be cut to Config.MaxPayloadBytes).
type pending struct {
	operators.Output
	lateBytes []int64
	deadBytes []int64
}

func (p *pending) reset() {
	p.Output.Reset()
	p.lateBytes = p.lateBytes[:0]
	p.deadBytes = p.deadBytes[:0]
}

// checkBatch reports the first row of b that no store can hold, as an error
// wrapping ErrInvalidRow.
func checkBatch(b *Batch) error {
	for i := range b.Readings {
		r := &b.Readings[i]
		if err := checkTime("readings", "event_time", r.EventTime); err != nil {
			return fmt.Errorf("%w (partition %d offset %d)", err, r.Partition, r.Offset)
		}
		if !finite(r.Metric) {
			return fmt.Errorf("%w: readings.metric is %v (partition %d offset %d)", ErrInvalidRow, r.Metric, r.Partition, r.Offset)
		}
	}
	for i := range b.Windows {
		w := &b.Windows[i]
		for _, t := range [...]struct {
			col string
			ms  int64
		}{{"window_start", w.Start}, {"window_end", w.End}} {
			if err := checkTime("window_aggregates", t.col, t.ms); err != nil {
				return fmt.Errorf("%w (pboxid %q)", err, w.PboxID)
			}
		}
		if !finite(w.Sum) || !finite(w.Min) || !finite(w.Max) || !finite(w.Avg) {
			return fmt.Errorf("%w: window_aggregates of pboxid %q at %d has a non-finite sum/min/max/avg", ErrInvalidRow, w.PboxID, w.Start)
		}
	}
	for i := range b.WorkPeriods {
		p := &b.WorkPeriods[i]
		for _, t := range [...]struct {
			col string
			ms  int64
		}{{"period_start", p.Start}, {"period_end", p.End}} {
			if err := checkTime("work_periods", t.col, t.ms); err != nil {
				return fmt.Errorf("%w (pboxid %q)", err, p.PboxID)
			}
		}
		if !finite(p.AvgMetric) || !finite(p.MaxMetric) {
			return fmt.Errorf("%w: work_periods of pboxid %q at %d has a non-finite avg_metric/max_metric", ErrInvalidRow, p.PboxID, p.Start)
		}
	}
	for i := range b.Late {
		l := &b.Late[i]
		for _, t := range [...]struct {
			col string
			ms  int64
		}{{"event_time", l.EventTime}, {"watermark", l.Watermark}} {
			if err := checkTime("late_records", t.col, t.ms); err != nil {
				return fmt.Errorf("%w (partition %d offset %d)", err, l.Partition, l.Offset)
			}
		}
	}
	return nil
}

func checkTime(table, col string, ms int64) error {
	if ms < minTimeMs || ms >= endTimeMs {
		return fmt.Errorf("%w: %s.%s is %d ms, outside years 1000-9999", ErrInvalidRow, table, col, ms)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// add appends cleaned copies of the rows of b (checked by checkBatch) to p:
// strings made valid UTF-8 and cut to their column's length, non-finite
// coordinates made NaN (NULL), payloads copied and cut to maxPayload bytes.
func (p *pending) add(b *Batch, maxPayload int) {
	for _, r := range b.Readings {
		r.PboxID = cleanString(r.PboxID, maxPboxIDChars)
		r.Company = cleanString(r.Company, maxNameChars)
		r.Site = cleanString(r.Site, maxNameChars)
		r.Latitude, r.Longitude = cleanCoord(r.Latitude), cleanCoord(r.Longitude)
		p.Readings = append(p.Readings, r)
	}
	for _, w := range b.Windows {
		w.PboxID = cleanString(w.PboxID, maxPboxIDChars)
		w.Company = cleanString(w.Company, maxNameChars)
		w.Site = cleanString(w.Site, maxNameChars)
		w.Latitude, w.Longitude = cleanCoord(w.Latitude), cleanCoord(w.Longitude)
		p.Windows = append(p.Windows, w)
	}
	for _, w := range b.WorkPeriods {
		w.PboxID = cleanString(w.PboxID, maxPboxIDChars)
		w.Company = cleanString(w.Company, maxNameChars)
		w.Site = cleanString(w.Site, maxNameChars)
		p.WorkPeriods = append(p.WorkPeriods, w)
	}
	for _, l := range b.Late {
		l.PboxID = cleanString(l.PboxID, maxPboxIDChars)
		l.Reason = cleanString(l.Reason, maxReasonChars)
		p.lateBytes = append(p.lateBytes, int64(len(l.Payload)))
		l.Payload = clipBytes(l.Payload, maxPayload)
		p.Late = append(p.Late, l)
	}
	for _, d := range b.DeadLetters {
		d.Reason = cleanString(d.Reason, maxReasonChars)
		p.deadBytes = append(p.deadBytes, int64(len(d.Payload)))
		d.Payload = clipBytes(d.Payload, maxPayload)
		p.DeadLetters = append(p.DeadLetters, d)
	}
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
