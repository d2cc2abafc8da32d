package actors

import (
	"fmt"

	"github.com/IBM/sarama"
)

// clampToLogStart moves t's start offset up to the log start of its source
// partition when the offset it was restored to lies below it — the records
// in between were deleted by the topic's retention (or DeleteRecords) while
// the partition was not running — since consuming from there fails with
// ErrOffsetOutOfRange on every restart (a crash loop). Like a Kafka
// consumer with auto.offset.reset=earliest, it resumes at the earliest
// offset that exists; the gap is logged at WARN and counted
// (eddy_source_offset_resets_total, eddy_source_skipped_records_total):
// those records are lost to the job, which no restart can change.
func (j *Job) clampToLogStart(client sarama.Client, t *partitionTask) error {
	oldest, err := client.GetOffset(j.cfg.Source.Topic, t.partition, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("actors: oldest offset of partition %d: %w", t.partition, err)
	}
	if t.start >= oldest {
		return nil
	}
	gap := oldest - t.start
	j.log.Warn("restore offset is below the log start of the source partition: the records in between were deleted by retention and are skipped",
		"partition", t.partition, "restore_offset", t.start, "log_start", oldest, "skipped_records", gap, "restored_from", t.restored)
	j.metrics.SourceOffsetResets.Inc()
	j.metrics.SourceSkippedRecords.Add(float64(gap))
	t.start = oldest
	t.nextOffset.Store(oldest)
	return nil
}
