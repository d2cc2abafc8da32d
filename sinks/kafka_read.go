package sinks

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// ReadCommitted reads every committed row of topics (default: the default
// topics of the Kafka sink, iot-work.window_aggregates and
// iot-work.work_periods) back into a Batch, as a read_committed consumer
// sees them: rows of aborted or still open transactions are left out. Each
// partition is read from its first offset to its last stable offset at the
// time of the call (an open transaction holds that offset back: rows
// committed after its first record are not read). Duplicates are kept —
// each message is one row — and each table is ordered by its key like
// ReadAll (duplicates adjacent, in offset order). Times come back as Unix
// ms, null numbers as NaN, payloads as written (possibly cut). The table of
// a message is its "table" field, whatever the topic. It loads everything
// into memory: for tests and comparisons against a reference. Kafka
// protocol 2.8.0 is spoken; ctx is checked between fetches.
func ReadCommitted(ctx context.Context, brokers []string, topics ...string) (*Batch, error) {
	return ReadCommittedWith(ctx, kafkaconf.Security{}, brokers, topics...)
}

// ReadCommittedWith is ReadCommitted over connections secured by sec (TLS,
// SASL).
func ReadCommittedWith(ctx context.Context, sec kafkaconf.Security, brokers []string, topics ...string) (*Batch, error) {
	if len(topics) == 0 {
		topics = DefaultKafkaConfig().Topics()
	}
	sc, err := kafkaconf.New("eddy-read-committed", "", sec)
	if err != nil {
		return nil, fmt.Errorf("sinks: read committed: %w", err)
	}
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Net.DialTimeout = 10 * time.Second
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("sinks: read committed: %w", err)
	}
	defer client.Close()
	out := &Batch{}
	for _, topic := range topics {
		parts, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("sinks: read committed: topic %q: %w", topic, err)
		}
		for _, p := range parts {
			err := readCommittedPartition(ctx, client, topic, p, func(value []byte) error {
				return decodeRow(value, out)
			})
			if err != nil {
				return nil, fmt.Errorf("sinks: read committed: %s/%d: %w", topic, p, err)
			}
		}
	}
	sortBatch(out)
	return out, nil
}

// readCommittedPartition hands fn the value of every committed data record
// of one partition, from its log start offset to the last stable offset of
// the first fetch.
func readCommittedPartition(ctx context.Context, client sarama.Client, topic string, partition int32, fn func([]byte) error) error {
	from, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return err
	}
	return fetchCommitted(ctx, client, topic, partition, from, -1, func(_ int64, _, value []byte) error { return fn(value) })
}

// fetchCommitted fetches [from, end) of a partition with isolation
// read_committed and hands fn every committed data record. With end < 0,
// end is the last stable offset of the first fetch; otherwise it waits,
// until ctx ends, for the last stable offset to reach end (open
// transactions to finish). Aborted records are dropped the way Kafka's
// consumers do it: a transactional batch of a producer is dropped from the
// first offset of an aborted transaction the fetch response lists for it
// until that producer's abort marker.
func fetchCommitted(ctx context.Context, client sarama.Client, topic string, partition int32, from, end int64, fn func(offset int64, key, value []byte) error) error {
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
		err := fetchCommitted(ctx, client, topic, partition, from, hwm, func(_ int64, key, value []byte) error {
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

// jsonRow is the union of the JSON row fields of all tables.
type jsonRow struct {
	Table           string   `json:"table"`
	SourcePartition int32    `json:"source_partition"`
	SourceOffset    int64    `json:"source_offset"`
	PboxID          string   `json:"pboxid"`
	EventTime       string   `json:"event_time"`
	Metric          *float64 `json:"metric"`
	Latitude        *float64 `json:"latitude"`
	Longitude       *float64 `json:"longitude"`
	Company         string   `json:"company"`
	Site            string   `json:"site"`
	WindowStart     string   `json:"window_start"`
	WindowEnd       string   `json:"window_end"`
	Count           int64    `json:"count"`
	Sum             *float64 `json:"sum"`
	Min             *float64 `json:"min"`
	Max             *float64 `json:"max"`
	Avg             *float64 `json:"avg"`
	PeriodStart     string   `json:"period_start"`
	PeriodEnd       string   `json:"period_end"`
	Samples         int64    `json:"samples"`
	AvgMetric       *float64 `json:"avg_metric"`
	MaxMetric       *float64 `json:"max_metric"`
	Watermark       string   `json:"watermark"`
	Reason          string   `json:"reason"`
	Payload         *string  `json:"payload"`
	PayloadBase64   []byte   `json:"payload_base64"`
}

// decodeRow parses one JSON row (the NDJSON format) and appends it to out.
func decodeRow(value []byte, out *Batch) error {
	var r jsonRow
	if err := json.Unmarshal(value, &r); err != nil {
		return err
	}
	var terr error
	tm := func(s string) int64 {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil && terr == nil {
			terr = err
		}
		return t.UnixMilli()
	}
	f := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	payload := r.PayloadBase64
	if r.Payload != nil {
		payload = []byte(*r.Payload)
	}
	switch r.Table {
	case TableReadings:
		out.Readings = append(out.Readings, operators.Reading{
			Partition: r.SourcePartition, Offset: r.SourceOffset, PboxID: r.PboxID, EventTime: tm(r.EventTime),
			Metric: f(r.Metric), Latitude: f(r.Latitude), Longitude: f(r.Longitude), Company: r.Company, Site: r.Site,
		})
	case TableWindows:
		out.Windows = append(out.Windows, operators.WindowAggregate{
			PboxID: r.PboxID, Start: tm(r.WindowStart), End: tm(r.WindowEnd), Count: r.Count,
			Sum: f(r.Sum), Min: f(r.Min), Max: f(r.Max), Avg: f(r.Avg), Latitude: f(r.Latitude), Longitude: f(r.Longitude),
			Company: r.Company, Site: r.Site,
		})
	case TableWorkPeriods:
		out.WorkPeriods = append(out.WorkPeriods, operators.WorkPeriod{
			PboxID: r.PboxID, Start: tm(r.PeriodStart), End: tm(r.PeriodEnd), Samples: r.Samples,
			AvgMetric: f(r.AvgMetric), MaxMetric: f(r.MaxMetric), Company: r.Company, Site: r.Site,
		})
	case TableLate:
		out.Late = append(out.Late, operators.LateRecord{
			Partition: r.SourcePartition, Offset: r.SourceOffset, PboxID: r.PboxID, EventTime: tm(r.EventTime),
			Watermark: tm(r.Watermark), Reason: r.Reason, Payload: payload,
		})
	case TableDeadLetters:
		out.DeadLetters = append(out.DeadLetters, operators.DeadLetter{
			Partition: r.SourcePartition, Offset: r.SourceOffset, Reason: r.Reason, Payload: payload,
		})
	default:
		return fmt.Errorf("row of unknown table %q", r.Table)
	}
	if terr != nil {
		return fmt.Errorf("%s row: %w", r.Table, terr)
	}
	return nil
}

// sortBatch orders each table of b by its key (stable), like ReadAll.
func sortBatch(b *Batch) {
	src := func(p1 int32, o1 int64, p2 int32, o2 int64) int {
		if p1 != p2 {
			return int(p1) - int(p2)
		}
		switch {
		case o1 < o2:
			return -1
		case o1 > o2:
			return 1
		}
		return 0
	}
	dev := func(d1 string, t1 int64, d2 string, t2 int64) int {
		if c := strings.Compare(d1, d2); c != 0 {
			return c
		}
		return src(0, t1, 0, t2)
	}
	slices.SortStableFunc(b.Readings, func(x, y operators.Reading) int { return src(x.Partition, x.Offset, y.Partition, y.Offset) })
	slices.SortStableFunc(b.Windows, func(x, y operators.WindowAggregate) int { return dev(x.PboxID, x.Start, y.PboxID, y.Start) })
	slices.SortStableFunc(b.WorkPeriods, func(x, y operators.WorkPeriod) int { return dev(x.PboxID, x.Start, y.PboxID, y.Start) })
	slices.SortStableFunc(b.Late, func(x, y operators.LateRecord) int { return src(x.Partition, x.Offset, y.Partition, y.Offset) })
	slices.SortStableFunc(b.DeadLetters, func(x, y operators.DeadLetter) int { return src(x.Partition, x.Offset, y.Partition, y.Offset) })
}
