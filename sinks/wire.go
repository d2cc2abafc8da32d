package sinks

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/operators"
)

// The JSON wire format of eddy's rows: one object per row, the field
// "table" first, then the table's columns under their SQL names in SQL
// column order (see NDJSON for the conventions). The ndjson/stdout sinks
// write it one object per line; the Kafka sink sends one object per
// message.

func appendReadingJSON(b []byte, r *operators.Reading) []byte {
	b = append(b, `{"table":"readings","source_partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = appendField(b, "pboxid")
	b = appendJSONString(b, r.PboxID)
	b = appendField(b, "event_time")
	b = appendJSONTime(b, r.EventTime)
	b = appendField(b, "metric")
	b = appendJSONFloat(b, r.Metric)
	b = appendField(b, "latitude")
	b = appendJSONFloat(b, r.Latitude)
	b = appendField(b, "longitude")
	b = appendJSONFloat(b, r.Longitude)
	b = appendField(b, "company")
	b = appendJSONString(b, r.Company)
	b = appendField(b, "site")
	b = appendJSONString(b, r.Site)
	return append(b, "}\n"...)
}

func appendWindowJSON(b []byte, w *operators.WindowAggregate) []byte {
	b = append(b, `{"table":"window_aggregates","pboxid":`...)
	b = appendJSONString(b, w.PboxID)
	b = appendField(b, "window_start")
	b = appendJSONTime(b, w.Start)
	b = appendField(b, "window_end")
	b = appendJSONTime(b, w.End)
	b = appendField(b, "count")
	b = strconv.AppendInt(b, w.Count, 10)
	for _, f := range [...]struct {
		name string
		v    float64
	}{{"sum", w.Sum}, {"min", w.Min}, {"max", w.Max}, {"avg", w.Avg}, {"latitude", w.Latitude}, {"longitude", w.Longitude}} {
		b = appendField(b, f.name)
		b = appendJSONFloat(b, f.v)
	}
	b = appendField(b, "company")
	b = appendJSONString(b, w.Company)
	b = appendField(b, "site")
	b = appendJSONString(b, w.Site)
	return append(b, "}\n"...)
}

func appendWorkPeriodJSON(b []byte, p *operators.WorkPeriod) []byte {
	b = append(b, `{"table":"work_periods","pboxid":`...)
	b = appendJSONString(b, p.PboxID)
	b = appendField(b, "period_start")
	b = appendJSONTime(b, p.Start)
	b = appendField(b, "period_end")
	b = appendJSONTime(b, p.End)
	b = appendField(b, "duration_s")
	b = appendJSONFloat(b, p.DurationSeconds())
	b = appendField(b, "samples")
	b = strconv.AppendInt(b, p.Samples, 10)
	b = appendField(b, "avg_metric")
	b = appendJSONFloat(b, p.AvgMetric)
	b = appendField(b, "max_metric")
	b = appendJSONFloat(b, p.MaxMetric)
	b = appendField(b, "company")
	b = appendJSONString(b, p.Company)
	b = appendField(b, "site")
	b = appendJSONString(b, p.Site)
	return append(b, "}\n"...)
}

// appendLateJSON appends l as one JSON line; payloadBytes is the length of
// the original payload (l.Payload may have been cut by the caller).
func appendLateJSON(b []byte, l *operators.LateRecord, payloadBytes int) []byte {
	b = append(b, `{"table":"late_records","source_partition":`...)
	b = strconv.AppendInt(b, int64(l.Partition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, l.Offset, 10)
	b = appendField(b, "pboxid")
	b = appendJSONString(b, l.PboxID)
	b = appendField(b, "event_time")
	b = appendJSONTime(b, l.EventTime)
	b = appendField(b, "watermark")
	b = appendJSONTime(b, l.Watermark)
	b = appendField(b, "reason")
	b = appendJSONString(b, l.Reason)
	b = appendJSONPayload(b, l.Payload, payloadBytes)
	return append(b, "}\n"...)
}

// appendDeadLetterJSON appends d as one JSON line; payloadBytes as in
// appendLateJSON.
func appendDeadLetterJSON(b []byte, d *operators.DeadLetter, payloadBytes int) []byte {
	b = append(b, `{"table":"dead_letters","source_partition":`...)
	b = strconv.AppendInt(b, int64(d.Partition), 10)
	b = append(b, `,"source_offset":`...)
	b = strconv.AppendInt(b, d.Offset, 10)
	b = appendField(b, "reason")
	b = appendJSONString(b, d.Reason)
	b = appendJSONPayload(b, d.Payload, payloadBytes)
	return append(b, "}\n"...)
}

// appendField appends `,"name":`.
func appendField(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendJSONPayload appends the payload fields: "payload" (valid UTF-8) or
// "payload_base64", then "payload_bytes" = n, the original length.
func appendJSONPayload(b []byte, p []byte, n int) []byte {
	if utf8.Valid(p) {
		b = appendField(b, "payload")
		b = appendJSONString(b, string(p))
	} else {
		b = appendField(b, "payload_base64")
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, p)
		b = append(b, '"')
	}
	b = appendField(b, "payload_bytes")
	return strconv.AppendInt(b, int64(n), 10)
}

// appendJSONTime appends ms as a JSON string in RFC 3339 UTC with
// milliseconds.
func appendJSONTime(b []byte, ms int64) []byte {
	b = append(b, '"')
	if ms >= minYear0Ms && ms < endTimeMs {
		b = appendTime(b, ms, 'T')
	} else {
		b = time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000")
	}
	return append(b, 'Z', '"')
}

// minYear0Ms is 0000-01-01 in Unix ms: appendTime handles years 0–9999.
var minYear0Ms = daysFromCivil(0, 1, 1) * msPerDay

// appendJSONFloat appends f, or null if it is NaN or infinite.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendJSONString appends s as a JSON string: '"', '\\' and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, the rest verbatim.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
