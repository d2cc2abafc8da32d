package sinks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/sinks/internal/committed"
)

// lastCommittedCheckpoint returns the highest checkpoint of the committed
// checkpoint records of transactional id in partition of topic, reading
// backwards from the high watermark in growing windows; it first waits for
// the transactions open in that partition to finish. ok is false when
// there is none.
func lastCommittedCheckpoint(ctx context.Context, client sarama.Client, topic string, partition int32, id string) (checkpoint uint64, ok bool, err error) {
	hwm, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return 0, false, err
	}
	start, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return 0, false, err
	}
	for w := int64(64); ; w *= 4 {
		from := max(start, hwm-w)
		err := committed.Fetch(ctx, client, topic, partition, from, hwm, func(_ int64, key, value []byte) error {
			if string(key) != id {
				return nil
			}
			var rec struct {
				Checkpoint *uint64 `json:"checkpoint"`
			}
			if err := json.Unmarshal(value, &rec); err != nil || rec.Checkpoint == nil {
				return fmt.Errorf("bad checkpoint record %q", value)
			}
			if !ok || *rec.Checkpoint > checkpoint {
				checkpoint, ok = *rec.Checkpoint, true
			}
			return nil
		})
		if err != nil || ok || from == start {
			return checkpoint, ok, err
		}
	}
}
