// Package committed fetches the committed records of a Kafka partition,
// as a consumer with isolation read_committed sees them: the records of
// aborted transactions are dropped, those of open transactions are not
// reached (a fetch ends at the last stable offset). The Kafka sink reads
// its checkpoint records back with it, sinks/sinktest the rows of its
// topics.
package committed

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// Fetch fetches the offsets [from, end) of a partition with isolation
// read_committed and hands fn every committed data record, in offset
// order. With end < 0, end is the last stable offset of the first fetch;
// otherwise it waits, until ctx ends, for the last stable offset to reach
// end (open transactions to finish). Aborted records are dropped the way
// Kafka's consumers do it: a transactional batch of a producer is dropped
// from the first offset of an aborted transaction the fetch response lists
// for it until that producer's abort marker. It returns ctx's error, the
// broker's, fn's (wrapped, with the offset), or, with end < 0, an error
// after 200 fetches in a row (about 2 s) that brought no complete batch.
func Fetch(ctx context.Context, client sarama.Client, topic string, partition int32, from, end int64, fn func(offset int64, key, value []byte) error) error {
	offset := from
	fetchSize := int32(1 << 20)
	aborted := map[int64]bool{} // producer ids inside an aborted transaction
	waitStable := end >= 0
	for stalls := 0; ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if end >= 0 && offset >= end {
			return nil
		}
		broker, err := client.Leader(topic, partition)
		if err != nil {
			return err
		}
		req := &sarama.FetchRequest{Version: 11, Isolation: sarama.ReadCommitted, MinBytes: 1, MaxWaitTime: 50, MaxBytes: 64 << 20}
		req.AddBlock(topic, partition, offset, fetchSize, -1)
		resp, err := broker.Fetch(req)
		if err != nil {
			return err
		}
		block := resp.GetBlock(topic, partition)
		if block == nil {
			return errors.New("fetch response without the partition")
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return block.Err
		}
		if end < 0 {
			end = block.LastStableOffset
			if offset >= end {
				return nil
			}
		}
		txns := slices.Clone(block.AbortedTransactions)
		slices.SortFunc(txns, func(a, b *sarama.AbortedTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
		before := offset
		for _, recs := range block.RecordsSet {
			rb := recs.RecordBatch
			if rb == nil {
				return errors.New("legacy message set (magic < 2): not written by this sink")
			}
			if rb.PartialTrailingRecord {
				break
			}
			for len(txns) > 0 && txns[0].FirstOffset <= rb.LastOffset() {
				aborted[txns[0].ProducerID] = true
				txns = txns[1:]
			}
			next := rb.LastOffset() + 1
			if next <= offset {
				continue
			}
			switch {
			case rb.Control:
				if len(rb.Records) > 0 && len(rb.Records[0].Key) >= 4 && binary.BigEndian.Uint16(rb.Records[0].Key[2:4]) == 0 { // ABORT marker
					delete(aborted, rb.ProducerID)
				}
			case rb.IsTransactional && aborted[rb.ProducerID]:
			default:
				for _, r := range rb.Records {
					if o := rb.FirstOffset + r.OffsetDelta; o >= offset && o < end {
						if err := fn(o, r.Key, r.Value); err != nil {
							return fmt.Errorf("offset %d: %w", o, err)
						}
					}
				}
			}
			offset = next
			if offset >= end {
				return nil
			}
		}
		if offset == before {
			// Nothing complete came back: a batch larger than fetchSize,
			// or (waitStable) an open transaction before end.
			if fetchSize < 64<<20 && block.LastStableOffset > offset {
				fetchSize *= 2
			}
			if stalls++; stalls > 200 && !waitStable {
				return fmt.Errorf("no progress at offset %d (last stable offset %d)", offset, end)
			}
			time.Sleep(10 * time.Millisecond)
		} else {
			stalls = 0
		}
	}
}
