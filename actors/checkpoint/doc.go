// Package checkpoint is eddy's checkpoint storage, snapshot format and
// checkpoint coordinator: what makes every reading count exactly once in
// every sink across kill -9.
//
// # Storage
//
// OpenStorage opens checkpoint storage by URL through gocloud.dev/blob:
// file:///dir (default), s3://bucket/prefix (any node of a cluster reads what
// another wrote), mem:// for tests. Objects are immutable and appear whole.
//
// # Layout and formats
//
// A Catalog is one job's directory in storage: chk-N/ for checkpoints,
// sp-N/ for savepoints (ids shared, zero-padded, only growing), each with one
// snapshot per device partition (p-00003.snap), commit markers of
// transactional sinks (commit-00003) and a MANIFEST written last — a
// checkpoint without a valid manifest is incomplete and ignored.
//
// A snapshot (SnapshotWriter, ReadSnapshot) is versioned and checksummed:
// magic, version, a JSON SnapshotHeader (source offset, bounded end,
// watermark and counters, operator configuration), the partition's
// key/value records of keyed state, a record count, a CRC-32C of all of it
// and an end magic. The manifest (MarshalManifest) is JSON behind a line
// with its own CRC-32C and length, and records each snapshot's size and CRC
// too. Any truncation, bit flip or unknown version is reported as
// ErrCorrupt; the restoring partition then falls back to the previous
// complete checkpoint.
//
// # Protocol
//
// Coordinator numbers checkpoints, collects one PartitionAck per partition
// and completes a checkpoint by writing its manifest; Local is the single-
// node implementation. Recovery rule: each partition restores the newest
// complete checkpoint or savepoint it may restore from (Catalog.Committed:
// all of them without transactional sinks; with them, those whose commit the
// partition recorded) whose snapshot reads back intact, and seeks its source
// to the offset stored there. Retention (Catalog.Retain) keeps the newest K
// complete checkpoints plus each partition's restore point; savepoints stay
// until deleted.
//
// Usage:
//
//	st, err := checkpoint.OpenStorage(ctx, "file:///var/lib/eddy/checkpoints")
//	cat := checkpoint.NewCatalog(st, "iot-work")
//	coord, err := checkpoint.NewLocal(ctx, cat, checkpoint.LocalConfig{Job: "iot-work", Partitions: parts})
//	id, err := coord.Begin(ctx, checkpoint.KindCheckpoint, false)
//	key, err := coord.SnapshotKey(id, p) // each partition writes its snapshot there, then
//	m, err := coord.Ack(ctx, id, ack)    // m != nil: checkpoint id is complete
package checkpoint
