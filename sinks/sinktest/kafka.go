package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/internal/committed"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// ReadCommitted reads every committed row of topics (default: the default
// topics of the Kafka sink, iot-work.window_aggregates and
// iot-work.work_periods) back into a sinks.Batch, as a read_committed consumer
// sees them: rows of aborted or still open transactions are left out. Each
// partition is read from its first offset to its last stable offset at the
// time of the call (an open transaction holds that offset back: rows
// committed after its first record are not read). Duplicates are kept —
// each message is one row — and each table is ordered by its key like
// ReadAll (duplicates adjacent, in offset order). Times come back as Unix
// ms, null numbers as NaN, payloads as written (possibly cut). The table of
// a message is its "table" field, whatever the topic. It loads everything
// into memory: for tests and comparisons against a reference. Kafka
// protocol kafkaconf.DefaultVersion is spoken; ctx is checked between
// fetches.
func ReadCommitted(ctx context.Context, brokers []string, topics ...string) (*sinks.Batch, error) {
	return ReadCommittedWith(ctx, kafkaconf.Security{}, brokers, topics...)
}

// ReadCommittedWith is ReadCommitted over connections secured by sec (TLS,
// SASL).
func ReadCommittedWith(ctx context.Context, sec kafkaconf.Security, brokers []string, topics ...string) (*sinks.Batch, error) {
	if len(topics) == 0 {
		topics = sinks.DefaultKafkaConfig().Topics()
	}
	sc, err := kafkaconf.New("eddy-read-committed", "", sec)
	if err != nil {
		return nil, fmt.Errorf("sinktest: read committed: %w", err)
	}
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Net.DialTimeout = 10 * time.Second
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("sinktest: read committed: %w", err)
	}
	defer client.Close()
	out := &sinks.Batch{}
	for _, topic := range topics {
		parts, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("sinktest: read committed: topic %q: %w", topic, err)
		}
		for _, p := range parts {
			err := readCommittedPartition(ctx, client, topic, p, func(value []byte) error {
				return decodeRow(value, out)
			})
			if err != nil {
				return nil, fmt.Errorf("sinktest: read committed: %s/%d: %w", topic, p, err)
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
	return committed.Fetch(ctx, client, topic, partition, from, -1, func(_ int64, _, value []byte) error { return fn(value) })
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
func decodeRow(value []byte, out *sinks.Batch) error {
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
	case sinks.TableReadings:
		out.Readings = append(out.Readings, operators.Reading{
			Partition: r.SourcePartition, Offset: r.SourceOffset, PboxID: r.PboxID, EventTime: tm(r.EventTime),
			Metric: f(r.Metric), Latitude: f(r.Latitude), Longitude: f(r.Longitude), Company: r.Company, Site: r.Site,
		})
	case sinks.TableWindows:
		out.Windows = append(out.Windows, operators.WindowAggregate{
			PboxID: r.PboxID, Start: tm(r.WindowStart), End: tm(r.WindowEnd), Count: r.Count,
			Sum: f(r.Sum), Min: f(r.Min), Max: f(r.Max), Avg: f(r.Avg), Latitude: f(r.Latitude), Longitude: f(r.Longitude),
			Company: r.Company, Site: r.Site,
		})
	case sinks.TableWorkPeriods:
		out.WorkPeriods = append(out.WorkPeriods, operators.WorkPeriod{
			PboxID: r.PboxID, Start: tm(r.PeriodStart), End: tm(r.PeriodEnd), Samples: r.Samples,
			AvgMetric: f(r.AvgMetric), MaxMetric: f(r.MaxMetric), Company: r.Company, Site: r.Site,
		})
	case sinks.TableLate:
		out.Late = append(out.Late, operators.LateRecord{
			Partition: r.SourcePartition, Offset: r.SourceOffset, PboxID: r.PboxID, EventTime: tm(r.EventTime),
			Watermark: tm(r.Watermark), Reason: r.Reason, Payload: payload,
		})
	case sinks.TableDeadLetters:
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
func sortBatch(b *sinks.Batch) {
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
