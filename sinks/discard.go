package sinks

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Discard counts the rows handed to it and drops them: the blackhole sink
// of Nexmark-style benchmarks, measuring a job without sink cost. Write and
// Flush are safe for concurrent use.
type Discard struct {
	m    *metrics
	rows atomic.Int64

	mu    sync.Mutex
	state int
}

var _ Sink = (*Discard)(nil)

// NewDiscard returns a Discard sink without metrics.
func NewDiscard() *Discard { return newDiscard(nil) }

func newDiscard(reg prometheus.Registerer) *Discard {
	return &Discard{m: newMetrics(reg, "discard")}
}

// Rows is the number of rows accepted by Write so far.
func (d *Discard) Rows() int64 { return d.rows.Load() }

// Open marks the sink open; Open after Close returns ErrClosed.
func (d *Discard) Open(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == stateClosed {
		return ErrClosed
	}
	d.state = stateOpen
	return nil
}

// Write counts the rows of b. It returns ErrNotOpen before Open and
// ErrClosed after Close.
func (d *Discard) Write(ctx context.Context, b *Batch) error {
	if err := d.usable(); err != nil {
		return err
	}
	d.rows.Add(int64(b.Len()))
	d.m.written(b)
	return nil
}

// Flush does nothing but check the state.
func (d *Discard) Flush(ctx context.Context) error { return d.usable() }

// Close is idempotent.
func (d *Discard) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = stateClosed
	return nil
}

func (d *Discard) usable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	return nil
}
