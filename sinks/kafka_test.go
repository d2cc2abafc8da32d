package sinks

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/operators"
)

var kafkaSeed = flag.Uint64("kafka-seed", 0, "seed of the randomised Kafka sink tests (0: time-based)")

func init() {
	if os.Getenv("SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags)
	}
}

// kafkaBroker starts an in-process kfake broker with the given partition
// count for auto-created topics.
func kafkaBroker(t testing.TB, partitions int) *devbroker.Broker {
	t.Helper()
	b, err := devbroker.Start(devbroker.Config{Listen: "127.0.0.1:0", Partitions: partitions})
	if err != nil {
		t.Fatalf("devbroker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// allTables writes all five tables to topics named after the test.
func allTables(b *devbroker.Broker, prefix string) KafkaConfig {
	return KafkaConfig{
		Brokers:          b.Addrs(),
		ReadingsTopic:    prefix + ".readings",
		WindowsTopic:     prefix + ".windows",
		WorkPeriodsTopic: prefix + ".work",
		LateTopic:        prefix + ".late",
		DeadLettersTopic: prefix + ".dead",
	}
}

func openKafka(t testing.TB, cfg KafkaConfig, reg prometheus.Registerer) *Kafka {
	t.Helper()
	k, err := NewKafka(cfg, reg)
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := k.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func ctx20(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openTxn(t testing.TB, k *Kafka, job string, partition int32, epoch int64) *kafkaTxn {
	t.Helper()
	tx, err := k.Txn(ctx20(t), job, partition, epoch)
	if err != nil {
		t.Fatalf("Txn(%s, %d, %d): %v", job, partition, epoch, err)
	}
	t.Cleanup(func() { tx.Close() })
	return tx.(*kafkaTxn)
}

func readCommitted(t testing.TB, k *Kafka) *Batch {
	t.Helper()
	b, err := ReadCommitted(ctx20(t), k.cfg.Brokers, k.cfg.Topics()...)
	if err != nil {
		t.Fatalf("ReadCommitted: %v", err)
	}
	return b
}

// windows returns n window aggregates of device dev, one per minute from
// minute first; Count carries tag so tests can tell writes apart.
func windows(dev string, first, n int, tag int64) []operators.WindowAggregate {
	var out []operators.WindowAggregate
	for i := first; i < first+n; i++ {
		start := ms("2019-03-01 00:00:00.000") + int64(i)*60_000
		out = append(out, operators.WindowAggregate{PboxID: dev, Start: start, End: start + 60_000, Count: tag, Sum: float64(i), Min: 1, Max: 2, Avg: 1.5, Latitude: nan, Longitude: nan})
	}
	return out
}

func mustTxn(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestKafkaTxnCommitVisibleOnce(t *testing.T) {
	br := kafkaBroker(t, 3)
	k := openKafka(t, allTables(br, "commit"), nil)
	tx := openTxn(t, k, "job", 0, 1)
	ctx := ctx20(t)
	want := sampleBatch()
	mustTxn(t, "Write", tx.Write(ctx, want))
	mustTxn(t, "PreCommit", tx.PreCommit(ctx, 1))
	if got := readCommitted(t, k); got.Len() != 0 {
		t.Fatalf("before Commit a read_committed reader sees %d rows, want 0", got.Len())
	}
	mustTxn(t, "Commit", tx.Commit(ctx, 1))
	got := readCommitted(t, k)
	if d := diffBatch(sorted(want), got); d != "" {
		t.Fatalf("committed rows differ:\n%s", d)
	}
}

var _ = []any{errors.New, fmt.Sprint, rand.N[int], slices.Sort[[]int], strings.Cut, sync.Mutex{}}
