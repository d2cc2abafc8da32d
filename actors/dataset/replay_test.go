package dataset

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

func startBroker(t testing.TB, partitions int, topics ...string) *devbroker.Broker {
	t.Helper()
	b, err := devbroker.Start(devbroker.Config{Partitions: partitions, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// hashPartition is sarama's default partitioner, written from its
// documentation: FNV-1a 32 of the key as int32, modulo n, made positive.
func hashPartition(key []byte, n int32) int32 {
	h := fnv.New32a()
	h.Write(key)
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

type message struct {
	key, value string
	offset     int64
}

// consumeTopic reads every partition of topic from offset 0 to its current
// high watermark.
func consumeTopic(t testing.TB, addrs []string, topic string) map[int32][]message {
	t.Helper()
	cfg := kafkaconf.MustNew("eddy-test", kafkaconf.DefaultVersion, kafkaconf.Security{})
	cfg.Consumer.MaxWaitTime = 20 * time.Millisecond
	client, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]message{}
	for _, p := range parts {
		hw, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if hw == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(20 * time.Second)
		for int64(len(out[p])) < hw {
			select {
			case m := <-pc.Messages():
				out[p] = append(out[p], message{string(m.Key), string(m.Value), m.Offset})
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-timeout:
				t.Fatalf("partition %d: timed out at %d of %d", p, len(out[p]), hw)
			}
		}
		pc.AsyncClose()
	}
	return out
}

// testCSV builds a CSV of n rows for devices dev-0..dev-(d-1), one bad row
// every 97 rows, and returns it with the expected records in file order and
// the lines of the bad rows.
func testCSV(seed uint64, n, d int) (string, []Record, []int) {
	rng := rand.New(rand.NewPCG(seed, 0))
	var b strings.Builder
	b.WriteString("pboxid,event_time,metric,latitude,longitude\n")
	var recs []Record
	var bad []int
	line := 1
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		line++
		if i%97 == 50 {
			b.WriteString("short,row\n")
			bad = append(bad, line)
			continue
		}
		dev := fmt.Sprintf("dev-%d", rng.IntN(d))
		et := base.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05")
		metric := fmt.Sprintf("%.2f", rng.Float64()*100)
		fmt.Fprintf(&b, "%s,%s,%s,57.1,-2.1\n", dev, et, metric)
		recs = append(recs, Record{Line: line, Key: []byte(dev),
			Value: []byte(fmt.Sprintf(`{"event_time":"%s","metric":%s,"pboxid":"%s","latitude":57.1,"longitude":-2.1}`, et, metric, dev))})
	}
	return b.String(), recs, bad
}

// TestReplayRoundTrip replays a CSV into the embedded broker and reads it
// back: every record arrives once, in its device's hash partition, in file
// order within the partition; bad rows are skipped and reported.
func TestReplayRoundTrip(t *testing.T) {
	const partitions = 7
	b := startBroker(t, partitions, "replay")
	data, want, badLines := testCSV(1, 2000, 37)
	r := openString(t, "t.csv", data, Options{})
	var mu sync.Mutex
	var calls []ReplayProgress
	sum, err := Replay(context.Background(), b.Addrs(), "replay", r, ReplayOptions{
		Progress: func(p ReplayProgress) { mu.Lock(); calls = append(calls, p); mu.Unlock() },
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if sum.Rows != 2000 || sum.BadRows != int64(len(badLines)) || sum.Sent != int64(len(want)) ||
		sum.Produced != int64(len(want)) || sum.Failed != 0 {
		t.Fatalf("summary %+v; want rows 2000, bad %d, sent = produced = %d", sum, len(badLines), len(want))
	}
	if fmt.Sprint(sum.BadRowLines) != fmt.Sprint(badLines[:maxListed]) {
		t.Errorf("BadRowLines = %v, want %v", sum.BadRowLines, badLines[:maxListed])
	}
	if sum.MsgsPerSec <= 0 || sum.Duration <= 0 {
		t.Errorf("rate %v over %v", sum.MsgsPerSec, sum.Duration)
	}
	if len(calls) == 0 || calls[len(calls)-1].Produced != sum.Produced || calls[len(calls)-1].Rows != sum.Rows {
		t.Errorf("last progress report %+v does not match the summary", calls)
	}

	wantByPart := map[int32][]message{}
	for _, rec := range want {
		p := hashPartition(rec.Key, partitions)
		wantByPart[p] = append(wantByPart[p], message{string(rec.Key), string(rec.Value), int64(len(wantByPart[p]))})
	}
	got := consumeTopic(t, b.Addrs(), "replay")
	if len(got) < 5 {
		t.Errorf("37 devices landed in only %d of %d partitions", len(got), partitions)
	}
	for p := int32(0); p < partitions; p++ {
		g, w := got[p], wantByPart[p]
		if len(g) != len(w) {
			t.Errorf("partition %d: %d messages, want %d", p, len(g), len(w))
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("partition %d offset %d: got %+v, want %+v", p, i, g[i], w[i])
				break
			}
		}
	}
}

func TestReplayLimit(t *testing.T) {
	b := startBroker(t, 3, "limit")
	data, _, _ := testCSV(2, 100, 5)
	sum, err := Replay(context.Background(), b.Addrs(), "limit", openString(t, "t.csv", data, Options{}), ReplayOptions{Limit: 10})
	if err != nil || sum.Sent != 10 || sum.Produced != 10 {
		t.Fatalf("limit 10: %+v, %v", sum, err)
	}
	n := 0
	for _, msgs := range consumeTopic(t, b.Addrs(), "limit") {
		n += len(msgs)
	}
	if n != 10 {
		t.Fatalf("consumed %d messages, want 10", n)
	}
}

// TestReplaySpeed: records 1 s apart in event time, replayed at 20×, take
// about 50 ms each; unparsable event times are not paced.
func TestReplaySpeed(t *testing.T) {
	b := startBroker(t, 1, "speed")
	var csv strings.Builder
	csv.WriteString("pboxid,event_time,metric\n")
	for i := 0; i < 7; i++ {
		fmt.Fprintf(&csv, "d,2019-03-01T00:00:%02d,1\n", i) // 6 s of event time
	}
	start := time.Now()
	sum, err := Replay(context.Background(), b.Addrs(), "speed", openString(t, "t.csv", csv.String(), Options{}), ReplayOptions{Speed: 20})
	took := time.Since(start)
	if err != nil || sum.Produced != 7 {
		t.Fatalf("%+v, %v", sum, err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("6 s of event time at 20× took %v, want about 300 ms", took)
	}

	csv.Reset()
	csv.WriteString("pboxid,event_time,metric\n")
	for i := 0; i < 7; i++ {
		fmt.Fprintf(&csv, "d,someday %d,1\n", i)
	}
	start = time.Now()
	if _, err := Replay(context.Background(), b.Addrs(), "speed", openString(t, "t.csv", csv.String(), Options{}), ReplayOptions{Speed: 0.001}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("unparsable event times were paced: %v", took)
	}
}

// TestReplaySpeedPoisonTime: a poison event time (2106-02-07, a wrapped
// uint32 clock, then one before year 1000) among readings 1 s apart does not stall a paced replay:
// the jump restarts the schedule, and the readings after it are paced
// again.
func TestReplaySpeedPoisonTime(t *testing.T) {
	b := startBroker(t, 1, "poison")
	var csv strings.Builder
	csv.WriteString("pboxid,event_time,metric\n")
	for i := 0; i < 7; i++ {
		fmt.Fprintf(&csv, "d,2019-03-01T00:00:%02d,1\n", i) // 6 s of event time
		switch i {
		case 2:
			csv.WriteString("d,2106-02-07T06:28:16Z,1\n")
		case 4:
			csv.WriteString("d,0999-06-01T00:00:00,1\n")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	sum, err := Replay(ctx, b.Addrs(), "poison", openString(t, "t.csv", csv.String(), Options{}), ReplayOptions{Speed: 20})
	took := time.Since(start)
	if err != nil || sum.Produced != 9 {
		t.Fatalf("%+v, %v (after %v)", sum, err, took)
	}
	// Paced: 00→02 before the first jump, 03→04 and 05→06 after the
	// restarts (the readings after a poison time are sent at once): 4 s of
	// event time at 20×. Without the restart the 2106 reading would wait
	// 87 years / 20.
	if took < 150*time.Millisecond || took > 3*time.Second {
		t.Errorf("6 s of event time with two poison times at 20× took %v, want about 200 ms", took)
	}
}

func TestReplayCancel(t *testing.T) {
	b := startBroker(t, 1, "cancel")
	data := "pboxid,event_time,metric\nd,0,1\nd,3600000,2\nd,7200000,3\n" // epoch ms, 1 h apart
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Replay(ctx, b.Addrs(), "cancel", openString(t, "t.csv", data, Options{}), ReplayOptions{Speed: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("cancel took %v", took)
	}
	if sum.Sent != 1 || sum.Produced != 1 {
		t.Errorf("after cancel: sent %d, produced %d; want 1, 1 (what was sent is flushed)", sum.Sent, sum.Produced)
	}
}

func TestReplayErrors(t *testing.T) {
	r := func() *Reader { return openString(t, "t.csv", "pboxid,event_time,metric\na,t,1\n", Options{}) }
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		brokers []string
		topic   string
		opts    ReplayOptions
		want    error
	}{
		{"no brokers", nil, "t", ReplayOptions{}, ErrReplayConfig},
		{"no topic", []string{"127.0.0.1:1"}, "", ReplayOptions{}, ErrReplayConfig},
		{"negative speed", []string{"127.0.0.1:1"}, "t", ReplayOptions{Speed: -1}, ErrReplayConfig},
		{"no successes", []string{"127.0.0.1:1"}, "t", ReplayOptions{Config: sarama.NewConfig()}, ErrReplayConfig},
	} {
		if _, err := Replay(ctx, tc.brokers, tc.topic, r(), tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Nothing listens: a connection error, quickly.
	b := startBroker(t, 1)
	addr := b.Addrs()
	b.Close()
	cfg := NewProducerConfig()
	cfg.Metadata.Retry.Max = 1
	cfg.Metadata.Retry.Backoff = 10 * time.Millisecond
	if _, err := Replay(ctx, addr, "t", r(), ReplayOptions{Config: cfg}); err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Errorf("no broker: err = %v", err)
	}
	// A fatal reader error ends the replay with that error.
	bad := gz(t, strings.Repeat("pboxid,event_time,metric\na,t,1\n", 5000))
	br := startBroker(t, 1, "t")
	rd, err := OpenReader("t.csv.gz", io.LimitReader(strings.NewReader(string(bad)), int64(len(bad)/2)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := Replay(ctx, br.Addrs(), "t", rd, ReplayOptions{}); err == nil || errors.Is(err, ErrBadRow) || sum.Produced != sum.Sent {
		t.Errorf("truncated gzip: %+v, err = %v; want a fatal error after flushing what was sent", sum, err)
	}
}

func TestParseEventTime(t *testing.T) {
	for _, tc := range []struct {
		in string
		ms int64
		ok bool
	}{
		{"2019-03-01 00:00:08", 1551398408000, true},
		{"2019-03-01T00:00:08", 1551398408000, true},
		{"2019-03-01T00:00:08.250", 1551398408250, true},
		{"2019-03-01T01:00:08+01:00", 1551398408000, true},
		{"2019-03-01T00:00:08Z", 1551398408000, true},
		{"1551398408000", 1551398408000, true},
		{"-5", -5, true},
		{"", 0, false},
		{"yesterday", 0, false},
		{"2019-03-01", 0, false},
	} {
		ms, ok := ParseEventTime(tc.in)
		if ms != tc.ms || ok != tc.ok {
			t.Errorf("ParseEventTime(%q) = %d, %v; want %d, %v", tc.in, ms, ok, tc.ms, tc.ok)
		}
	}
}

// TestReplayAberdeen replays the whole embedded dataset (929,022 messages)
// into a 12-partition topic and checks every partition's high watermark
// against the hash partitioner. Skipped with -short.
func TestReplayAberdeen(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 929,022 messages")
	}
	const partitions = 12
	b := startBroker(t, partitions, "iot-topic")
	r, err := Open(EmbeddedAberdeen, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sum, err := Replay(context.Background(), b.Addrs(), "iot-topic", r, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replayed %d messages in %v: %.0f msgs/s", sum.Produced, sum.Duration.Round(time.Millisecond), sum.MsgsPerSec)
	if sum.Rows != 929022 || sum.Produced != 929022 || sum.BadRows != 0 {
		t.Fatalf("summary %+v", sum)
	}

	want := map[int32]int64{}
	r2, _ := Open(EmbeddedAberdeen, Options{})
	defer r2.Close()
	for {
		rec, err := r2.Next()
		if err != nil {
			break
		}
		want[hashPartition(rec.Key, partitions)]++
	}
	cfg := kafkaconf.MustNew("eddy-test", kafkaconf.DefaultVersion, kafkaconf.Security{})
	client, err := sarama.NewClient(b.Addrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for p := int32(0); p < partitions; p++ {
		hw, err := client.GetOffset("iot-topic", p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if hw != want[p] {
			t.Errorf("partition %d: high watermark %d, want %d", p, hw, want[p])
		}
	}
}

// BenchmarkReplayAberdeen measures end-to-end replay of the embedded file
// into an in-process broker: go test -run x -bench ReplayAberdeen ./actors/dataset
func BenchmarkReplayAberdeen(b *testing.B) {
	br := startBroker(b, 12, "iot-topic")
	var produced int64
	for b.Loop() {
		r, err := Open(EmbeddedAberdeen, Options{})
		if err != nil {
			b.Fatal(err)
		}
		sum, err := Replay(context.Background(), br.Addrs(), "iot-topic", r, ReplayOptions{})
		if err != nil {
			b.Fatal(err)
		}
		produced += sum.Produced
		r.Close()
	}
	b.ReportMetric(float64(produced)/b.Elapsed().Seconds(), "msgs/s")
}

func TestReplayMissingTopic(t *testing.T) {
	b, err := devbroker.Start(devbroker.Config{DisableAutoCreateTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := NewProducerConfig()
	cfg.Metadata.Retry.Max = 1
	cfg.Metadata.Retry.Backoff = 10 * time.Millisecond
	r := openString(t, "t.csv", "pboxid,event_time,metric\na,t,1\n", Options{})
	_, err = Replay(context.Background(), b.Addrs(), "no-such-topic", r, ReplayOptions{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), `topic "no-such-topic"`) || !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("err = %v, want one naming the topic and wrapping ErrUnknownTopicOrPartition", err)
	}
}
