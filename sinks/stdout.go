package sinks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
