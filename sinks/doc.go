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
// both dialects. Times are UTC: DATETIME(3) in MySQL, TEXT
// "YYYY-MM-DD HH:MM:SS.sss" in SQLite (always three fraction digits).
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
//	daily_work_time   view: (pboxid, day, periods, seconds) per UTC day of period_start
//
// The key of readings includes event_time because MySQL requires the
// partitioning column in every unique key; a replayed reading has the same
// event time, so (source_partition, source_offset) still identifies it.
// Payloads are BLOBs (MEDIUMBLOB in MySQL), so arbitrary bytes survive; a
// payload longer than Config.MaxPayloadBytes (default 1 MiB) is cut to
// that length and payload_bytes keeps the original length. Strings are made
// valid UTF-8 (U+FFFD) and cut to their column: pboxid 64 characters,
// company, site and reason 255.
//
// # Idempotence
//
// Every row is written with a multi-row upsert (SQLite INSERT ... ON
// CONFLICT DO UPDATE, MySQL INSERT ... ON DUPLICATE KEY UPDATE): a row
// written again replaces itself, so a replay after recovery leaves the same
// table contents, and a window fired again (allowed lateness) replaces its
// earlier row. Within a sink, rows are written in the order they were
// handed to Write.
//
// # Buffering and errors
//
// The SQL sinks buffer copies of the rows and write them in one
// transaction once Config.BatchRows rows are buffered, or on Flush. Rows
// leave the buffer only when their transaction commits: after a store error
// they stay buffered, in order, and the next Write or Flush retries them.
// Write rejects a whole batch, buffering nothing, with an error wrapping
// ErrInvalidRow if a row cannot be stored in every dialect (a time outside
// years 1000–9999, a non-finite metric or aggregate).
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
// Flush are at least once. ReadCommitted reads the topics back for tests.
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
// eddy_sink_partition_errors_total{sink}, and for transactional sinks
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
