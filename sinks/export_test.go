package sinks

import (
	"context"
	"database/sql"
)

// readBack holds the readers of sinks/sinktest for the internal tests of
// this package, which cannot import sinktest (it imports sinks).
// readback_test.go, of package sinks_test and compiled into the same test
// binary, sets them in an init function, before any test runs.
var readBack struct {
	SQL        func(ctx context.Context, db *sql.DB) (*Batch, error)                         // sinktest.ReadAll
	ClickHouse func(ctx context.Context, db *sql.DB) (*Batch, error)                         // sinktest.ReadClickHouse
	Kafka      func(ctx context.Context, brokers []string, topics ...string) (*Batch, error) // sinktest.ReadCommitted
}

// SetReadBack sets the readers of the internal tests (readBack).
func SetReadBack(sqlDB, clickHouse func(context.Context, *sql.DB) (*Batch, error), kafka func(context.Context, []string, ...string) (*Batch, error)) {
	readBack.SQL, readBack.ClickHouse, readBack.Kafka = sqlDB, clickHouse, kafka
}
