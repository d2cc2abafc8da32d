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
// Usage:
//
//	job, err := actors.NewJob(cfg, sink, devices, registry, logger)
//	summary, err := job.Run(ctx) // bounded: returns at the end; else on ctx cancel
package actors
