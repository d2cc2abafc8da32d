package operators

import (
	"time"
)

// Event times are Unix milliseconds restricted to the years 0001..9999 UTC,
// the range every accepted text layout can express; this also keeps all
// window and gap arithmetic far from int64 overflow.
const (
	minEventTime int64 = -62135596800000 // 0001-01-01T00:00:00Z
	maxEventTime int64 = 253402300799999 // 9999-12-31T23:59:59.999Z
)

func validEventTime(ms int64) bool { return ms >= minEventTime && ms <= maxEventTime }

// parseEpochMillis parses -?[0-9]+ as Unix milliseconds. ok is false for any
// other text and for values outside the event time range.
func parseEpochMillis(b []byte) (int64, bool) {
	i := 0
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		i = 1
	}
	if i == len(b) {
		return 0, false
	}
	var v int64
	for ; i < len(b); i++ {
		c := b[i]
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
		if v > 1e17 { // far outside the event time range; stop before overflow
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, validEventTime(v)
}

// isEpochText reports whether b is -?[0-9]+ (any length).
func isEpochText(b []byte) bool {
	i := 0
	if len(b) > 0 && b[0] == '-' {
		i = 1
	}
	if i == len(b) {
		return false
	}
	for ; i < len(b); i++ {
		if !isDigit(b[i]) {
			return false
		}
	}
	return true
}

func digits(b []byte, n int) (int, bool) {
	v := 0
	for k := 0; k < n; k++ {
		c := b[k]
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of the proleptic Gregorian
// date y-m-d (y >= 1), after Howard Hinnant's days_from_civil.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 0
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseTextTime parses the text layouts of event_time:
//
//	YYYY-MM-DD HH:MM:SS[.f{1,9}]           in loc
//	YYYY-MM-DDTHH:MM:SS[.f{1,9}]           in loc ('t' accepted too)
//	YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}](Z|±HH:MM)   RFC 3339 ('z' accepted too)
//
// The fraction is truncated to milliseconds. Ranges are checked (month 1-12,
// day within the month, hour < 24, minute < 60, second < 60, offset hour <
// 24). Local times in a zone with daylight saving are resolved as time.Date
// does (a skipped time moves forward, a repeated time takes the first).
func parseTextTime(b []byte, loc *time.Location, utc bool) (int64, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	switch b[10] {
	case ' ', 'T', 't':
	default:
		return 0, false
	}
	year, ok1 := digits(b[0:], 4)
	month, ok2 := digits(b[5:], 2)
	day, ok3 := digits(b[8:], 2)
	hour, ok4 := digits(b[11:], 2)
	minute, ok5 := digits(b[14:], 2)
	sec, ok6 := digits(b[17:], 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, false
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	i := 19
	ms := 0
	if i < len(b) && b[i] == '.' {
		i++
		n := 0
		for i < len(b) && isDigit(b[i]) {
			if n < 3 {
				ms = ms*10 + int(b[i]-'0')
			}
			n++
			i++
		}
		if n == 0 || n > 9 {
			return 0, false
		}
		for ; n < 3; n++ {
			ms *= 10
		}
	}
	offsetSec := 0
	local := true
	if i < len(b) {
		switch b[i] {
		case 'Z', 'z':
			i++
		case '+', '-':
			if len(b)-i != 6 || b[i+3] != ':' {
				return 0, false
			}
			oh, okh := digits(b[i+1:], 2)
			om, okm := digits(b[i+4:], 2)
			if !okh || !okm || oh > 23 || om > 59 {
				return 0, false
			}
			offsetSec = oh*3600 + om*60
			if b[i] == '-' {
				offsetSec = -offsetSec
			}
			i += 6
		default:
			return 0, false
		}
		if i != len(b) {
			return 0, false
		}
		local = false
	}
	var t int64
	if local && !utc {
		t = time.Date(year, time.Month(month), day, hour, minute, sec, 0, loc).Unix()*1000 + int64(ms)
	} else {
		secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - int64(offsetSec)
		t = secs*1000 + int64(ms)
	}
	return t, validEventTime(t)
}
