package actors

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// memSink keeps every row it is given; a test fake with a fault control
// (failWrite) for the sink side of the actor.
type memSink struct {
	mu        sync.Mutex
	out       operators.Output
	failWrite error
}

var _ sinks.Sink = (*memSink)(nil)

func (s *memSink) Open(context.Context) error { return nil }
func (s *memSink) Write(_ context.Context, b *sinks.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWrite != nil {
		return s.failWrite
	}
	s.out.Readings = append(s.out.Readings, b.Readings...)
	s.out.Windows = append(s.out.Windows, b.Windows...)
	s.out.WorkPeriods = append(s.out.WorkPeriods, b.WorkPeriods...)
	s.out.Late = append(s.out.Late, b.Late...)
	for _, d := range b.DeadLetters {
		d.Payload = append([]byte(nil), d.Payload...)
		s.out.DeadLetters = append(s.out.DeadLetters, d)
	}
	return nil
}
func (s *memSink) Flush(context.Context) error { return nil }
func (s *memSink) Close() error                { return nil }

// startBroker starts an in-process Kafka-protocol broker with topic
// iot-topic of the given partition count and produces msgs (key, value)
// into it with sarama's hash partitioner.
func startBroker(t *testing.T, partitions int, msgs [][2]string) []string {
	t.Helper()
	b, err := devbroker.Start(devbroker.Config{Listen: "127.0.0.1:0", Partitions: partitions, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	p, err := sarama.NewSyncProducer(b.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	batch := make([]*sarama.ProducerMessage, 0, len(msgs))
	for _, m := range msgs {
		batch = append(batch, &sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder(m[0]), Value: sarama.StringEncoder(m[1])})
	}
	if err := p.SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	return b.Addrs()
}

// readingsFor returns n seed-schema records of each device, 150 s apart,
// with a metric that crosses the threshold 50 now and then.
func readingsFor(devices []string, n int) [][2]string {
	var msgs [][2]string
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		for d, dev := range devices {
			ts := base.Add(time.Duration(i)*150*time.Second + time.Duration(d)*time.Second)
			metric := float64((i*7+d*13)%100) + 0.5
			msgs = append(msgs, [2]string{dev, fmt.Sprintf(`{"event_time":%q,"metric":%g,"pboxid":%q,"latitude":57.1,"longitude":-2.1}`,
				ts.Format("2006-01-02 15:04:05"), metric, dev)})
		}
	}
	return msgs
}

func testConfig(brokers []string) Config {
	c := DefaultConfig()
	c.Source.Brokers = brokers
	c.Source.Bounded = true
	c.BatchSize = 64 // several batches per partition
	return c
}

func runJob(t *testing.T, cfg Config, devices operators.DeviceLookup, sink sinks.Sink) Summary {
	t.Helper()
	return runJobOn(t, cfg, devices, sink, nil)
}

// runJobOn is runJob with the job's metrics registered on reg.
func runJobOn(t *testing.T, cfg Config, devices operators.DeviceLookup, sink sinks.Sink, reg prometheus.Registerer) Summary {
	t.Helper()
	job, err := NewJob(cfg, sink, devices, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestBoundedJobCountsEveryRecord(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c", "d", "e"}, 200)
	msgs = append(msgs, [2]string{"a", `{"pboxid":"a","metric":1}`}, [2]string{"b", `not json`})
	brokers := startBroker(t, 4, msgs)
	sink := &memSink{}
	sum := runJob(t, testConfig(brokers), nil, sink)

	if sum.Received != int64(len(msgs)) {
		t.Fatalf("received %d, want %d", sum.Received, len(msgs))
	}
	if sum.Valid != 1000 || sum.DeadLetters != 2 || sum.Late != 0 {
		t.Fatalf("valid %d late %d dead letters %d, want 1000 0 2", sum.Valid, sum.Late, sum.DeadLetters)
	}
	if len(sink.out.Readings) != 1000 || len(sink.out.DeadLetters) != 2 {
		t.Fatalf("sink got %d readings %d dead letters", len(sink.out.Readings), len(sink.out.DeadLetters))
	}
	// Every device has 200 readings 150 s apart spanning 500 min: one
	// 1-min window per reading, all fired by the final watermark.
	if got := len(sink.out.Windows); got != 1000 || sum.WindowsFired != 1000 {
		t.Fatalf("windows: sink %d, summary %d, want 1000", got, sum.WindowsFired)
	}
	if int64(len(sink.out.WorkPeriods)) != sum.WorkPeriods || sum.WorkPeriods == 0 {
		t.Fatalf("work periods: sink %d, summary %d", len(sink.out.WorkPeriods), sum.WorkPeriods)
	}
}

// panickyDevices panics on the first lookup of each device in panicOn, or on
// every lookup when always is set: fault injection by wrapping.
type panickyDevices struct {
	panicOn map[string]bool
	always  bool
	mu      sync.Mutex
	seen    map[string]bool
	panics  atomic.Int64
}

func (p *panickyDevices) Device(id string) (operators.DeviceInfo, bool) {
	if p.panicOn[id] {
		p.mu.Lock()
		first := !p.seen[id]
		p.seen[id] = true
		p.mu.Unlock()
		if first || p.always {
			p.panics.Add(1)
			panic("injected fault for device " + id)
		}
	}
	return operators.DeviceInfo{Company: "acme", Site: "north"}, true
}

func TestPanickingOperatorIsRestartedWithoutLossOrDuplicates(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c", "d", "e", "f"}, 150)
	brokers := startBroker(t, 3, msgs)

	want := &memSink{}
	runJob(t, testConfig(brokers), &panickyDevices{}, want)

	got := &memSink{}
	faults := &panickyDevices{panicOn: map[string]bool{"b": true, "e": true}, seen: map[string]bool{}}
	sum := runJob(t, testConfig(brokers), faults, got)
	if faults.panics.Load() != 2 {
		t.Fatalf("injected %d panics, want 2", faults.panics.Load())
	}
	if sum.DeadLetters != 0 || sum.Received != int64(len(msgs)) {
		t.Fatalf("summary %+v", sum)
	}
	assertSameRows(t, want, got)
}

func TestRecordThatAlwaysPanicsBecomesDeadLetter(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c"}, 20)
	brokers := startBroker(t, 2, msgs)
	faults := &panickyDevices{panicOn: map[string]bool{"b": true}, always: true, seen: map[string]bool{}}
	sink := &memSink{}
	sum := runJob(t, testConfig(brokers), faults, sink)
	// The first record of b panics maxRecordAttempts times and is dead
	// lettered; so is every later one.
	if sum.Received != int64(len(msgs)) || sum.DeadLetters != 20 || sum.Valid != 40 {
		t.Fatalf("summary %+v, want 60 received, 20 dead letters, 40 valid", sum)
	}
	for _, d := range sink.out.DeadLetters {
		if operators.ReasonLabel(d.Reason) != operators.ReasonOperatorPanic {
			t.Fatalf("dead letter reason %q", d.Reason)
		}
	}
}

func TestSinkErrorFailsTheRun(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a"}, 5))
	job, err := NewJob(testConfig(brokers), &memSink{failWrite: fmt.Errorf("disk full")}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background()); err == nil {
		t.Fatal("Run returned nil, want the sink error")
	}
}

func TestMissingTopic(t *testing.T) {
	brokers := startBroker(t, 1, nil)
	cfg := testConfig(brokers)
	cfg.Source.Topic = "no-such-topic"
	job, err := NewJob(cfg, &memSink{}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background()); err == nil {
		t.Fatal("Run on a missing topic returned nil")
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil {
		t.Fatal("config without brokers validated")
	}
	c.Source.Brokers = []string{"127.0.0.1:9092"}
	c.BatchSize = 0
	c.Source.StartOffset = "middle"
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{"batch size must be > 0", `start offset must be "earliest" or "latest", got "middle"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func assertSameRows(t *testing.T, want, got *memSink) {
	t.Helper()
	key := func(r operators.Reading) string { return fmt.Sprintf("%d/%d", r.Partition, r.Offset) }
	wr, gr := map[string]operators.Reading{}, map[string]int{}
	for _, r := range want.out.Readings {
		wr[key(r)] = r
	}
	for _, r := range got.out.Readings {
		gr[key(r)]++
		if gr[key(r)] > 1 {
			t.Fatalf("reading %s emitted twice", key(r))
		}
	}
	if len(gr) != len(wr) {
		t.Fatalf("%d readings, want %d", len(gr), len(wr))
	}
	for k := range wr {
		if gr[k] != 1 {
			t.Fatalf("reading %s missing", k)
		}
	}
	norm := func(ws []operators.WindowAggregate) []string {
		var s []string
		for _, w := range ws {
			s = append(s, fmt.Sprintf("%+v", w))
		}
		sort.Strings(s)
		return s
	}
	if a, b := norm(want.out.Windows), norm(got.out.Windows); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("windows differ: %d vs %d rows", len(a), len(b))
	}
	normP := func(ps []operators.WorkPeriod) []string {
		var s []string
		for _, p := range ps {
			s = append(s, fmt.Sprintf("%+v", p))
		}
		sort.Strings(s)
		return s
	}
	if a, b := normP(want.out.WorkPeriods), normP(got.out.WorkPeriods); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("work periods differ: %d vs %d rows", len(a), len(b))
	}
}
