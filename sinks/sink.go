// Package sinks writes the outputs of a job — readings, window aggregates,
// work periods, late records and dead letters — to external stores.
//
// Every sink implements Sink. Writes are idempotent: every table has a key
// (see the table list in README.md) and a row written twice replaces itself,
// so a replay after recovery never duplicates a row.
package sinks

import (
	"context"

	"github.com/eddy-iot/eddy/operators"
)

// Batch is a group of output rows handed to a sink in one call: the
// emissions of the operator chain. Any slice may be empty. A sink must not
// retain the slices after Write returns (it copies what it buffers).
type Batch = operators.Output

// Sink is an output store.
//
// Open is called once before any Write. Write and Flush are safe for
// concurrent use by several partition actors. Rows handed to Write are
// durable in the store once a later Flush returns nil (Flush is the
// pre-commit of the two-phase-commit protocol). Close flushes and releases the
// store; it is idempotent; Write after Close returns ErrClosed.
type Sink interface {
	Open(ctx context.Context) error
	Write(ctx context.Context, b *Batch) error
	Flush(ctx context.Context) error
	Close() error
}
