package actors

import (
	"log/slog"
	"testing"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-iot/eddy/actors/devbroker"
)

func counterOf(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestClampToLogStart: a restore offset below the log start of the source
// partition (records deleted by retention) moves up to the log start, with
// the gap counted; one at or above it stays.
func TestClampToLogStart(t *testing.T) {
	b, err := devbroker.Start(devbroker.Config{Partitions: 1, Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient(b.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "t", Partition: 0, Value: sarama.StringEncoder("x")}); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteRecords("t", map[int32]int64{0: 6}); err != nil {
		t.Fatal(err)
	}
	j := &Job{cfg: Config{Source: SourceConfig{Topic: "t"}}, log: slog.New(slog.DiscardHandler), metrics: NewMetrics(nil)}
	for _, c := range []struct{ start, want int64 }{{2, 6}, {6, 6}, {8, 8}} {
		task := &partitionTask{job: j, partition: 0, start: c.start}
		task.nextOffset.Store(c.start)
		if err := j.clampToLogStart(client, task); err != nil {
			t.Fatal(err)
		}
		if task.start != c.want || task.nextOffset.Load() != c.want {
			t.Errorf("restore offset %d: start %d next %d, want %d", c.start, task.start, task.nextOffset.Load(), c.want)
		}
	}
	if n := counterOf(t, j.metrics.SourceOffsetResets); n != 1 {
		t.Errorf("eddy_source_offset_resets_total = %v, want 1", n)
	}
	if n := counterOf(t, j.metrics.SourceSkippedRecords); n != 4 {
		t.Errorf("eddy_source_skipped_records_total = %v, want 4 (offsets 2..5)", n)
	}
}
