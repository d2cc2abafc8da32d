package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// kafkaTarget is the job in this process, unbounded, writing readings and
// late records to eddy's transactional Kafka sink (one transaction per
// partition and checkpoint: rows become visible to read_committed
// consumers when the checkpoint that covers them commits), checkpointing
// every interval to file:// storage under dir. Its output is watched by a
// read_committed sarama consumer.
type kafkaTarget struct {
	brokers    []string
	partitions int
	interval   time.Duration
	dir        string

	topics []string
	sink   sinks.Sink
	job    backgroundJob
}

func (t *kafkaTarget) start(ctx context.Context, topic string) error {
	// The job's name gives the sink's topics (<name>.readings, ...) and
	// transactional ids: one set per run.
	name := strings.ReplaceAll(topic, "iot-", "")
	t.topics = []string{name + "." + sinks.TableReadings, name + "." + sinks.TableLate}
	u := fmt.Sprintf("kafka://%s?prefix=%s&tables=%s,%s&create_topics=true&partitions=%d", t.brokers[0], name, sinks.TableReadings, sinks.TableLate, t.partitions)
	var err error
	if t.sink, err = sinks.Open(u, sinks.DefaultConfig(), nil); err != nil {
		return err
	}
	if err := t.sink.Open(ctx); err != nil {
		return err
	}
	cfg := actors.DefaultConfig()
	cfg.Name = name
	cfg.Source.Brokers = t.brokers
	cfg.Source.Topic = topic
	cfg.Checkpoint.Storage = "file://" + filepath.Join(t.dir, "checkpoints")
	cfg.Checkpoint.Interval = t.interval
	cfg.State.Dir = filepath.Join(t.dir, "state")
	job, err := actors.NewJob(cfg, t.sink, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	t.job.run(ctx, job)
	return nil
}

// watch consumes every partition of the sink's topics from the start with
// isolation read_committed (records of open or aborted transactions are
// not delivered) and reports every probe among them.
func (t *kafkaTarget) watch(ctx context.Context, ps *probes) {
	sc := kafkaconf.MustNew("eddy-bench-read-committed", "", kafkaconf.Security{})
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.MaxWaitTime = 10 * time.Millisecond
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	consumer, err := sarama.NewConsumer(t.brokers, sc)
	if err != nil {
		fmt.Println("bench: latency: read_committed consumer:", err)
		return
	}
	defer consumer.Close()
	var wg sync.WaitGroup
	for _, topic := range t.topics {
		parts, err := waitPartitions(ctx, consumer, topic)
		if err != nil {
			fmt.Println("bench: latency: read_committed consumer:", err)
			return
		}
		for _, p := range parts {
			pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
			if err != nil {
				fmt.Println("bench: latency: read_committed consumer:", err)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer pc.AsyncClose()
				var row struct {
					SourcePartition int64 `json:"source_partition"`
					SourceOffset    int64 `json:"source_offset"`
				}
				for {
					select {
					case <-ctx.Done():
						return
					case m, ok := <-pc.Messages():
						if !ok {
							return
						}
						if json.Unmarshal(m.Value, &row) == nil {
							ps.seen(map[[2]int64]bool{{row.SourcePartition, row.SourceOffset}: true}, time.Now())
						}
					}
				}
			}()
		}
	}
	wg.Wait()
}

// waitPartitions returns the partitions of topic once it exists (the sink
// creates it when it opens).
func waitPartitions(ctx context.Context, c sarama.Consumer, topic string) ([]int32, error) {
	for {
		ps, err := c.Partitions(topic)
		if err == nil && len(ps) > 0 {
			return ps, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *kafkaTarget) close() {
	t.job.stop()
	if t.sink != nil {
		t.sink.Close()
	}
}
