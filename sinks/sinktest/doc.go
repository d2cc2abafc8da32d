// Package sinktest reads a sink's output back into a sinks.Batch, for
// tests, oracle comparisons and small tools; it is not used by the
// runtime.
//
//	ReadAll         the tables of a SQLite, MySQL or PostgreSQL sink
//	ReadClickHouse  the tables of a ClickHouse sink, read with FINAL
//	ReadCommitted   the topics of a Kafka sink, as a read_committed
//	                consumer sees them (ReadCommittedWith over TLS, SASL)
//
// Each loads everything into memory and returns every table ordered by its
// key.
//
//	db, _ := sql.Open("sqlite", sinks.SQLiteDSN(path))
//	got, err := sinktest.ReadAll(ctx, db)
package sinktest
