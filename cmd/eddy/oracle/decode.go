package oracle

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// rawRecord is one sent record before validation: the value of every mapped
// field, as the input held it. CSV values are strings; NDJSON values are what
// encoding/json gives with UseNumber (string, json.Number, bool, nil, map,
// slice). A nil entry means absent or null.
type rawRecord struct {
	pboxid, eventTime, metric, latitude, longitude any
	// size is the length in bytes of the message value the replayer sends
	// for the record (see sentSize).
	size int
}

// decoded is a valid record.
type decoded struct {
	pboxid    string
	eventTime int64 // Unix ms UTC
	metric    float64
	lat, lon  float64 // NaN when absent
}

// Dead-letter reasons, as "reason" or "reason: detail". The reason names
// are the job's public metric labels (README, "What the job computes"); the
// oracle spells them itself.
const (
	reasonOversized        = "oversized"
	reasonMissingPboxID    = "missing_pboxid"
	reasonInvalidPboxID    = "invalid_pboxid"
	reasonPboxIDTooLong    = "pboxid_too_long"
	reasonMissingEventTime = "missing_event_time"
	reasonInvalidEventTime = "invalid_event_time"
	reasonEventTimeRange   = "event_time_out_of_range"
	reasonFutureEventTime  = "future_event_time"
	reasonMissingMetric    = "missing_metric"
	reasonInvalidMetric    = "invalid_metric"
	reasonMetricRange      = "metric_out_of_range"
	reasonInvalidLatitude  = "invalid_latitude"
	reasonInvalidLongitude = "invalid_longitude"
)

// ReasonLabel returns the reason name of a DeadLetter.Reason: the text before
// the first ':'.
func ReasonLabel(reason string) string {
	label, _, _ := strings.Cut(reason, ":")
	return label
}

// Limits of the validation contract (README, "What the job computes"), from
// the sinks' column types: SQL DATETIME holds 1000-01-01 .. 9999-12-31
// 23:59:59.999, key columns are VARCHAR(64), numbers are DOUBLE.
var (
	sinkTimeMin = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	sinkTimeMax = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC).UnixMilli()
	// Years 0001..9999: what an event time may name at all.
	parseTimeMin = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	parseTimeMax = sinkTimeMax
)

const (
	maxPboxIDBytes = 64
	maxAbsMetric   = 1e290
)

var (
	// Date-time text: a strict shape check before time.Parse, which alone
	// would accept one-digit hours.
	localTimeRe  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?$`)
	offsetTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$`)
	epochMsRe    = regexp.MustCompile(`^-?\d{1,18}$`)
	integerRe    = regexp.MustCompile(`^-?\d+$`)
	// A decimal number as Java's BigDecimal(String) reads it.
	decimalRe = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$`)
	// RFC 8259 number syntax.
	jsonNumberRe = regexp.MustCompile(`^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$`)
)

// keyOf returns the Kafka key the replayer sends for a record: the pboxid
// text when there is one.
func keyOf(r *rawRecord) string {
	switch v := r.pboxid.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// validator applies the validation contract of the job configured by Options.
type validator struct {
	maxBytes int
	lo, hi   int64 // accepted event times
}

func newValidator(o *Options) validator {
	ext := o.Window.Size.Milliseconds()
	if o.Window.Kind == WindowSession {
		ext = o.Window.Gap.Milliseconds()
	}
	v := validator{maxBytes: o.MaxMessageBytes, lo: sinkTimeMin + ext, hi: sinkTimeMax - ext}
	if v.maxBytes == 0 {
		v.maxBytes = DefaultMaxMessageBytes
	}
	return v
}

// decode validates r. It returns the decoded record, or "" and a dead-letter
// reason. The checks run in this order, the first failing one giving the
// reason: message size, pboxid, event_time, metric, latitude, longitude.
func (val *validator) decode(r *rawRecord) (decoded, string) {
	var d decoded
	if r.size > val.maxBytes {
		return d, fmt.Sprintf("%s: %d bytes > %d", reasonOversized, r.size, val.maxBytes)
	}
	switch v := r.pboxid.(type) {
	case string:
		if reason := checkPboxID(v); reason != "" {
			return d, reason
		}
		d.pboxid = v
	case json.Number:
		if !integerRe.MatchString(v.String()) {
			return d, fmt.Sprintf("%s: %s is not an integer", reasonInvalidPboxID, v)
		}
		if len(v.String()) > maxPboxIDBytes {
			return d, fmt.Sprintf("%s: %d digits", reasonPboxIDTooLong, len(v.String()))
		}
		d.pboxid = v.String()
	case nil:
		return d, reasonMissingPboxID
	default:
		return d, fmt.Sprintf("%s: %T", reasonInvalidPboxID, v)
	}

	t, reason := decodeEventTime(r.eventTime)
	if reason != "" {
		return d, reason
	}
	if t < val.lo || t > val.hi {
		return d, fmt.Sprintf("%s: %s outside [%s, %s]", reasonEventTimeRange, FormatTime(t), FormatTime(val.lo), FormatTime(val.hi))
	}
	d.eventTime = t

	if s, ok := r.metric.(string); ok && strings.TrimSpace(s) == "" {
		return d, fmt.Sprintf("%s: empty", reasonInvalidMetric)
	}
	m, present, reason := decodeNumber(reasonInvalidMetric, r.metric)
	if reason != "" {
		return d, reason
	}
	if !present {
		return d, reasonMissingMetric
	}
	if math.Abs(m) > maxAbsMetric {
		return d, fmt.Sprintf("%s: %v", reasonMetricRange, m)
	}
	d.metric = m

	d.lat, d.lon = math.NaN(), math.NaN()
	for _, c := range []struct {
		reason string
		raw    any
		limit  float64
		dst    *float64
	}{{reasonInvalidLatitude, r.latitude, 90, &d.lat}, {reasonInvalidLongitude, r.longitude, 180, &d.lon}} {
		v, present, reason := decodeNumber(c.reason, c.raw)
		if reason != "" {
			return d, reason
		}
		if !present {
			continue
		}
		if v < -c.limit || v > c.limit {
			return d, fmt.Sprintf("%s: %v out of [-%v, %v]", c.reason, v, c.limit, c.limit)
		}
		*c.dst = v
	}
	return d, ""
}

// checkPboxID returns the dead-letter reason of a device id string, or "".
// An id must be 1..64 bytes of UTF-8 without control characters, without
// U+FFFD (what invalid UTF-8 becomes on the way) and without white space at
// either end.
func checkPboxID(id string) string {
	switch {
	case id == "":
		return reasonInvalidPboxID + ": empty"
	case len(id) > maxPboxIDBytes:
		return fmt.Sprintf("%s: %d bytes", reasonPboxIDTooLong, len(id))
	case !utf8.ValidString(id):
		return reasonInvalidPboxID + ": invalid UTF-8"
	case strings.ContainsRune(id, utf8.RuneError):
		return reasonInvalidPboxID + ": U+FFFD"
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return fmt.Sprintf("%s: control character in %q", reasonInvalidPboxID, id)
	case strings.TrimFunc(id, unicode.IsSpace) != id:
		return fmt.Sprintf("%s: white space around %q", reasonInvalidPboxID, id)
	}
	return ""
}

// decodeEventTime accepts "YYYY-MM-DD HH:MM:SS[.fff]" or the same with "T"
// (UTC), RFC 3339 with an offset, and integer epoch milliseconds (a JSON
// integer or a string of digits), within the years 0001..9999.
func decodeEventTime(raw any) (int64, string) {
	ms, reason := parseEventTime(raw)
	if reason == "" && (ms < parseTimeMin || ms > parseTimeMax) {
		return 0, fmt.Sprintf("%s: %d ms is outside the years 0001..9999", reasonInvalidEventTime, ms)
	}
	return ms, reason
}

func parseEventTime(raw any) (int64, string) {
	switch v := raw.(type) {
	case nil:
		return 0, reasonMissingEventTime
	case json.Number:
		ms, err := strconv.ParseInt(v.String(), 10, 64)
		if err != nil {
			return 0, fmt.Sprintf("%s: %s is not integer epoch ms", reasonInvalidEventTime, v)
		}
		return ms, ""
	case string:
		switch {
		case epochMsRe.MatchString(v):
			ms, _ := strconv.ParseInt(v, 10, 64)
			return ms, ""
		case localTimeRe.MatchString(v):
			t, err := time.ParseInLocation("2006-01-02T15:04:05", strings.Replace(v, " ", "T", 1), time.UTC)
			if err != nil {
				return 0, fmt.Sprintf("%s: %q: %v", reasonInvalidEventTime, v, err)
			}
			return t.UnixMilli(), ""
		case offsetTimeRe.MatchString(v):
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return 0, fmt.Sprintf("%s: %q: %v", reasonInvalidEventTime, v, err)
			}
			return t.UnixMilli(), ""
		}
		return 0, fmt.Sprintf("%s: %q", reasonInvalidEventTime, v)
	}
	return 0, fmt.Sprintf("%s: %T", reasonInvalidEventTime, raw)
}

// decodeNumber reads a finite number from a JSON number or a decimal string.
// Absent (nil or "") is not an error: present is false. reason names the
// field's invalid_* reason.
func decodeNumber(reason string, raw any) (v float64, present bool, bad string) {
	var s string
	switch x := raw.(type) {
	case nil:
		return 0, false, ""
	case json.Number:
		s = x.String()
	case string:
		if x == "" {
			return 0, false, ""
		}
		// The replayer trims white space around numbers (and sends a
		// blank-but-not-empty value as a string, a dead letter).
		s = strings.TrimSpace(x)
		if !decimalRe.MatchString(s) {
			return 0, true, fmt.Sprintf("%s: %q is not a number", reason, x)
		}
	default:
		return 0, true, fmt.Sprintf("%s: %T", reason, raw)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, true, fmt.Sprintf("%s: %q is not a finite number", reason, s)
	}
	return f, true, ""
}

// The size of the message value the replayer sends, by the conversion rules
// of actors/dataset (its package doc, "Conversion rules"): members
// event_time, metric, pboxid, latitude, longitude in this order, absent ones
// (and empty coordinates) left out; pboxid and event_time as JSON strings;
// the numeric fields as a JSON number when their trimmed text is a finite
// decimal (the text itself if it is JSON number syntax, else Go's shortest
// 'g' form), otherwise as a JSON string of the original text; NDJSON numbers,
// booleans, objects and arrays as they were written.

var memberOrder = [...]string{"event_time", "metric", "pboxid", "latitude", "longitude"}

// sentValue is one member of the sent value: its text (CSV) or its raw JSON
// (NDJSON); absent when both are unset.
type sentValue struct {
	text    string
	hasText bool
	raw     json.RawMessage // NDJSON only
}

// sentSize returns the length of {"event_time":…,"metric":…,…} for the
// members in memberOrder.
func sentSize(vals *[5]sentValue) int {
	n := 2 // {}
	members := 0
	for i, v := range vals {
		coord := i >= 3
		text := i == 0 || i == 2
		var l int
		switch {
		case v.hasText:
			if coord && v.text == "" {
				continue
			}
			if text {
				l = jsonStringLen(v.text)
			} else {
				l = numberOrStringLen(v.text)
			}
		case len(v.raw) == 0 || string(v.raw) == "null":
			continue
		case v.raw[0] == '"':
			var s string
			_ = json.Unmarshal(v.raw, &s)
			if coord && s == "" {
				continue
			}
			if text {
				l = jsonStringLen(s)
			} else {
				l = numberOrStringLen(s)
			}
		default:
			l = len(v.raw)
		}
		if members > 0 {
			n++ // ,
		}
		members++
		n += len(memberOrder[i]) + 3 + l // "name":
	}
	return n
}

// jsonStringLen is the length of s as the replayer writes it as a JSON
// string: '"' and '\' escaped, \n \r \t, other control characters as
// \u00XX, invalid UTF-8 bytes as \ufffd, everything else as is.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n += 2
			i++
		case c < 0x20:
			n += 6
			i++
		case c < utf8.RuneSelf:
			n++
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				n += 6
			} else {
				n += size
			}
			i += size
		}
	}
	return n
}

func numberOrStringLen(s string) int {
	t := strings.TrimSpace(s)
	if decimalRe.MatchString(t) {
		if f, err := strconv.ParseFloat(t, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			if jsonNumberRe.MatchString(t) {
				return len(t)
			}
			return len(strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	return jsonStringLen(s)
}
