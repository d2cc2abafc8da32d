package sinks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/secret"
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

// NoPartition is the partition under which Sink.Write buffers rows in a
// sink that is also an EpochWriter: rows not written by a leased device
// partition (epoch 0, never fenced, never asked to the lease guard).
const NoPartition int32 = -1

// EpochWriter is implemented by the sinks that fence writes by lease epoch
// (the SQL sinks). Every row it stores carries, in the column epoch, the
// lease epoch (the fencing token) of the partition owner that wrote it, and
// a row is never replaced by a row of a lower epoch: a paused or
// partitioned former owner (a zombie) cannot overwrite what the current
// owner wrote, even when its buffered rows reach the store late. Rows of
// equal epochs replace each other (a replay, a re-fired window), so eddy
// run, which writes epoch 0, keeps the last-write-wins upserts.
//
// The sink keeps one buffer per device partition, holding the epoch its
// rows were written under; a flush writes every partition's buffer in one
// transaction. All methods are safe for concurrent use.
type EpochWriter interface {
	// WriteEpoch buffers copies of the rows of b as written by device
	// partition p under lease epoch (which must be <= math.MaxInt64).
	// Rows of p buffered under a lower epoch are dropped first (a newer
	// owner of p on this node; counted as
	// eddy_sink_rows_dropped_total{reason="fenced"}); a write under an
	// epoch lower than one p already wrote under returns an error
	// wrapping ErrStaleEpoch and buffers nothing. When the buffer holds
	// Config.MaxBufferBytes, WriteEpoch blocks until a write frees space
	// (backpressure: the partition stops reading), trying the write
	// itself meanwhile; it returns ctx's error (wrapped, with the last
	// store error) if ctx ends first, buffering nothing. A failed store
	// write is not WriteEpoch's error: the rows stay buffered and the
	// next flush retries them (eddy_sink_write_errors_total counts the
	// failures, and Flush returns them). Also ErrNotOpen, ErrClosed.
	WriteEpoch(ctx context.Context, p int32, epoch uint64, b *Batch) error
	// Drop discards every row of partition p buffered and not yet written
	// (the partition stopped or lost its lease), and returns how many
	// rows it dropped (eddy_sink_rows_dropped_total{reason=
	// "partition_stopped"}). Rows of p that a flush already began to
	// write are not recalled: their transaction may still commit, and
	// the epoch condition keeps them from replacing a newer owner's rows.
	Drop(p int32) int
	// SetLeaseGuard installs valid, asked right before each write
	// transaction (and each transaction of a bisection) for every
	// partition with rows in it; rows of a partition whose guard returns
	// false are dropped, never written, and counted in
	// eddy_sink_rows_dropped_total{reason="lease_expired"}. It is called
	// with the sink's buffer lock held: it must be fast, must not block
	// and must not call the sink. Not asked for NoPartition. nil (the
	// default): always valid.
	SetLeaseGuard(valid func(p int32, epoch uint64) bool)
	// SetBackpressureHook installs fn, called on the writer's goroutine
	// with waiting true when a WriteEpoch (or Write) of partition p starts
	// to wait for buffer space and with false when it stops waiting
	// (the partition actor sets eddy_partition_backpressured from it).
	// fn must not call the sink. nil (the default): not reported.
	SetBackpressureHook(fn func(p int32, waiting bool))
}

// TransactionalSink is a sink whose rows become visible only when a
// checkpoint completes: the two-phase-commit sink of Flink
// (TwoPhaseCommitSinkFunction). Each device partition writes through its own
// PartitionTxn; the Kafka sink keeps one transactional producer per
// partition with transactional id "<job>-<partition>", so opening the
// partition's writer anew (a restarted or new owner) fences the old one.
//
// Protocol, driven by the partition actor: Write rows; at checkpoint n,
// PreCommit(n) (everything written so far is flushed into the open
// transaction); when n is complete, Commit(n). Rows written between
// PreCommit(n) and Commit(n) belong to the next transaction. After a crash
// the open transaction is aborted by fencing, and the partition restores the
// last checkpoint whose Commit is known to have succeeded.
type TransactionalSink interface {
	Sink
	// Txn opens the writer of one device partition of job under lease
	// epoch, fencing every earlier writer of the same partition.
	Txn(ctx context.Context, job string, partition int32, epoch uint64) (PartitionTxn, error)
}

// PartitionTxn is the transactional writer of one device partition. Not safe
// for concurrent use: the partition actor owns it.
type PartitionTxn interface {
	// Write adds rows to the open transaction (or buffers them while a
	// pre-committed transaction waits for Commit).
	Write(ctx context.Context, b *Batch) error
	// PreCommit flushes everything written so far into the transaction of
	// checkpoint (an id > 0); after nil, Commit(checkpoint) can make it
	// visible.
	PreCommit(ctx context.Context, checkpoint uint64) error
	// Commit makes the transaction pre-committed for checkpoint visible and
	// opens the next one. Committing an already committed checkpoint is a
	// no-op.
	Commit(ctx context.Context, checkpoint uint64) error
	// Abort discards the open transaction and everything buffered.
	Abort(ctx context.Context) error
	// Close aborts what is open and releases the producer; idempotent.
	Close() error
}

var (
	// ErrClosed is returned by Open, Write and Flush after Close.
	ErrClosed = errors.New("sinks: closed")
	// ErrNotOpen is returned by Write and Flush before a successful Open.
	ErrNotOpen = errors.New("sinks: not open")
	// ErrStaleEpoch is wrapped by the error EpochWriter.WriteEpoch returns
	// for a write under a lease epoch older than one the partition already
	// wrote under (a zombie owner on the same node).
	ErrStaleEpoch = errors.New("sinks: write under a stale lease epoch")
	// ErrBadURL is wrapped by the error Open returns for a sink URL it cannot
	// parse.
	ErrBadURL = errors.New("sinks: bad sink URL")
)

// Limits of Config values.
const (
	// MaxBatchRows is the largest allowed Config.BatchRows.
	MaxBatchRows = 100_000
	// MaxPayloadLimit is the largest allowed Config.MaxPayloadBytes: the
	// size of a MySQL MEDIUMBLOB minus one.
	MaxPayloadLimit = 1<<24 - 1
	// MaxPartitionsLimit is the largest allowed Config.MaxPartitions (the
	// MySQL/MariaDB limit on partitions per table).
	MaxPartitionsLimit = 8192
	// MinBufferBytes and MaxBufferBytesLimit bound Config.MaxBufferBytes.
	MinBufferBytes      = 1 << 10
	MaxBufferBytesLimit = 1 << 40
	// MinBatchBytes and MaxBatchBytesLimit bound Config.BatchBytes (the
	// upper one is MySQL's largest max_allowed_packet).
	MinBatchBytes      = 4 << 10
	MaxBatchBytesLimit = 1 << 30
	// MaxConns is the largest allowed Config.Conns.
	MaxConns = 64
)

// Config tunes the SQL sinks. The zero value means "all defaults"; every
// zero field takes its default (see DefaultConfig).
type Config struct {
	// BatchRows is how many rows Write buffers before it writes them to the
	// store, and (SQLite) the most rows one INSERT statement carries (fewer
	// where SQLite's 32766 bound variables require); MySQL sizes its
	// statements by BatchBytes instead. Flush writes whatever is buffered.
	// Must be in [1, MaxBatchRows]; default 1000.
	BatchRows int
	// BatchBytes (MySQL only) is the size one multi-row INSERT statement
	// is filled to, in bytes of statement text (string and payload bytes
	// counted twice, as escaping may double them): a flush sends its rows
	// in as few statements of about this size as the 65,535 placeholders
	// of a statement allow. It is capped at the server's
	// max_allowed_packet minus 64 KiB; a single row larger than it is
	// sent alone. Prepared statements (the default; see TextStatements)
	// are sized the same way, their binary values taking fewer bytes
	// than the estimate. Larger statements are not faster: MariaDB 10.11 wrote
	// fewer rows/s with 4,000-row statements than with 1,000-row ones.
	// Must be in [MinBatchBytes, MaxBatchBytesLimit]; default 256 KiB
	// (about 1,000 readings).
	BatchBytes int
	// Conns (MySQL only) is how many connections a flush writes over in
	// parallel: the tables (readings, windows, work periods ...) are split
	// into up to Conns groups of about equal rows, each written in its own
	// transaction, so a flush is up to Conns transactions over disjoint
	// tables (each table's rows stay in one transaction, in the order of
	// a single-connection flush; the epoch fencing is per row and
	// unchanged). A group that fails keeps its rows buffered for the next
	// flush while the others' rows leave the buffer; a group that hits a
	// deadlock is retried once after the others. More connections pay where the server has cores to spare
	// (on the shared 2-core benchmark machine, with the server on it, 2
	// were no faster than 1). Must be in [1, MaxConns]; default 1 (one
	// transaction per flush).
	Conns int
	// TextStatements (MySQL only) sends the upserts as statement text, as
	// eddy did before server-side prepared statements: interpolated by
	// the driver, or prepared, run and closed per statement when the DSN
	// sets interpolateParams=false. For a server or proxy that cannot
	// hold prepared statements; the sink also falls back to text by
	// itself for a statement the server refuses to prepare. Default
	// false: each upsert shape is prepared once per connection and
	// reused (MariaDB then spends less CPU per row; see the README's
	// benchmark).
	TextStatements bool
	// MaxPayloadBytes is the longest payload of a late record or dead letter
	// that is stored whole; longer payloads are cut to this many bytes and
	// the column payload_bytes keeps the original length. Must be in
	// [1, MaxPayloadLimit]; default 1 MiB.
	MaxPayloadBytes int
	// PartitionDaysAhead (MySQL only) is how many days after every event day
	// written, and after today when the sink opens, get their own daily
	// partition of the readings table before rows for them arrive. Must be in
	// [1, 366]; default 7.
	PartitionDaysAhead int
	// MaxPartitions (MySQL only) caps the number of partitions of the
	// readings table. Days that would exceed it get no partition of their
	// own; their rows stay in a wider partition (nothing is lost). Must be in
	// [3, MaxPartitionsLimit]; default 1024.
	MaxPartitions int
	// MaxBufferBytes bounds the memory of the rows a SQL sink buffers
	// (cleaned copies: structs, strings and payloads), summed over every
	// partition. When the buffer is full a Write blocks until a write
	// to the store frees space, so a sink outage stops the partitions
	// from reading instead of growing memory without bound; nothing is
	// dropped. A batch is always taken into an empty buffer, so the
	// buffer may exceed the limit by one batch. Writes also wait once
	// 16 × BatchRows rows are buffered, so that a store slower than the
	// partitions bounds how far they run ahead of it (and so how long a
	// checkpoint's flush takes), whatever the byte limit. Must be in
	// [MinBufferBytes, MaxBufferBytesLimit]; default 64 MiB.
	MaxBufferBytes int64
}

// DefaultConfig returns the default Config: BatchRows 1000, BatchBytes
// 256 KiB, Conns 1, MaxPayloadBytes 1 MiB, PartitionDaysAhead 7,
// MaxPartitions 1024, MaxBufferBytes 64 MiB.
func DefaultConfig() Config {
	return Config{
		BatchRows:          1000,
		BatchBytes:         256 << 10,
		Conns:              1,
		MaxPayloadBytes:    1 << 20,
		PartitionDaysAhead: 7,
		MaxPartitions:      1024,
		MaxBufferBytes:     64 << 20,
	}
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BatchRows == 0 {
		c.BatchRows = d.BatchRows
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.Conns == 0 {
		c.Conns = d.Conns
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.PartitionDaysAhead == 0 {
		c.PartitionDaysAhead = d.PartitionDaysAhead
	}
	if c.MaxPartitions == 0 {
		c.MaxPartitions = d.MaxPartitions
	}
	if c.MaxBufferBytes == 0 {
		c.MaxBufferBytes = d.MaxBufferBytes
	}
	return c
}

// Validate reports the first field of c (after zero fields take their
// defaults) that is out of range, with the allowed range.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.BatchRows < 1 || c.BatchRows > MaxBatchRows:
		return fmt.Errorf("sinks: BatchRows is %d; must be in [1, %d] (0 means the default %d)", c.BatchRows, MaxBatchRows, DefaultConfig().BatchRows)
	case c.BatchBytes < MinBatchBytes || c.BatchBytes > MaxBatchBytesLimit:
		return fmt.Errorf("sinks: BatchBytes is %d; must be in [%d, %d] (0 means the default %d)", c.BatchBytes, MinBatchBytes, MaxBatchBytesLimit, DefaultConfig().BatchBytes)
	case c.Conns < 1 || c.Conns > MaxConns:
		return fmt.Errorf("sinks: Conns is %d; must be in [1, %d] (0 means the default %d)", c.Conns, MaxConns, DefaultConfig().Conns)
	case c.MaxPayloadBytes < 1 || c.MaxPayloadBytes > MaxPayloadLimit:
		return fmt.Errorf("sinks: MaxPayloadBytes is %d; must be in [1, %d] (MEDIUMBLOB size; 0 means the default %d)", c.MaxPayloadBytes, MaxPayloadLimit, DefaultConfig().MaxPayloadBytes)
	case c.PartitionDaysAhead < 1 || c.PartitionDaysAhead > 366:
		return fmt.Errorf("sinks: PartitionDaysAhead is %d; must be in [1, 366] (0 means the default %d)", c.PartitionDaysAhead, DefaultConfig().PartitionDaysAhead)
	case c.MaxPartitions < 3 || c.MaxPartitions > MaxPartitionsLimit:
		return fmt.Errorf("sinks: MaxPartitions is %d; must be in [3, %d] (0 means the default %d)", c.MaxPartitions, MaxPartitionsLimit, DefaultConfig().MaxPartitions)
	case c.MaxBufferBytes < MinBufferBytes || c.MaxBufferBytes > MaxBufferBytesLimit:
		return fmt.Errorf("sinks: MaxBufferBytes is %d; must be in [%d, %d] (0 means the default %d)", c.MaxBufferBytes, MinBufferBytes, int64(MaxBufferBytesLimit), DefaultConfig().MaxBufferBytes)
	}
	return nil
}

// URLForms lists the sink URLs Open accepts.
const URLForms = `sqlite:PATH            SQLite database file (created if missing)
mysql:DSN              MySQL/MariaDB, go-sql-driver DSN, e.g. mysql:root@tcp(127.0.0.1:3306)/eddy
postgres://USER:PASS@HOST:5432/DB[?PARAMS]
                       PostgreSQL (pgx URL; postgresql:// too), e.g.
                       postgres://eddy:secret@127.0.0.1:5432/eddy?sslmode=disable
clickhouse://USER:PASS@HOST:9000/DB[?OPTIONS]
                       ClickHouse, native protocol, ReplacingMergeTree tables (read with FINAL),
                       e.g. clickhouse://eddy:secret@127.0.0.1:9000/eddy; OPTIONS: secure=false,
                       skip_verify=false, compress=false, timeout=10, read_timeout=60, write_timeout=60
stdout                 NDJSON on standard output
ndjson:PATH            NDJSON appended to the file PATH (ndjson:- is standard output)
discard                count rows and drop them
kafka://HOST:PORT[,HOST:PORT...][?OPTIONS]
                       Kafka, one topic per table, transactional per device partition;
                       default topics iot-work.window_aggregates and iot-work.work_periods.
                       OPTIONS: prefix=iot-work, tables=LIST|all, <table>=TOPIC,
                       checkpoints=iot-work.checkpoints, version=2.8.0, client_id=eddy,
                       txn_prefix=P, txn_timeout=1m, compression=none, create_topics=false,
                       partitions=N, replication=N`

// Open makes the sink a URL names (see URLForms) without opening it: the
// caller calls the sink's Open. cfg applies to the SQL sinks; reg (nil: no
// metrics are registered) receives the sink's metrics. Errors wrap ErrBadURL
// for a URL it cannot parse, and carry the list of valid forms.
func Open(url string, cfg Config, reg prometheus.Registerer) (Sink, error) {
	scheme, rest, hasColon := strings.Cut(url, ":")
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s; valid forms:\n%s", ErrBadURL, secret.RedactURL(url), why, URLForms)
	}
	switch scheme {
	case "sqlite":
		rest = strings.TrimPrefix(rest, "//")
		if rest == "" {
			return nil, bad("sqlite needs a file path (sqlite:PATH)")
		}
		return NewSQLite(rest, cfg, reg)
	case "mysql":
		rest = strings.TrimPrefix(rest, "//")
		if rest == "" {
			return nil, bad("mysql needs a DSN (mysql:user:pass@tcp(host:3306)/db)")
		}
		return NewMySQL(rest, cfg, reg)
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") || len(rest) == 2 {
			return nil, bad("postgres needs a URL (postgres://user:pass@host:5432/db)")
		}
		return NewPostgres(url, cfg, reg)
	case "clickhouse":
		if !strings.HasPrefix(rest, "//") || len(rest) == 2 {
			return nil, bad("clickhouse needs a URL (clickhouse://user:pass@host:9000/db)")
		}
		return NewClickHouse(url, cfg, reg)
	case "stdout":
		if hasColon {
			return nil, bad("stdout takes no argument")
		}
		return newNDJSON(os.Stdout, "", "stdout", reg), nil
	case "ndjson":
		rest = strings.TrimPrefix(rest, "//")
		switch rest {
		case "":
			return nil, bad("ndjson needs a file path (ndjson:PATH, or ndjson:- for stdout)")
		case "-":
			return newNDJSON(os.Stdout, "", "ndjson", reg), nil
		}
		return newNDJSONFile(rest, reg), nil
	case "discard":
		if hasColon {
			return nil, bad("discard takes no argument")
		}
		return newDiscard(reg), nil
	case "kafka":
		kc, err := ParseKafkaURL(url)
		if err != nil {
			return nil, fmt.Errorf("%w; valid forms:\n%s", err, URLForms)
		}
		k, err := NewKafka(kc, reg)
		if err != nil {
			return nil, bad(err.Error())
		}
		return k, nil
	case "":
		return nil, bad("empty sink URL")
	}
	return nil, bad(fmt.Sprintf("unknown sink %q", scheme))
}
