package devbroker_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/devbroker"
)

// kafkaVersion is the protocol version eddy's sarama clients announce.
var kafkaVersion = sarama.V3_6_0_0

func init() {
	if os.Getenv("SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags)
	}
}

func start(t *testing.T, cfg devbroker.Config) *devbroker.Broker {
	t.Helper()
	b, err := devbroker.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = kafkaVersion
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Metadata.Retry.Backoff = 50 * time.Millisecond
	return c
}

// produce sends n messages key-i/value-i to topic and returns partition per key.
func produce(t *testing.T, addrs []string, cfg *sarama.Config, topic string, from, n int) map[string]int32 {
	t.Helper()
	p, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	defer p.Close()
	parts := map[string]int32{}
	for i := from; i < from+n; i++ {
		k := fmt.Sprintf("key-%d", i)
		part, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(fmt.Sprintf("value-%d", i))})
		if err != nil {
			t.Fatalf("SendMessage %d: %v", i, err)
		}
		parts[k] = part
	}
	return parts
}

// consumeAll reads every partition of topic, concurrently, from the oldest
// offset to the high watermark at the time of the call and returns key →
// value and key → partition.
func consumeAll(t *testing.T, addrs []string, topic string) (map[string]string, map[string]int32) {
	t.Helper()
	client, err := sarama.NewClient(addrs, saramaConfig())
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("Partitions: %v", err)
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	defer c.Close()
	values := map[string]string{}
	where := map[string]int32{}
	var want int64
	msgs := make(chan *sarama.ConsumerMessage)
	done := make(chan struct{})
	defer close(done)
	for _, p := range parts {
		hw, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("GetOffset: %v", err)
		}
		if hw == 0 {
			continue
		}
		want += hw
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("ConsumePartition %d: %v", p, err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				if m.Offset >= hw {
					return
				}
				select {
				case msgs <- m:
				case <-done:
					return
				}
			}
		}()
	}
	timeout := time.After(20 * time.Second)
	for got := int64(0); got < want; got++ {
		select {
		case m := <-msgs:
			values[string(m.Key)] = string(m.Value)
			where[string(m.Key)] = m.Partition
		case <-timeout:
			t.Fatalf("timed out after %d of %d records", got, want)
		}
	}
	return values, where
}

func TestProduceConsume(t *testing.T) {
	b := start(t, devbroker.Config{})
	if got := len(b.Addrs()); got != 1 {
		t.Fatalf("Addrs = %v, want one address", b.Addrs())
	}
	if !strings.HasPrefix(b.Addrs()[0], "127.0.0.1:") || strings.HasSuffix(b.Addrs()[0], ":0") {
		t.Fatalf("Addrs = %v, want 127.0.0.1:<port>", b.Addrs())
	}
	if got := b.Partitions(devbroker.DefaultTopic); got != devbroker.DefaultPartitions {
		t.Fatalf("partitions of %s = %d, want %d", devbroker.DefaultTopic, got, devbroker.DefaultPartitions)
	}

	client, err := sarama.NewClient(b.Addrs(), saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	topics, err := client.Topics()
	client.Close()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(topics) != "[iot-topic]" {
		t.Fatalf("topics = %v, want [iot-topic]", topics)
	}

	const n = 200
	sent := produce(t, b.Addrs(), saramaConfig(), devbroker.DefaultTopic, 0, n)
	values, where := consumeAll(t, b.Addrs(), devbroker.DefaultTopic)
	if len(values) != n {
		t.Fatalf("consumed %d distinct keys, want %d", len(values), n)
	}
	used := map[int32]bool{}
	for k, p := range sent {
		if where[k] != p {
			t.Errorf("key %s: produced to partition %d, consumed from %d", k, p, where[k])
		}
		if want := "value-" + strings.TrimPrefix(k, "key-"); values[k] != want {
			t.Errorf("key %s: value %q, want %q", k, values[k], want)
		}
		used[p] = true
	}
	if len(used) < 6 {
		t.Errorf("200 keys landed in only %d partitions", len(used))
	}
}

func TestAutoCreateTopic(t *testing.T) {
	b := start(t, devbroker.Config{Partitions: 3})
	produce(t, b.Addrs(), saramaConfig(), "other-topic", 0, 10)
	if got := b.Partitions("other-topic"); got != 3 {
		t.Fatalf("auto-created topic has %d partitions, want 3", got)
	}

	b2 := start(t, devbroker.Config{DisableAutoCreateTopics: true})
	cfg := saramaConfig()
	cfg.Metadata.Retry.Max = 1
	cfg.Producer.Retry.Max = 1
	p, err := sarama.NewSyncProducer(b2.Addrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "nope", Value: sarama.StringEncoder("x")})
	if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("produce to unknown topic with auto-create disabled: err = %v, want ErrUnknownTopicOrPartition", err)
	}
}

func TestIdempotentAndTransactionalProducer(t *testing.T) {
	b := start(t, devbroker.Config{Partitions: 1, Topics: []string{"idem", "txn"}})

	idem := saramaConfig()
	idem.Producer.Idempotent = true
	idem.Net.MaxOpenRequests = 1
	produce(t, b.Addrs(), idem, "idem", 0, 50)
	values, _ := consumeAll(t, b.Addrs(), "idem")
	if len(values) != 50 {
		t.Fatalf("idempotent producer: consumed %d keys, want 50", len(values))
	}

	tx := saramaConfig()
	tx.Producer.Idempotent = true
	tx.Producer.Transaction.ID = "eddy-test-tx"
	tx.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(b.Addrs(), tx)
	if err != nil {
		t.Fatalf("transactional producer: %v", err)
	}
	defer p.Close()
	send := func(k string) {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "txn", Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(k)}); err != nil {
			t.Fatalf("send %s: %v", k, err)
		}
	}
	if err := p.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn: %v", err)
	}
	send("committed-1")
	send("committed-2")
	if err := p.CommitTxn(); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	if err := p.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn 2: %v", err)
	}
	send("aborted-1")
	if err := p.AbortTxn(); err != nil {
		t.Fatalf("AbortTxn: %v", err)
	}

	if err := p.BeginTxn(); err != nil {
		t.Fatalf("BeginTxn 3: %v", err)
	}
	send("committed-3")
	if err := p.CommitTxn(); err != nil {
		t.Fatalf("CommitTxn 3: %v", err)
	}

	// A read_committed consumer of the single partition sees only the
	// committed records, in order.
	client, err := sarama.NewClient(b.Addrs(), func() *sarama.Config {
		c := saramaConfig()
		c.Consumer.IsolationLevel = sarama.ReadCommitted
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition("txn", 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.AsyncClose()
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) == 0 || got[len(got)-1] != "committed-3" {
		select {
		case m := <-pc.Messages():
			got = append(got, string(m.Key))
		case <-deadline:
			t.Fatalf("read_committed consumer: timed out, saw %v", got)
		}
	}
	if fmt.Sprint(got) != "[committed-1 committed-2 committed-3]" {
		t.Fatalf("read_committed consumer saw %v, want [committed-1 committed-2 committed-3]", got)
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kafka")
	b, err := devbroker.Start(devbroker.Config{DataDir: dir, Partitions: 5, Topics: []string{"persisted"}})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, b.Addrs(), saramaConfig(), "persisted", 0, 100)
	b.Close()
	b.Close() // idempotent

	b = start(t, devbroker.Config{DataDir: dir, Partitions: 8, Topics: []string{"persisted", "fresh"}})
	if got := b.Partitions("persisted"); got != 5 {
		t.Fatalf("reloaded topic has %d partitions, want the persisted 5", got)
	}
	if got := b.Partitions("fresh"); got != 8 {
		t.Fatalf("new topic after restart has %d partitions, want 8", got)
	}
	values, _ := consumeAll(t, b.Addrs(), "persisted")
	if len(values) != 100 {
		t.Fatalf("after restart consumed %d keys, want 100", len(values))
	}
	// And the log continues: new offsets follow the persisted ones.
	produce(t, b.Addrs(), saramaConfig(), "persisted", 100, 20)
	values, _ = consumeAll(t, b.Addrs(), "persisted")
	if len(values) != 120 {
		t.Fatalf("after restart and more produce consumed %d keys, want 120", len(values))
	}
}

func TestListenInUse(t *testing.T) {
	b := start(t, devbroker.Config{})
	_, err := devbroker.Start(devbroker.Config{Listen: b.Addrs()[0]})
	if err == nil {
		t.Fatal("second broker on the same address started")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  devbroker.Config
		want string // substring of the error; "" = valid
	}{
		{devbroker.Config{}, ""},
		{devbroker.DefaultConfig(), ""},
		{devbroker.Config{Listen: "9092"}, "want host:port"},
		{devbroker.Config{Listen: "127.0.0.1:99999"}, "port must be"},
		{devbroker.Config{Partitions: -1}, "partitions = -1"},
		{devbroker.Config{Topics: []string{"bad topic"}}, "only letters"},
		{devbroker.Config{LogLevel: "loud"}, "log level"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, devbroker.ErrConfig)):
			t.Errorf("%+v: error %v, want one containing %q wrapping ErrConfig", tc.cfg, err, tc.want)
		}
	}
}

func TestLogging(t *testing.T) {
	var w lockedBuffer
	b := start(t, devbroker.Config{LogWriter: &w, LogLevel: "debug"})
	// A truncated Produce request: kfake logs that it cannot parse it at
	// debug level and drops the connection.
	conn, err := net.Dial("tcp", b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frame := []byte{0, 0, 0, 10, 0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("broker answered a truncated request")
	}
	if !strings.Contains(w.String(), "unable to parse request") {
		t.Fatalf("debug log = %q, want a line about the unparsable request", w.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSurvivesGarbage: an HTTP request, an unknown api key and an oversized
// frame must not crash or wedge the broker (kfake alone panics on an unknown
// key and allocates whatever size a client claims).
func TestSurvivesGarbage(t *testing.T) {
	b := start(t, devbroker.Config{})
	for name, frame := range map[string][]byte{
		"http":        []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"unknown key": {0, 0, 0, 10, 0x27, 0x0f, 0, 3, 0, 0, 0, 1, 0xff, 0xff},
		"huge":        {0x7f, 0xff, 0xff, 0xff, 0, 0},
		"tiny":        {0, 0, 0, 2, 0, 0},
	} {
		conn, err := net.Dial("tcp", b.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(frame)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: broker answered", name)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: broker kept the connection open", name)
		}
		conn.Close()
	}
	produce(t, b.Addrs(), saramaConfig(), devbroker.DefaultTopic, 0, 10)
	if values, _ := consumeAll(t, b.Addrs(), devbroker.DefaultTopic); len(values) != 10 {
		t.Fatalf("after garbage: consumed %d keys, want 10", len(values))
	}
}
