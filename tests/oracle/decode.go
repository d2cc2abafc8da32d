package oracle

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// rawRecord is one sent record before validation: the value of every mapped
// field, as the input held it. CSV values are strings; NDJSON values are what
// encoding/json gives with UseNumber (string, json.Number, bool, nil, map,
// slice). A nil entry means absent or null.
type rawRecord struct {
	pboxid, eventTime, metric, latitude, longitude any
}

// decoded is a valid record.
type decoded struct {
	pboxid    string
	eventTime int64 // Unix ms UTC
	metric    float64
	lat, lon  float64 // NaN when absent
}

var (
	// Date-time text: a strict shape check before time.Parse, which alone
	// would accept one-digit hours.
	localTimeRe  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?$`)
	offsetTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$`)
	epochMsRe    = regexp.MustCompile(`^-?\d{1,18}$`)
	// A decimal number as Java's BigDecimal(String) reads it.
	decimalRe = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$`)
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

// decode validates r. It returns the decoded record, or "" and a dead-letter
// reason.
func decode(r *rawRecord) (decoded, string) {
	var d decoded
	switch v := r.pboxid.(type) {
	case string:
		if v == "" {
			return d, "missing pboxid"
		}
		d.pboxid = v
	case json.Number:
		if _, err := strconv.ParseInt(v.String(), 10, 64); err != nil {
			return d, fmt.Sprintf("bad pboxid: %s is not an integer", v)
		}
		d.pboxid = v.String()
	case nil:
		return d, "missing pboxid"
	default:
		return d, fmt.Sprintf("bad pboxid: %T", v)
	}

	t, reason := decodeEventTime(r.eventTime)
	if reason != "" {
		return d, reason
	}
	d.eventTime = t

	m, present, reason := decodeNumber("metric", r.metric)
	if reason != "" {
		return d, reason
	}
	if !present {
		return d, "missing metric"
	}
	d.metric = m

	d.lat, d.lon = math.NaN(), math.NaN()
	for _, c := range []struct {
		name  string
		raw   any
		limit float64
		dst   *float64
	}{{"latitude", r.latitude, 90, &d.lat}, {"longitude", r.longitude, 180, &d.lon}} {
		v, present, reason := decodeNumber(c.name, c.raw)
		if reason != "" {
			return d, reason
		}
		if !present {
			continue
		}
		if v < -c.limit || v > c.limit {
			return d, fmt.Sprintf("bad %s: %v out of [-%v, %v]", c.name, v, c.limit, c.limit)
		}
		*c.dst = v
	}
	return d, ""
}

// decodeEventTime accepts "YYYY-MM-DD HH:MM:SS[.fff]" or the same with "T"
// (UTC), RFC 3339 with an offset, and integer epoch milliseconds (a JSON
// integer or a string of digits).
func decodeEventTime(raw any) (int64, string) {
	switch v := raw.(type) {
	case nil:
		return 0, "missing event_time"
	case json.Number:
		ms, err := strconv.ParseInt(v.String(), 10, 64)
		if err != nil {
			return 0, fmt.Sprintf("bad event_time: %s is not integer epoch ms", v)
		}
		return ms, ""
	case string:
		switch {
		case v == "":
			return 0, "missing event_time"
		case epochMsRe.MatchString(v):
			ms, _ := strconv.ParseInt(v, 10, 64)
			return ms, ""
		case localTimeRe.MatchString(v):
			t, err := time.ParseInLocation("2006-01-02T15:04:05", strings.Replace(v, " ", "T", 1), time.UTC)
			if err != nil {
				return 0, fmt.Sprintf("bad event_time %q: %v", v, err)
			}
			return t.UnixMilli(), ""
		case offsetTimeRe.MatchString(v):
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return 0, fmt.Sprintf("bad event_time %q: %v", v, err)
			}
			return t.UnixMilli(), ""
		}
		return 0, fmt.Sprintf("bad event_time %q", v)
	}
	return 0, fmt.Sprintf("bad event_time: %T", raw)
}

// decodeNumber reads a finite number from a JSON number or a decimal string.
// Absent (nil or "") is not an error: present is false.
func decodeNumber(name string, raw any) (v float64, present bool, reason string) {
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
			return 0, true, fmt.Sprintf("bad %s %q: not a number", name, x)
		}
	default:
		return 0, true, fmt.Sprintf("bad %s: %T", name, raw)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, true, fmt.Sprintf("bad %s %q: not a finite number", name, s)
	}
	return f, true, ""
}
