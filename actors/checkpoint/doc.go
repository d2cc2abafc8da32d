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
// # Protocol: one coordinator, two sets of ports
//
// CheckpointCoordinator is the checkpoint protocol of both modes (Flink's
// CheckpointCoordinator): pacing (a periodic checkpoint Interval after the
// start of the previous one, at once after an ack timeout), one checkpoint
// in progress at a time (savepoints and the final checkpoint of a bounded
// run are triggered on demand, after it), the ack timeout that aborts it,
// completion when every partition acked, retention (Subsume, see
// Retention below) and the "what restores" query (Restorable). Its state lives behind two ports:
//
//   - CheckpointIDCounter numbers checkpoints and savepoints (one
//     sequence, only growing, never reused by a later run of the job);
//   - CompletedCheckpointStore holds the complete ones.
//
// eddy run uses the storage ports of this package: StorageIDCounter (the
// largest id in checkpoint storage, raised by what transactional sinks
// report committed) and StorageCheckpointStore (a manifest per complete
// checkpoint, Catalog); its partitions ack in process (Trigger, Ack). A
// cluster uses the Raft ports of package control (control.CheckpointIDs,
// control.CheckpointStore): the FSM keeps every job's id counter across
// its deletion and resubmission, holds the pending checkpoint and its acks
// as records — the FSM judges each ack's lease epoch and completes the
// checkpoint in the apply of the last one — and the Raft leader drives one
// coordinator per job (package cluster/jobs), feeding it the newest record
// (Observe) and proposing what it says is due. Package checkpointtest is
// the one test table both sets of ports pass.
//
// # Retention
//
// Retention is one pure function of both modes, Subsumed: it keeps the
// newest Retain complete checkpoints, the newest Retain incomplete or
// aborted ones after the newest complete checkpoint or savepoint (the one in
// progress among them), every savepoint that is not aborted, and each
// partition's restore point where the mode knows it (eddy run with
// transactional sinks: the newest checkpoint whose commit the partition
// made). eddy run applies it to checkpoint storage after each completion
// (Catalog.Retain); the FSM applies it to its records in the apply of every
// CheckpointStart and of the ack that completes a checkpoint, on every node.
//
// Recovery rule: each partition restores the newest complete checkpoint or
// savepoint it may restore from (all of them without transactional sinks;
// with them, those whose commit the partition made: Catalog.Committed in
// eddy run, the sink's own record of its last commit otherwise) whose
// snapshot reads back intact, and seeks its source to the offset stored
// there.
//
// Usage (eddy run; actors/checkpointing.go is the driver):
//
//	st, err := checkpoint.OpenStorage(ctx, "file:///var/lib/eddy/checkpoints")
//	cat := checkpoint.NewCatalog(st, "iot-work")
//	ids, err := checkpoint.NewStorageIDCounter(ctx, cat)
//	coord, err := checkpoint.NewCheckpointCoordinator(checkpoint.CoordinatorConfig{
//		Job: "iot-work", Partitions: parts, Interval: 5 * time.Second, AckTimeout: time.Minute,
//	}, ids, checkpoint.NewStorageCheckpointStore(cat, parts), time.Now())
//	if coord.Due(time.Now()).Trigger {
//		id, err := coord.Trigger(ctx, checkpoint.KindCheckpoint, false, time.Now())
//		key := cat.SnapshotKey(checkpoint.KindCheckpoint, id, p) // partition p writes its snapshot there, then
//		m, err := coord.Ack(ctx, id, ack, time.Now())            // m != nil: checkpoint id is complete
//	}
package checkpoint
