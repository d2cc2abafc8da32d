// Package sinks writes the outputs of a job — readings, window aggregates,
// work periods, late records and dead letters — to external stores.
//
// Every sink implements Sink: Open once, Write batches (safe for concurrent
// use by several partition actors), Flush as the pre-commit of a checkpoint
// (rows handed to Write are durable once a later Flush returns nil), Close
// (idempotent; Write after Close returns ErrClosed).
//
// # Sinks
//
//	SQLite   sqlite:PATH   embedded default, one file (NewSQLite)
//	MySQL    mysql:DSN     MySQL 8 / MariaDB 10.5+ (NewMySQL)
//	Postgres postgres://USER:PASS@HOST:5432/DB[?PARAMS]   PostgreSQL 13+,
//	         a pgx URL, postgresql:// too (NewPostgres)
//	ClickHouse clickhouse://USER:PASS@HOST:9000/DB[?OPTIONS]   native
//	         protocol, ReplacingMergeTree(epoch) tables: read with FINAL
//	         (NewClickHouse, ParseClickHouseURL, OpenClickHouseDB)
//	NDJSON   stdout, ndjson:PATH   one JSON object per row (NewNDJSON)
//	Discard  discard       counts and drops (NewDiscard)
//	Kafka    kafka://HOST:PORT[,...][?OPTIONS]   one JSON message per row,
//	         one topic per table, transactional (NewKafka, ParseKafkaURL)
//
// Open(url, cfg, reg) builds a sink from such a URL.
//
// # Tables
//
// The SQL sinks create the same tables, with the same column names, in
// every dialect. Times are UTC: DATETIME(3) in MySQL, TIMESTAMP(3) in
// PostgreSQL, TEXT "YYYY-MM-DD HH:MM:SS.sss" in SQLite (always three
// fraction digits), Int64 Unix ms in ClickHouse (whose 18.16 has no
// DateTime64).
// Coordinates are NULL when absent. company and site are the empty string
// (never NULL) for devices without broadcast data.
//
//	readings          (source_partition, source_offset, pboxid, event_time, metric,
//	                   latitude, longitude, company, site)
//	                   key (event_time, source_partition, source_offset)
//	window_aggregates (pboxid, window_start, window_end, count, sum, min, max, avg,
//	                   latitude, longitude, company, site)
//	                   key (pboxid, window_start)
//	work_periods      (pboxid, period_start, period_end, duration_s, samples,
//	                   avg_metric, max_metric, company, site)
//	                   key (pboxid, period_start)
//	late_records      (source_partition, source_offset, pboxid, event_time, watermark,
//	                   reason, payload, payload_bytes)
//	                   key (source_partition, source_offset)
//	dead_letters      (source_partition, source_offset, reason, payload, payload_bytes)
//	                   key (source_partition, source_offset)
//	rejected_rows     (source_table, pboxid, start_ms, reason, payload, payload_bytes)
//	                   key (source_table, pboxid, start_ms): refused windows and work periods
//	daily_work_time   view: (pboxid, day, periods, seconds) per UTC day of period_start
//
// The key of readings includes event_time because MySQL requires the
// partitioning column in every unique key; a replayed reading has the same
// event time, so (source_partition, source_offset) still identifies it.
// Payloads are BLOBs (MEDIUMBLOB in MySQL, BYTEA in PostgreSQL), so
// arbitrary bytes survive; a
// payload longer than Config.MaxPayloadBytes (default 1 MiB) is cut to
// that length and payload_bytes keeps the original length. Strings are made
// valid UTF-8 (U+FFFD) and cut to their column: pboxid 64 characters,
// company, site and reason 255.
//
// # Idempotence and fencing
//
// ClickHouse has no upsert: its tables are ReplacingMergeTree(epoch)
// ordered by the key, rows of a key collapse to the one of the highest
// epoch (of those the last inserted), and readers use FINAL; see
// ClickHouse. What follows holds for the other stores, and for ClickHouse
// as read with FINAL.
//
// Every row is written with a multi-row upsert (SQLite and PostgreSQL
// INSERT ... ON CONFLICT (key) DO UPDATE, MySQL INSERT ... ON DUPLICATE KEY
// UPDATE): a row
// written again replaces itself, so a replay after recovery leaves the same
// table contents, and a window fired again (allowed lateness) replaces its
// earlier row. Within a partition, rows are written in the order they were
// handed to Write. PostgreSQL's ON CONFLICT cannot affect one row twice in
// a statement, so there a transaction carries one row per key of a table:
// the last of the highest epoch, the row the sequential upserts of the
// other stores leave (see sqlEngine.dedupeSegs).
//
// Every table has a column epoch (BIGINT UNSIGNED in MySQL, BIGINT in
// PostgreSQL, INTEGER in SQLite, default 0): the lease epoch of the partition owner that wrote
// the row (EpochWriter.WriteEpoch; Write is epoch 0). The upsert is
// conditional — MySQL: col = IF(VALUES(epoch) >= epoch, VALUES(col), col)
// for each column, then epoch = GREATEST(epoch, VALUES(epoch)); SQLite and
// PostgreSQL: DO UPDATE ... WHERE excluded.epoch >= <table>.epoch — so a
// row stored at
// a higher epoch is never replaced by a lower one: the fencing token of
// Kleppmann's argument, checked by the store itself, so that a zombie owner
// (paused, cut off) cannot overwrite the current owner's rows however late
// its buffered rows arrive. Equal epochs replace each other. Open adds the
// column to tables an older eddy created (their rows get epoch 0).
//
// # Buffering, backpressure and errors
//
// The SQL sinks buffer copies of the rows, one buffer per device partition
// and epoch, and write every buffer in one transaction once
// Config.BatchRows rows are buffered, or on Flush (MySQL: up to
// Config.Conns transactions in parallel over disjoint groups of tables,
// statements of about Config.BatchBytes, server-side prepared once per
// shape and connection unless Config.TextStatements). Rows leave the buffer
// only when their transaction commits: after a store error they stay
// buffered, in order, and the next write or Flush retries them (Write does
// not return store errors; Flush does). EpochWriter.Drop discards a
// stopped partition's rows, a lease guard (SetLeaseGuard) drops the rows of
// a partition whose lease expired right before the write, and rows of a
// newer epoch of a partition drop the older epoch's. The buffer holds at
// most Config.MaxBufferBytes (default 64 MiB): a Write that does not fit
// blocks until a write frees space (backpressure), trying the write
// itself; nothing is dropped.
//
// # Rejected rows
//
// A row no SQL store can hold (a time outside years 1000–9999, a non-finite
// metric or aggregate) is replaced by its rejection when it is buffered.
// When the store refuses a transaction for a row's values (MySQL errors
// 1048, 1264, 1265, 1292, 1366, 1367, 1406, 1526, 1690, 3819, 4025; SQLite
// constraint, mismatch and too-big errors; PostgreSQL SQLSTATE classes 22
// and 23 — never for connection errors (PostgreSQL class 08),
// deadlocks or timeouts, which are retried), the flush bisects it: each
// half is written on its own, recursively, until the refused rows are
// single, and every other row is written. Each refused row is stored with
// reason "sink_rejected: <error>" (ReasonSinkRejected): a reading or late
// record as a dead letter under its source record's (partition, offset) —
// a record is exactly one of reading, late record and dead letter, so the
// key is free — with the reading as JSON or the late record's payload; a
// dead letter again without its payload; a window aggregate or work
// period in the table rejected_rows, keyed by (source_table, pboxid,
// start_ms), apart from the source records' keys. Rejections are counted
// in eddy_sink_rows_rejected_total{sink,table}.
//
// # MySQL partitions
//
// readings is partitioned by day on event_time (RANGE COLUMNS): p_past,
// one pYYYYMMDD per day, and p_future (MAXVALUE). Daily partitions for the
// event days of every batch and Config.PartitionDaysAhead days after them
// are split out of the wider partitions before the rows are written (see
// mysql_partitions.go). Inserts never depend on it.
//
// # Two-phase commit (Kafka)
//
// The Kafka sink is a TransactionalSink: each device partition writes
// through a PartitionTxn with its own transactional producer (id
// "<job>-<partition>"; opening it fences the previous owner). Rows become
// visible to read_committed consumers only at Commit(n), after the
// checkpoint n is complete; rows written between PreCommit(n) and
// Commit(n) wait in memory for the next transaction. Each transaction also
// records its checkpoint (CommitTracker), so a new owner knows the last
// committed checkpoint and restores exactly that one. Its plain Write and
// Flush are at least once. sinks/sinktest.ReadCommitted reads the topics
// back for tests.
//
//	tx, err := k.Txn(ctx, job, partition, leaseEpoch)
//	last, ok := tx.(sinks.CommitTracker).LastCommitted() // restore this checkpoint
//	tx.Write(ctx, batch) ...
//	tx.PreCommit(ctx, n)  // at the barrier of checkpoint n
//	tx.Commit(ctx, n)     // when n is complete
//
// # Metrics
//
// eddy_sink_rows_written_total{sink,table}, eddy_sink_flush_seconds{sink},
// eddy_sink_partition_errors_total{sink}, eddy_sink_buffer_bytes{sink},
// eddy_sink_write_errors_total{sink}, eddy_sink_rows_dropped_total{sink,reason},
// eddy_sink_rows_rejected_total{sink,table}, and for transactional sinks
// eddy_sink_txn_commits_total{sink}, eddy_sink_txn_aborts_total{sink},
// eddy_sink_txn_fenced_total{sink}, registered on the Registerer given to
// the constructor (nil: none). Several sinks may share one Registerer.
//
// # Usage
//
//	s, err := sinks.Open("sqlite:eddy.db", sinks.DefaultConfig(), reg)
//	if err != nil { ... }
//	if err := s.Open(ctx); err != nil { ... }
//	defer s.Close()
//	for batch := range batches {
//		if err := s.Write(ctx, batch); err != nil { ... }
//	}
//	if err := s.Flush(ctx); err != nil { ... } // checkpoint pre-commit
package sinks
