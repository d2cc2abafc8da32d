// Package actors runs a job's device partitions as protoactor-go actors.
//
// Every device partition — one partition of the source Kafka topic — is one
// partition actor. It owns the operator chain of all devices in that
// partition (an operators.Partition), receives its source records in
// batches, and hands the emissions of each batch to the job's sink. Data of
// one partition never leaves its actor: no shuffle.
//
// The source reader of a partition (a sarama partition consumer, no consumer
// group: eddy owns placement) runs in its own goroutine, collects up to
// Config.BatchSize records or waits Config.BatchLinger, sends the batch to the
// actor and waits until the actor has processed it and written it to the sink
// before it sends the next one. That is the backpressure: a slow sink slows
// the reader, nothing piles up in a mailbox.
//
// Supervision: a panic in an operator or a sink is reported (log line and
// eddy_actor_restarts_total) and the actor is restarted by its supervisor.
// The batch in flight survives the restart: the new incarnation resumes at the
// record that panicked, so records before it are neither skipped nor
// re-emitted. A record that panics maxRecordAttempts times in a row goes to the
// dead-letter output with reason "operator_panic" and processing goes on.
//
// Bounded mode (Flink's bounded Kafka source): the job reads every partition
// up to the end offsets that exist when it starts, then emits a final
// watermark that fires every window and closes every work period, and Run
// returns.
//
// # Checkpoints and exactly-once
//
// With Config.Checkpoint.Storage set (a checkpoint.OpenStorage URL), every
// reading counts exactly once in every sink across kill -9 (DESIGN.md,
// "Checkpoints and exactly-once"):
//
//   - Keyed state lives in pebble (actors/state), one key prefix per
//     partition, behind an LRU cache of Config.State.CacheDevices decoded
//     device states per partition (operators.Partition.SetStore). Local state
//     is disposable: a run starts by restoring checkpoints, never from what a
//     previous process left on disk.
//   - Every Checkpoint.Interval the coordinator (checkpoint.CheckpointCoordinator
//     over the storage ports) numbers checkpoint n and sends a barrier to
//     every partition actor. Between two
//     batches the actor pre-commits its sinks (Flush for plain sinks,
//     PreCommit(n) for its PartitionTxn of transactional ones), writes the
//     changed device states and its metadata (source offset, bounded end,
//     watermark, counters) into pebble, takes a pebble snapshot and goes on
//     processing; a goroutine streams the snapshot into checkpoint storage
//     and acks. When every partition acked, the manifest is written — n is
//     complete — and transactional sinks commit n (each partition records a
//     commit marker). Only one checkpoint is in progress at a time; one that
//     fails or exceeds Checkpoint.Timeout is aborted and its files deleted.
//     The last Checkpoint.Retain complete checkpoints are kept.
//   - Recovery rule: on start, each partition restores the newest complete
//     checkpoint or savepoint it may restore from, and seeks its source to
//     the offset stored there; without one it starts at
//     Source.StartOffset. Without transactional sinks any complete
//     checkpoint qualifies (SQL sinks upsert, so the replay after it is
//     harmless). With them, only checkpoints whose transactions the
//     partition committed: those up to the last committed checkpoint that a
//     sinks.CommitTracker reports (the Kafka sink reads it from Kafka after
//     fencing the former writer), or, for sinks without it, those with the
//     partition's commit marker. A snapshot that is missing, truncated or
//     fails its checksum is logged and counted
//     (eddy_checkpoint_restore_fallbacks_total), and the partition falls back
//     to the previous checkpoint (with transactional sinks that re-writes
//     rows they already committed). A checkpoint taken with another window,
//     out-of-orderness, allowed lateness or max gap is refused
//     (ErrIncompatibleState).
//   - A bounded run ends with a final checkpoint (Flink's final checkpoint)
//     that commits what transactional sinks hold; a restart of a finished
//     bounded run restores it and has nothing left to do.
//   - Savepoints (Job.Savepoint; eddy savepoint) are checkpoints kept until
//     deleted. Config.Checkpoint.FromSavepoint starts a run from one: it is
//     copied into a new checkpoint first, so a crash before the run's first
//     checkpoint still restores the savepoint.
//   - Lag: each completed checkpoint's resume offsets are committed to the
//     Kafka consumer group Config.OffsetGroup (OffsetCommitter), for lag
//     tools only; recovery never reads them.
//
// Metrics: eddy_checkpoint_duration_seconds, _partition_duration_seconds,
// _sync_duration_seconds (the pause at the barrier), eddy_checkpoint_size_bytes,
// eddy_checkpoint_last_completed_id, eddy_checkpoints_total{kind,result},
// eddy_checkpoint_restore_duration_seconds, eddy_state_devices{partition},
// eddy_offset_commits_total{result} (Job.Run only).
// Latency: eddy_record_latency_seconds (Kafka record timestamp to the sink
// commit of the record's output; see Job.Flush) and
// eddy_event_time_lag_seconds{partition} (wall clock minus watermark, at
// each scrape). The job's metrics carry no job label themselves: register
// them through promreg.ForJob, which adds eddy_job.
//
// Single node only: the coordinator keeps its state in memory and in
// checkpoint storage; two runs of one job must not share a storage URL. The
// cluster runs the same coordinator on the Raft leader, over the Raft
// ports of package control. For fault-injection
// tests, TestCheckpointDelayEnv delays every partition's ack (a binary built
// with -tags eddy_failpoints only).
//
// One runtime: a Runtime runs partitions, each started, checkpointed and
// stopped on its own; Job.Run and a cluster node are two drivers of it.
// Start restores a partition from the first usable RestorePoint (a
// checkpoint ack or a handoff snapshot, verified by size and CRC-32C,
// older ones on corruption); a barrier snapshots it for a checkpoint, the
// ack goes to the driver's coordinator, a commit commits its
// transactional sinks; Handoff finishes the batch, snapshots, flushes and
// stops; Stop stops at once.
//
//   - Cluster runtime: NewRuntime runs a changing subset of a job's
//     partitions on one node of a cluster as their leases say (package
//     jobs drives it from the control plane): restore points from the Raft
//     records, newest offset first, under the lease epoch; Barrier for a
//     checkpoint numbered by the Raft leader, RuntimeHooks.Ack records the
//     ack, Commit once the leader says the checkpoint is complete.
//   - Local driver (local.go): Job.Run starts every partition of the job
//     on a Runtime of its own, with the restore points of the complete
//     local checkpoints and savepoints, newest first (after the adoption
//     of Checkpoint.FromSavepoint); its coordinator loop numbers
//     checkpoints and savepoints, sends their barriers through the
//     runtime, takes the acks into its CheckpointCoordinator, commits
//     through the runtime, commits offsets and applies retention. A
//     partition failure fails the run; at the bounded end of every
//     partition it takes the final checkpoint; it ends with the runtime's
//     graceful stop (the readers stop, the actors finish, every buffered
//     row is flushed), where a cluster's Stop drops them. Its partitions
//     write epoch 0 to the SQL sinks and open their transactional writers
//     under the run's start time (Unix ms).
//
// Sink fencing: a partition writes its rows to the sinks that fence by epoch
// (sinks.EpochWriter: the SQL sinks) under its lease epoch, so the store
// never lets a former owner's late rows replace the current owner's; a
// local Job writes epoch 0. On a cluster, Stop, and a partition that
// fails, drop what the partition left in those sinks' buffers (its next
// owner writes it again from its restore point), and
// RuntimeHooks.LeaseValid is asked by the sinks right before each write
// transaction: rows of a partition whose lease is no longer valid are
// dropped, never written. A sink whose buffer is full blocks the
// partition's writes (backpressure): it reads no records until the sink
// frees space; eddy_partition_backpressured shows it.
//
// Source.EndOffsets bounds a job at given offsets, so that every
// partition of a bounded cluster job ends at the same input whenever and
// wherever it starts.
//
// Usage:
//
//	job, err := actors.NewJob(cfg, sink, devices, registry, logger)
//	summary, err := job.Run(ctx) // bounded: returns at the end; else on ctx cancel
//	m, err := job.Savepoint(ctx) // while Run runs, with checkpoints on
package actors
