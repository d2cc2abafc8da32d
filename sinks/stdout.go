package sinks

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
)

// NDJSON writes every row as one JSON object per line (newline-delimited
// JSON) to an io.Writer: standard output, or a file it opens.
//
// Each object has the field "table" naming the table (readings,
// window_aggregates, work_periods, late_records, dead_letters), then the
// columns of that table under their SQL names, in the SQL column order.
// Times are RFC 3339 UTC with milliseconds ("2019-03-01T00:00:08.000Z"),
// absent coordinates and non-finite numbers are null. A payload is the
// field "payload" (a JSON string) when it is valid UTF-8, else
// "payload_base64" (standard base64); "payload_bytes" is its length.
// Payloads are never cut. Strings with invalid UTF-8 get U+FFFD.
//
// Output is buffered; Flush writes the buffer out (and fsyncs a file the
// sink opened). Rows of one Write are contiguous. Write and Flush are safe
// for concurrent use.
type NDJSON struct {
	kind string // metrics label: stdout, ndjson
	path string // file to open in Open; "" when writing to out
	m    *metrics

	mu     sync.Mutex
	state  int
	out    io.Writer
	file   *os.File // owned when path != ""
	w      *bufio.Writer
	buf    []byte
	counts [5]int
}

var _ Sink = (*NDJSON)(nil)

// NewNDJSON returns a sink writing NDJSON to w (os.Stdout if nil). Close
// flushes but does not close w.
func NewNDJSON(w io.Writer) *NDJSON {
	if w == nil {
		w = os.Stdout
	}
	return newNDJSON(w, "", "ndjson", nil)
}

func newNDJSON(w io.Writer, path, kind string, reg prometheus.Registerer) *NDJSON {
	return &NDJSON{kind: kind, path: path, out: w, m: newMetrics(reg, kind)}
}

func newNDJSONFile(path string, reg prometheus.Registerer) *NDJSON {
	return newNDJSON(nil, path, "ndjson", reg)
}

// Open opens the output file (created if missing, appended to) of a sink
// made by Open("ndjson:PATH"); otherwise it only marks the sink open. A
// second Open is a no-op; Open after Close returns ErrClosed.
func (s *NDJSON) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateOpen:
		return nil
	case stateClosed:
		return ErrClosed
	}
	if s.path != "" {
		f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("sinks: ndjson: %w", err)
		}
		s.file, s.out = f, f
	}
	s.w = bufio.NewWriterSize(s.out, 64<<10)
	s.state = stateOpen
	return nil
}

// Write formats the rows of b into the buffer. It returns ErrNotOpen before
// Open, ErrClosed after Close, or the writer's error.
func (s *NDJSON) Write(ctx context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	buf := s.buf[:0]
	flushBuf := func() error {
		_, err := s.w.Write(buf)
		buf = buf[:0]
		return err
	}
	var err error
	for i := range b.Readings {
		buf = appendReadingJSON(buf, &b.Readings[i])
		if len(buf) > 32<<10 {
			if err = flushBuf(); err != nil {
				break
			}
		}
	}
	for i := 0; err == nil && i < len(b.Windows); i++ {
		buf = appendWindowJSON(buf, &b.Windows[i])
	}
	for i := 0; err == nil && i < len(b.WorkPeriods); i++ {
		buf = appendWorkPeriodJSON(buf, &b.WorkPeriods[i])
	}
	if err == nil {
		err = flushBuf()
	}
	for i := 0; err == nil && i < len(b.Late); i++ {
		buf = appendLateJSON(buf, &b.Late[i], len(b.Late[i].Payload))
		err = flushBuf()
	}
	for i := 0; err == nil && i < len(b.DeadLetters); i++ {
		buf = appendDeadLetterJSON(buf, &b.DeadLetters[i], len(b.DeadLetters[i].Payload))
		err = flushBuf()
	}
	s.buf = buf[:0]
	if err != nil {
		return fmt.Errorf("sinks: %s: %w", s.kind, err)
	}
	s.counts[0] += len(b.Readings)
	s.counts[1] += len(b.Windows)
	s.counts[2] += len(b.WorkPeriods)
	s.counts[3] += len(b.Late)
	s.counts[4] += len(b.DeadLetters)
	return nil
}

// Flush writes the buffer to the writer, and fsyncs the file the sink
// opened. It returns ErrNotOpen before Open, ErrClosed after Close.
func (s *NDJSON) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	return s.flushLocked()
}

func (s *NDJSON) flushLocked() error {
	start := time.Now()
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sinks: %s: %w", s.kind, err)
	}
	if s.file != nil {
		if err := s.file.Sync(); err != nil {
			return fmt.Errorf("sinks: %s: %w", s.kind, err)
		}
	}
	s.m.observeFlush(start)
	for i, n := range s.counts {
		s.m.rows[i].Add(float64(n))
	}
	s.counts = [5]int{}
	return nil
}

// Close flushes and closes the file the sink opened (never a writer given
// to NewNDJSON). It is idempotent.
func (s *NDJSON) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return nil
	}
	var err error
	if s.state == stateOpen {
		err = s.flushLocked()
		if s.file != nil {
			if cerr := s.file.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("sinks: %s: %w", s.kind, cerr)
			}
		}
	}
	s.state = stateClosed
	return err
}

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
