package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

var (
	// ErrFenced is wrapped by the errors of a PartitionTxn whose producer
	// was fenced: a newer writer of the same device partition (same
	// transactional id) has started, or, within one sink, Txn was called
	// with a lease epoch older than one seen before. The transaction is
	// aborted; the caller must stop processing the partition and Close
	// the writer.
	ErrFenced = errors.New("sinks: kafka: producer fenced by a newer writer of the partition")
	// ErrTxnBufferFull is wrapped by the error of PartitionTxn.Write when
	// the rows held between PreCommit and Commit would exceed
	// KafkaConfig.MaxBufferedBytes; the batch is not written.
	ErrTxnBufferFull = errors.New("sinks: kafka: transaction buffer full (waiting for Commit)")
	// ErrCheckpointOrder is wrapped by the error of PreCommit for a
	// checkpoint older than the last pre-committed one, or equal to it
	// with rows written since.
	ErrCheckpointOrder = errors.New("sinks: kafka: checkpoint out of order")
)

// Kafka writes rows as JSON messages to one Kafka topic per table. It is a
// TransactionalSink: each device partition writes through its own
// transactional producer (Txn), whose rows a read_committed consumer sees
// once the checkpoint commits — the two-phase-commit Kafka sink of Flink
// (FlinkKafkaProducer with Semantic.EXACTLY_ONCE). The plain Sink methods
// write through one idempotent, non-transactional producer: at least once.
//
// # Messages
//
// The value is the row as one JSON object, exactly the line NDJSON writes
// (without the newline), after the column cleaning of the SQL sinks:
// strings made valid UTF-8 and cut (pboxid 64 characters; company, site,
// reason 255), payloads cut to KafkaConfig.MaxPayloadBytes with
// "payload_bytes" the original length. The key is the table key, fields
// joined by '|', times as in the value without quotes:
//
//	readings, late_records, dead_letters  "<source_partition>|<source_offset>"
//	window_aggregates                      "<pboxid>|<window_start>"   e.g. 17079|2019-03-01T00:01:00.000Z
//	work_periods                           "<pboxid>|<period_start>"
//
// A window fired again has the same key, so a compacted topic keeps its
// latest row, like the SQL upsert.
//
// # Routing
//
// Window aggregates and work periods go to partition murmur2(pboxid) mod N
// (N partitions of the topic): the partition Kafka's default partitioner
// picks for key pboxid. Readings, late records and dead letters go to
// partition source_partition mod N. With an input topic keyed by device id
// (default partitioner) and output topics of the same partition count,
// every row of a device lands in the partition number of its input, and
// each partition's producer writes one partition per topic.
//
// # Transactions
//
// Txn(ctx, job, partition, epoch) starts a producer with transactional id
// KafkaConfig.TransactionalIDPrefix + "<job>-<partition>", idempotent,
// acks=all, one request in flight. Its InitProducerID bumps the producer
// epoch of that id on the broker, which aborts a transaction a former
// writer left open and fences that writer: its next produce, commit or
// abort fails with ErrFenced. See PartitionTxn for the protocol; the
// writer has one open Kafka transaction at a time, so rows written after
// PreCommit(n) wait in memory until Commit(n) and then go into the next
// transaction.
//
// An open transaction holds back the last stable offset of its partitions:
// read_committed consumers see nothing after its first record until it
// commits or aborts (or times out after KafkaConfig.TransactionTimeout).
//
// # Checkpoint records
//
// PreCommit(n) adds one record to the transaction, in partition p (the
// device partition) of KafkaConfig.CheckpointTopic: key the transactional
// id, value {"transactional_id","partition","epoch","checkpoint"}. It
// becomes visible exactly when the rows of checkpoint n do. Txn reads the
// last committed one after fencing (waiting for transactions still open in
// that partition) and the PartitionTxn reports it through CommitTracker,
// so a new owner knows whether the old owner's last commit happened —
// Kafka Streams keeps its input offsets inside the transaction for the
// same reason. Every checkpoint is thus one Kafka transaction, even one
// without rows.
//
// # Topics
//
// Open checks that every topic exists (a broker with
// auto.create.topics.enable creates it on that check), and with
// KafkaConfig.CreateTopics first creates the missing ones. Production
// clusters usually create topics ahead, with the partition count of the
// input topic.
type Kafka struct {
	cfg     KafkaConfig
	version sarama.KafkaVersion
	codec   sarama.CompressionCodec
	topics  [5]string // by table, in tableOrder; "" = not written
	m       *metrics
	tm      *txnMetrics

	mu     sync.Mutex
	state  int
	txns   map[*kafkaTxn]struct{} // open PartitionTxns
	epochs map[string]uint64      // highest lease epoch given to Txn, by transactional id
	wg     sync.WaitGroup         // goroutines of Open, Write, Txn (see spawn)
	closed chan struct{}          // non-nil once Close started; closed when it is done

	client sarama.Client // opened by Open: reads checkpoint records

	plainMu sync.Mutex // serialises the plain (non-transactional) Write and Flush
	plain   *producer  // created by the first plain Write
}

// CommitTracker is implemented by the PartitionTxns of the Kafka sink.
// Each transaction carries a record of the checkpoint it commits (in
// KafkaConfig.CheckpointTopic), so the checkpoint of the last committed
// transaction is known exactly, also to a new owner after a crash: it is
// the checkpoint whose snapshot a recovering partition restores (with
// several transactional sinks, the smallest of theirs). Rows of later
// checkpoints were aborted when the new owner fenced the old one.
type CommitTracker interface {
	// LastCommitted returns the highest checkpoint committed by any
	// writer of this device partition: read when the PartitionTxn opened
	// (after fencing the earlier writers), then advanced by Commit. ok is
	// false when no transaction of the partition was ever committed.
	LastCommitted() (checkpoint uint64, ok bool)
}

var (
	_ Sink              = (*Kafka)(nil)
	_ TransactionalSink = (*Kafka)(nil)
)

// NewKafka validates cfg and returns a Kafka sink; nothing connects until
// Open. reg (nil: none) receives the sink's metrics:
// eddy_sink_rows_written_total{sink="kafka",table} (rows acknowledged by
// the plain producer, or committed by a transaction),
// eddy_sink_flush_seconds{sink="kafka"} (Flush and PreCommit),
// eddy_sink_txn_commits_total, eddy_sink_txn_aborts_total and
// eddy_sink_txn_fenced_total{sink="kafka"}.
func NewKafka(cfg KafkaConfig, reg prometheus.Registerer) (*Kafka, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v, _ := sarama.ParseKafkaVersion(cfg.Version)
	codec, _ := kafkaCodec(cfg.Compression)
	return &Kafka{
		cfg:     cfg,
		version: v,
		codec:   codec,
		topics:  cfg.topics(),
		m:       newMetrics(reg, "kafka"),
		tm:      newTxnMetrics(reg, "kafka"),
		txns:    map[*kafkaTxn]struct{}{},
		epochs:  map[string]uint64{},
	}, nil
}

// Config returns the configuration, with defaults applied.
func (k *Kafka) Config() KafkaConfig { return k.cfg }

// saramaConfig returns a producer configuration: idempotent, acks=all, one
// request in flight per broker, successes and errors returned, rows routed
// by rowPartitioner.
func (k *Kafka) saramaConfig() *sarama.Config {
	sc := kafkaconf.MustNew(k.cfg.ClientID, k.cfg.Version, k.cfg.Security) // validated by NewKafka
	sc.Net.MaxOpenRequests = 1
	sc.Net.DialTimeout = 10 * time.Second
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Compression = k.codec
	sc.Producer.MaxMessageBytes = k.cfg.MaxMessageBytes
	sc.Producer.Partitioner = newRowPartitioner
	sc.Producer.Transaction.Timeout = k.cfg.TransactionTimeout
	sc.Producer.Transaction.Retry.Max = 10 // EndTxn, AddPartitionsToTxn, InitProducerID; bounds Close
	sc.Producer.Transaction.Retry.Backoff = 100 * time.Millisecond
	return sc
}

// spawn runs fn on a goroutine that Close waits for; ErrClosed after Close.
func (k *Kafka) spawn(fn func()) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state == stateClosed {
		return ErrClosed
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		fn()
	}()
	return nil
}

// await runs fn on a goroutine of k and waits for it or for ctx. When ctx
// ends first, fn keeps running and discard receives its result if it
// succeeds (to release it); await returns ctx's error.
func await[T any](ctx context.Context, k *Kafka, fn func() (T, error), discard func(T)) (T, error) {
	var zero T
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	var mu sync.Mutex
	abandoned := false
	err := k.spawn(func() {
		v, err := fn()
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if err == nil && discard != nil {
				discard(v)
			}
			return
		}
		ch <- result{v, err}
	})
	if err != nil {
		return zero, err
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		select {
		case r := <-ch:
			return r.v, r.err
		default:
			abandoned = true
			return zero, ctx.Err()
		}
	}
}

// Open connects to the brokers, creates missing topics if
// KafkaConfig.CreateTopics, and checks that every topic exists. A second
// Open is a no-op; Open after Close returns ErrClosed.
func (k *Kafka) Open(ctx context.Context) error {
	k.mu.Lock()
	state := k.state
	k.mu.Unlock()
	switch state {
	case stateOpen:
		return nil
	case stateClosed:
		return ErrClosed
	}
	client, err := await(ctx, k, k.checkTopics, func(c sarama.Client) { c.Close() })
	if err != nil {
		return fmt.Errorf("sinks: kafka: open %v: %w", k.cfg.Brokers, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != stateNew {
		client.Close()
		if k.state == stateClosed {
			return ErrClosed
		}
		return nil // a concurrent Open won
	}
	k.client = client
	k.state = stateOpen
	return nil
}

// checkTopics connects, creates missing topics if asked, checks that every
// topic exists and returns the client.
func (k *Kafka) checkTopics() (sarama.Client, error) {
	client, err := sarama.NewClient(k.cfg.Brokers, k.saramaConfig())
	if err != nil {
		return nil, err
	}
	topics := append(k.cfg.Topics(), k.cfg.CheckpointTopic)
	if err := k.ensureTopics(client, topics); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

func (k *Kafka) ensureTopics(client sarama.Client, topics []string) error {
	if k.cfg.CreateTopics {
		existing, err := client.Topics()
		if err != nil {
			return err
		}
		admin, err := sarama.NewClusterAdminFromClient(client) // not closed: that would close client
		if err != nil {
			return err
		}
		for _, t := range topics {
			if slices.Contains(existing, t) {
				continue
			}
			detail := &sarama.TopicDetail{NumPartitions: k.cfg.TopicPartitions, ReplicationFactor: k.cfg.ReplicationFactor}
			if t == k.cfg.CheckpointTopic {
				compact := "compact"
				detail.ConfigEntries = map[string]*string{"cleanup.policy": &compact}
			}
			err := admin.CreateTopic(t, detail, false)
			if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				return fmt.Errorf("create topic %q: %w", t, err)
			}
		}
	}
	if err := client.RefreshMetadata(topics...); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return err
	}
	for _, t := range topics {
		if _, err := client.Partitions(t); err != nil {
			return fmt.Errorf("topic %q: %w (create it, or set create_topics=true)", t, err)
		}
	}
	return nil
}

func (k *Kafka) usable() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch k.state {
	case stateNew:
		return ErrNotOpen
	case stateClosed:
		return ErrClosed
	}
	return nil
}

// Write sends the rows of b through the sink's idempotent,
// non-transactional producer; they are visible to consumers once the
// broker acknowledges them. Delivery is at least once: a Flush error, or a
// replay after recovery, may leave rows twice in a topic (the key
// identifies them). Write may block while the producer's buffer is full,
// until ctx ends. It returns ErrNotOpen before Open, ErrClosed after Close,
// or an earlier delivery error not yet reported by Flush. Safe for
// concurrent use.
func (k *Kafka) Write(ctx context.Context, b *Batch) error {
	if err := k.usable(); err != nil {
		return err
	}
	k.plainMu.Lock()
	defer k.plainMu.Unlock()
	if k.plain == nil {
		sc := k.saramaConfig()
		p, err := await(ctx, k, func() (*producer, error) { return newProducer(k.cfg.Brokers, sc) }, (*producer).close)
		if err != nil {
			return fmt.Errorf("sinks: kafka: producer: %w", err)
		}
		k.plain = p
	}
	msgs, _, _ := k.messages(b)
	for _, m := range msgs {
		if err := k.plain.send(ctx, m); err != nil {
			return fmt.Errorf("sinks: kafka: write: %w", err)
		}
	}
	return nil
}

// Flush waits until every row handed to Write is acknowledged by the
// brokers (acks=all). It returns the first delivery error since the last
// Flush (those rows are lost: recover from an earlier checkpoint), ctx's
// error, ErrNotOpen before Open, ErrClosed after Close. Safe for
// concurrent use.
func (k *Kafka) Flush(ctx context.Context) error {
	if err := k.usable(); err != nil {
		return err
	}
	k.plainMu.Lock()
	defer k.plainMu.Unlock()
	return k.flushPlain(ctx)
}

func (k *Kafka) flushPlain(ctx context.Context) error {
	if k.plain == nil {
		return nil
	}
	start := time.Now()
	if err := k.plain.wait(ctx); err != nil {
		return fmt.Errorf("sinks: kafka: flush: %w", err)
	}
	acked, err := k.plain.take()
	for i, n := range acked {
		k.m.rows[i].Add(float64(n))
	}
	if err != nil {
		return fmt.Errorf("sinks: kafka: flush: %w", err)
	}
	k.m.observeFlush(start)
	return nil
}

// Close flushes the plain producer, closes every PartitionTxn still open
// (aborting its open transaction) and waits for everything the sink
// started. Call it after the partition actors have stopped using their
// PartitionTxns. It is idempotent; a second Close waits for the first.
func (k *Kafka) Close() error {
	k.mu.Lock()
	if k.closed != nil {
		done := k.closed
		k.mu.Unlock()
		<-done
		return nil
	}
	k.closed = make(chan struct{})
	defer close(k.closed)
	wasOpen := k.state == stateOpen
	k.state = stateClosed // no new Txn, Write or goroutine from now on
	txns := make([]*kafkaTxn, 0, len(k.txns))
	for t := range k.txns {
		txns = append(txns, t)
	}
	k.mu.Unlock()
	for _, t := range txns {
		t.Close()
	}
	var err error
	k.plainMu.Lock()
	if k.plain != nil {
		if wasOpen {
			err = k.flushPlain(context.Background())
		}
		k.plain.close()
		k.plain = nil
	}
	k.plainMu.Unlock()
	k.wg.Wait()
	if k.client != nil {
		k.client.Close()
	}
	return err
}

// Txn opens the transactional writer of device partition of job under
// lease epoch: a producer with transactional id
// KafkaConfig.TransactionalIDPrefix + "<job>-<partition>" (InitProducerID
// fences every earlier producer of that id and aborts its open
// transaction), with a transaction begun. It then reads the last committed
// checkpoint record of the partition (the PartitionTxn is a CommitTracker),
// first waiting for transactions still open in its partition of the
// checkpoint topic (only other jobs sharing the topic can have some).
//
// Within this sink, a lease epoch older than one given before for the same
// partition fails with ErrFenced; across processes the lease must keep a
// stale owner from calling Txn (Kafka fences by transactional id only, so
// the latest caller wins). It fails before fencing anything when the
// checkpoint topic has no partition number partition. It returns
// ErrNotOpen before Open, ErrClosed after Close, ctx's error, or the
// broker's.
func (k *Kafka) Txn(ctx context.Context, job string, partition int32, epoch uint64) (PartitionTxn, error) {
	if job == "" || partition < 0 {
		return nil, fmt.Errorf("sinks: kafka: Txn needs a job name and a partition >= 0 (got %q, %d)", job, partition)
	}
	id := k.cfg.TransactionalIDPrefix + job + "-" + strconv.Itoa(int(partition))
	k.mu.Lock()
	switch k.state {
	case stateNew:
		k.mu.Unlock()
		return nil, ErrNotOpen
	case stateClosed:
		k.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := k.epochs[id]; ok && epoch < e {
		k.mu.Unlock()
		k.tm.fenced.Inc()
		return nil, fmt.Errorf("%w: %s: lease epoch %d is older than epoch %d opened before", ErrFenced, id, epoch, e)
	}
	k.epochs[id] = epoch
	k.mu.Unlock()

	sc := k.saramaConfig()
	sc.Producer.Transaction.ID = id
	type opened struct {
		p    *producer
		last uint64
		ok   bool
	}
	o, err := await(ctx, k, func() (opened, error) {
		if err := k.checkCheckpointPartition(partition); err != nil {
			return opened{}, err
		}
		p, err := newProducer(k.cfg.Brokers, sc) // InitProducerID fences
		if err != nil {
			return opened{}, fmt.Errorf("init producer: %w", err)
		}
		last, ok, err := lastCommittedCheckpoint(ctx, k.client, k.cfg.CheckpointTopic, partition, id)
		if err != nil {
			p.close()
			return opened{}, fmt.Errorf("read the last committed checkpoint: %w", err)
		}
		return opened{p, last, ok}, nil
	}, func(o opened) { o.p.close() })
	if err != nil {
		return nil, fmt.Errorf("sinks: kafka: txn %s: %w", id, err)
	}
	p := o.p
	if err := p.ap.BeginTxn(); err != nil {
		p.close()
		return nil, fmt.Errorf("sinks: kafka: txn %s: begin: %w", id, err)
	}
	t := &kafkaTxn{k: k, id: id, partition: partition, epoch: epoch, p: p, committed: o.last, hasCommitted: o.ok}
	if o.ok {
		t.lastLabel = o.last // a committed checkpoint cannot be pre-committed again
	}
	k.mu.Lock()
	if k.state == stateClosed {
		k.mu.Unlock()
		p.close()
		return nil, ErrClosed
	}
	k.txns[t] = struct{}{}
	k.mu.Unlock()
	return t, nil
}

// checkCheckpointPartition reports an error when the checkpoint topic has
// no partition for device partition.
func (k *Kafka) checkCheckpointPartition(partition int32) error {
	parts, err := k.client.Partitions(k.cfg.CheckpointTopic)
	if err != nil {
		return err
	}
	if int(partition) >= len(parts) {
		return fmt.Errorf("checkpoint topic %q has %d partitions; device partition %d needs at least %d (create it with the partition count of the input topic)",
			k.cfg.CheckpointTopic, len(parts), partition, partition+1)
	}
	return nil
}

// States of a kafkaTxn.
const (
	txnOpen         = iota // the Kafka transaction takes writes
	txnPreCommitted        // the Kafka transaction waits for Commit(label); writes are buffered
	txnClosed
)

// kafkaTxn is the PartitionTxn of the Kafka sink.
//
// The Kafka transaction holds the rows counted in sent. While it is
// pre-committed for checkpoint label, rows written go to buffered, a queue
// of segments; PreCommit(m) then labels the segment at the tail with m.
// Commit(k) commits the transaction while its label is <= k, begins the
// next one and moves buffered segments into it until one carries a label.
type kafkaTxn struct {
	k         *Kafka
	id        string
	partition int32
	epoch     uint64

	mu        sync.Mutex // the owner is one actor; Kafka.Close may call Close concurrently
	p         *producer
	state     int
	label     uint64 // checkpoint of the pre-committed transaction
	lastLabel uint64 // highest checkpoint pre-committed so far; 0 none
	dirty     bool   // rows written since the last PreCommit
	sent      [5]int // rows in the Kafka transaction, by table
	buffered  []segment
	bufBytes  int64
	failed    error // the transaction must be aborted (a send failed or may be partial)
	fatal     error // the producer is unusable (fenced or fatal error): only Close
	stuck     *stuckCall
	wg        sync.WaitGroup // goroutines of call

	committed    uint64 // checkpoint of the last committed transaction (CommitTracker)
	hasCommitted bool
}

// segment is a run of buffered rows; labelled ones end at PreCommit(checkpoint).
type segment struct {
	msgs       []*sarama.ProducerMessage
	counts     [5]int
	bytes      int64
	labelled   bool
	checkpoint uint64
}

// stuckCall is a producer call whose caller's ctx ended before it returned.
type stuckCall struct {
	what  string
	done  chan error
	apply func(error) error
}

var (
	_ PartitionTxn  = (*kafkaTxn)(nil)
	_ CommitTracker = (*kafkaTxn)(nil)
)

// LastCommitted implements CommitTracker.
func (t *kafkaTxn) LastCommitted() (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed, t.hasCommitted
}

// checkpointTable is the Metadata of checkpoint records (after the five
// tables).
const checkpointTable = 5

// checkpointRecord returns the record of checkpoint that ends a
// transaction: key the transactional id, value
// {"transactional_id":…,"partition":…,"epoch":…,"checkpoint":…},
// to partition t.partition of the checkpoint topic.
func (t *kafkaTxn) checkpointRecord(checkpoint uint64) *sarama.ProducerMessage {
	v := append(make([]byte, 0, 128), `{"transactional_id":`...)
	v = appendJSONString(v, t.id)
	v = append(v, `,"partition":`...)
	v = strconv.AppendInt(v, int64(t.partition), 10)
	v = append(v, `,"epoch":`...)
	v = strconv.AppendUint(v, t.epoch, 10)
	v = append(v, `,"checkpoint":`...)
	v = strconv.AppendUint(v, checkpoint, 10)
	v = append(v, '}')
	return &sarama.ProducerMessage{
		Topic:     t.k.cfg.CheckpointTopic,
		Key:       sarama.ByteEncoder(t.id),
		Value:     sarama.ByteEncoder(v),
		Partition: t.partition,
		Metadata:  checkpointTable,
	}
}

// call runs fn (a blocking producer call) on a goroutine and applies its
// result with apply. When ctx ends first, the call keeps running; the next
// method of t waits for it and applies its result then.
func (t *kafkaTxn) call(ctx context.Context, what string, fn func() error, apply func(error) error) error {
	done := make(chan error, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		done <- fn()
	}()
	select {
	case err := <-done:
		return apply(err)
	case <-ctx.Done():
		t.stuck = &stuckCall{what: what, done: done, apply: apply}
		return fmt.Errorf("sinks: kafka: txn %s: %s: %w (still running; the next call waits for its outcome)", t.id, what, ctx.Err())
	}
}

// settle waits for a stuck call and applies its outcome.
func (t *kafkaTxn) settle(ctx context.Context) error {
	if t.stuck == nil {
		return nil
	}
	select {
	case err := <-t.stuck.done:
		s := t.stuck
		t.stuck = nil
		_ = s.apply(err) // recorded in t's state
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sinks: kafka: txn %s: waiting for %s: %w", t.id, t.stuck.what, ctx.Err())
	}
}

// ready settles a stuck call and reports why t cannot take a write,
// pre-commit or commit.
func (t *kafkaTxn) ready(ctx context.Context) error {
	if t.state == txnClosed {
		return ErrClosed
	}
	if err := t.settle(ctx); err != nil {
		return err
	}
	if t.fatal != nil {
		return t.fatal
	}
	if t.failed != nil {
		return t.failed
	}
	if t.state == txnOpen && len(t.buffered) > 0 {
		// A commit settled late: move the buffered rows along.
		return t.resume(ctx)
	}
	return nil
}

// classify turns a producer error into t's state: fenced or fatal errors
// make t unusable, abortable ones require Abort; others (network, timeout)
// may be retried.
func (t *kafkaTxn) classify(what string, err error) error {
	fenced := isFenced(err) || t.p.fenced()
	st := t.p.ap.TxnStatus()
	if !fenced && st&sarama.ProducerTxnFlagFatalError != 0 {
		// The error that made the producer unusable may not be err (a
		// later delivery or AddPartitionsToTxn failed): a fatal producer's
		// AbortTxn returns it, without a request.
		fenced = isFenced(t.p.ap.AbortTxn())
	}
	switch {
	case fenced:
		if t.fatal == nil {
			t.k.tm.fenced.Inc()
		}
		t.fatal = fmt.Errorf("%w: txn %s (lease epoch %d): %s: %w", ErrFenced, t.id, t.epoch, what, err)
		return t.fatal
	case st&sarama.ProducerTxnFlagFatalError != 0:
		t.fatal = fmt.Errorf("sinks: kafka: txn %s: %s: producer unusable (close it and open a new Txn): %w", t.id, what, err)
		return t.fatal
	case st&sarama.ProducerTxnFlagAbortableError != 0:
		t.failed = fmt.Errorf("sinks: kafka: txn %s: %s: transaction must be aborted: %w", t.id, what, err)
		return t.failed
	}
	return fmt.Errorf("sinks: kafka: txn %s: %s: %w", t.id, what, err)
}

// isFenced reports whether err says a newer producer of the transactional
// id exists (or the broker aborted the transaction and bumped the epoch).
func isFenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

// Write adds the rows of b to the open transaction, or, while a
// transaction waits for Commit, buffers them (ErrTxnBufferFull beyond
// KafkaConfig.MaxBufferedBytes). It may block while the producer's buffer
// is full, until ctx ends; an error there leaves part of b in the
// transaction, so the transaction must be aborted. After a delivery error
// Write returns it (wrapping ErrFenced if fenced); call Abort.
func (t *kafkaTxn) Write(ctx context.Context, b *Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ready(ctx); err != nil {
		return err
	}
	msgs, counts, size := t.k.messages(b)
	if len(msgs) == 0 {
		return nil
	}
	if t.state == txnPreCommitted {
		if t.bufBytes+size > t.k.cfg.MaxBufferedBytes {
			return fmt.Errorf("%w: txn %s holds %d bytes, limit %d", ErrTxnBufferFull, t.id, t.bufBytes, t.k.cfg.MaxBufferedBytes)
		}
		t.dirty = true
		if n := len(t.buffered); n == 0 || t.buffered[n-1].labelled {
			t.buffered = append(t.buffered, segment{})
		}
		s := &t.buffered[len(t.buffered)-1]
		s.msgs = append(s.msgs, msgs...)
		s.bytes += size
		for i, c := range counts {
			s.counts[i] += c
		}
		t.bufBytes += size
		return nil
	}
	if err := t.p.sendErr(); err != nil {
		return t.classify("write", err)
	}
	t.dirty = true
	if err := t.sendAll(ctx, msgs, counts); err != nil {
		return err
	}
	return nil
}

// sendAll sends msgs into the open transaction; a partial send requires an
// abort.
func (t *kafkaTxn) sendAll(ctx context.Context, msgs []*sarama.ProducerMessage, counts [5]int) error {
	for i, m := range msgs {
		if err := t.p.send(ctx, m); err != nil {
			if i > 0 {
				t.failed = fmt.Errorf("sinks: kafka: txn %s: write interrupted after %d of %d rows, transaction must be aborted: %w", t.id, i, len(msgs), err)
				return t.failed
			}
			return fmt.Errorf("sinks: kafka: txn %s: write: %w", t.id, err)
		}
	}
	for i, c := range counts {
		t.sent[i] += c
	}
	return nil
}

// resume moves buffered segments into the open transaction until one
// carries a checkpoint label (the transaction is then pre-committed for it)
// or none is left.
func (t *kafkaTxn) resume(ctx context.Context) error {
	for t.state == txnOpen && len(t.buffered) > 0 {
		s := &t.buffered[0]
		for i, m := range s.msgs {
			if err := t.p.send(ctx, m); err != nil {
				if i == 0 {
					return fmt.Errorf("sinks: kafka: txn %s: send buffered rows: %w", t.id, err)
				}
				t.failed = fmt.Errorf("sinks: kafka: txn %s: sending buffered rows interrupted, transaction must be aborted: %w", t.id, err)
				return t.failed
			}
		}
		for i, c := range s.counts {
			t.sent[i] += c
		}
		t.bufBytes -= s.bytes
		if s.labelled {
			t.state, t.label = txnPreCommitted, s.checkpoint
		}
		t.buffered[0] = segment{}
		t.buffered = t.buffered[1:]
	}
	if len(t.buffered) == 0 {
		t.buffered = nil
	}
	return nil
}

// PreCommit waits until every row written into the open transaction is
// acknowledged by the brokers (acks=all), then marks the transaction
// pre-committed for checkpoint. While an earlier checkpoint's transaction
// still waits for Commit, it only marks the rows buffered since as
// belonging to checkpoint (they are sent when the transactions before them
// commit). Checkpoints must increase, also across owners (they start after
// LastCommitted); PreCommit of the last pre-committed (or committed)
// checkpoint again, with no rows written since, is a no-op; otherwise an
// older or equal checkpoint fails with ErrCheckpointOrder. A delivery
// error is returned (wrapping ErrFenced if fenced); call Abort.
func (t *kafkaTxn) PreCommit(ctx context.Context, checkpoint uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ready(ctx); err != nil {
		return err
	}
	switch {
	case checkpoint == 0:
		return fmt.Errorf("%w: txn %s: PreCommit(0): checkpoint ids start at 1", ErrCheckpointOrder, t.id)
	case checkpoint == t.lastLabel && !t.dirty:
		return nil
	case checkpoint <= t.lastLabel:
		return fmt.Errorf("%w: txn %s: PreCommit(%d) after PreCommit(%d)", ErrCheckpointOrder, t.id, checkpoint, t.lastLabel)
	}
	rec := t.checkpointRecord(checkpoint)
	if t.state == txnPreCommitted {
		if n := len(t.buffered); n == 0 || t.buffered[n-1].labelled {
			t.buffered = append(t.buffered, segment{})
		}
		s := &t.buffered[len(t.buffered)-1]
		s.msgs = append(s.msgs, rec)
		s.labelled, s.checkpoint = true, checkpoint
	} else {
		start := time.Now()
		if err := t.p.send(ctx, rec); err != nil {
			return fmt.Errorf("sinks: kafka: txn %s: pre-commit %d: %w", t.id, checkpoint, err)
		}
		if err := t.p.wait(ctx); err != nil {
			return fmt.Errorf("sinks: kafka: txn %s: pre-commit %d: %w", t.id, checkpoint, err)
		}
		if err := t.p.sendErr(); err != nil {
			return t.classify(fmt.Sprintf("pre-commit %d", checkpoint), err)
		}
		t.k.m.observeFlush(start)
		t.state, t.label = txnPreCommitted, checkpoint
	}
	t.lastLabel, t.dirty = checkpoint, false
	return nil
}

// Commit commits, in order, every transaction pre-committed for a
// checkpoint <= checkpoint (EndTxn), beginning the next transaction and
// sending the buffered rows into it after each. With none (already
// committed, or nothing pre-committed) it does nothing. On an error other
// than ErrFenced the transaction stays pre-committed and Commit may be
// called again: the broker treats a repeated commit of the same
// transaction as success. If the error says the transaction must be
// aborted, call Abort.
func (t *kafkaTxn) Commit(ctx context.Context, checkpoint uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ready(ctx); err != nil {
		return err
	}
	for t.state == txnPreCommitted && t.label <= checkpoint {
		label := t.label
		err := t.call(ctx, fmt.Sprintf("commit %d", label), t.p.ap.CommitTxn, func(err error) error {
			if err != nil {
				return t.classify(fmt.Sprintf("commit %d", label), err)
			}
			t.k.tm.commits.Inc()
			for i, n := range t.sent {
				t.k.m.rows[i].Add(float64(n))
			}
			t.committed, t.hasCommitted = label, true
			return t.begin("commit")
		})
		if err != nil {
			return err
		}
		if err := t.resume(ctx); err != nil {
			return err
		}
	}
	return nil
}

// begin resets the transaction state after a commit or an abort and begins
// the next Kafka transaction.
func (t *kafkaTxn) begin(after string) error {
	t.sent = [5]int{}
	t.state = txnOpen
	if err := t.p.ap.BeginTxn(); err != nil {
		t.fatal = fmt.Errorf("sinks: kafka: txn %s: begin after %s: %w", t.id, after, err)
		return t.fatal
	}
	return nil
}

// Abort aborts the open transaction (rows written since the last commit
// are never visible), drops the buffered rows and begins a new
// transaction; checkpoints after the last committed one may be
// pre-committed again. It returns an error wrapping ErrFenced if the producer was
// fenced; after another error, Close the writer and open a new one with
// Txn (while the partition's lease is still held).
func (t *kafkaTxn) Abort(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == txnClosed {
		return ErrClosed
	}
	if err := t.settle(ctx); err != nil {
		return err
	}
	if t.fatal != nil {
		return t.fatal
	}
	return t.call(ctx, "abort", t.p.ap.AbortTxn, func(err error) error {
		if err != nil {
			return t.classify("abort", err)
		}
		t.k.tm.aborts.Inc()
		t.buffered, t.bufBytes, t.failed, t.dirty = nil, 0, nil, false
		t.lastLabel = 0 // the aborted pre-commits are void
		if t.hasCommitted {
			t.lastLabel = t.committed
		}
		return t.begin("abort")
	})
}

// Close aborts the open transaction (unless the producer is fenced),
// closes the producer and waits for its goroutines, and for a producer call
// an earlier method left running when its ctx ended. With brokers
// unreachable it blocks while sarama retries (10 attempts, each up to the
// 10 s dial timeout). It is idempotent.
func (t *kafkaTxn) Close() error {
	return t.close(true)
}

// close closes t; with abort false it drops the producer without ending
// its transaction, as a crashed process would (for tests).
func (t *kafkaTxn) close(abort bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == txnClosed {
		return nil
	}
	_ = t.settle(context.Background())
	var err error
	if abort && t.fatal == nil {
		hadRows := t.sent != [5]int{} || t.failed != nil
		if aerr := t.p.ap.AbortTxn(); aerr != nil {
			err = fmt.Errorf("sinks: kafka: txn %s: abort on close: %w", t.id, aerr)
		} else if hadRows {
			t.k.tm.aborts.Inc()
		}
	}
	t.p.close()
	t.wg.Wait()
	t.state = txnClosed
	t.buffered = nil
	t.k.mu.Lock()
	delete(t.k.txns, t)
	t.k.mu.Unlock()
	return err
}

// producer wraps a sarama AsyncProducer: it counts the messages in flight
// and records the first delivery error. Its drain goroutine reads
// Successes and Errors until the producer closes.
type producer struct {
	ap   sarama.AsyncProducer
	done chan struct{} // closed when drain returns

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed while inflight == 0
	err      error         // first delivery error not yet taken
	fence    bool          // a delivery failed because the producer is fenced
	acked    [5]int        // rows acknowledged, by table, not yet taken
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newProducer(brokers []string, sc *sarama.Config) (*producer, error) {
	ap, err := sarama.NewAsyncProducer(brokers, sc)
	if err != nil {
		return nil, err
	}
	p := &producer{ap: ap, done: make(chan struct{}), idle: closedChan}
	go p.drain()
	return p, nil
}

func (p *producer) drain() {
	defer close(p.done)
	succ, errs := p.ap.Successes(), p.ap.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			p.finish(m, nil)
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			p.finish(e.Msg, e.Err)
		}
	}
}

func (p *producer) finish(m *sarama.ProducerMessage, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == nil {
			p.err = err
		}
		p.fence = p.fence || isFenced(err)
	} else if table, ok := m.Metadata.(int); ok && table < len(p.acked) {
		p.acked[table]++
	}
	p.inflight--
	if p.inflight == 0 {
		close(p.idle)
	}
}

// send hands m to the producer, waiting while its input is full.
func (p *producer) send(ctx context.Context, m *sarama.ProducerMessage) error {
	p.mu.Lock()
	if p.inflight == 0 {
		p.idle = make(chan struct{})
	}
	p.inflight++
	p.mu.Unlock()
	select {
	case p.ap.Input() <- m:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		p.inflight--
		if p.inflight == 0 {
			close(p.idle)
		}
		p.mu.Unlock()
		return ctx.Err()
	}
}

// wait waits until no message is in flight.
func (p *producer) wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendErr returns the first delivery error (kept).
func (p *producer) sendErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// fenced reports whether a delivery failed because the producer is fenced.
func (p *producer) fenced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fence
}

// take returns and resets the acknowledged row counts and the first
// delivery error.
func (p *producer) take() ([5]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, err := p.acked, p.err
	p.acked, p.err = [5]int{}, nil
	return a, err
}

// close shuts the producer down without ending an open transaction
// (messages in flight are still delivered) and waits for drain.
func (p *producer) close() {
	p.ap.AsyncClose()
	<-p.done
}

// rowPartitioner routes a message by its table (Metadata) and key: window
// aggregates and work periods by murmur2 of the pboxid (the key before its
// last '|'), other rows by the source partition (the key before its first
// '|'), checkpoint records by the device partition set in the message.
type rowPartitioner struct{ murmur sarama.Partitioner }

func newRowPartitioner(topic string) sarama.Partitioner {
	return rowPartitioner{murmur: sarama.NewMurmur2Partitioner(topic)}
}

func (p rowPartitioner) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	key, _ := m.Key.(sarama.ByteEncoder)
	table, _ := m.Metadata.(int)
	switch table {
	case checkpointTable:
		return m.Partition, nil
	case 1, 2: // window_aggregates, work_periods
		i := bytes.LastIndexByte(key, '|')
		if i < 0 {
			return 0, fmt.Errorf("sinks: kafka: key %q has no '|'", key)
		}
		return p.murmur.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(key[:i])}, n)
	}
	i := bytes.IndexByte(key, '|')
	sp, err := strconv.ParseInt(string(key[:max(i, 0)]), 10, 32)
	if err != nil || sp < 0 {
		return 0, fmt.Errorf("sinks: kafka: key %q does not start with a source partition", key)
	}
	return int32(sp % int64(n)), nil
}

func (rowPartitioner) RequiresConsistency() bool { return true }

// messages encodes the rows of b for the enabled tables: the messages,
// their count by table, and their key and value bytes.
func (k *Kafka) messages(b *Batch) ([]*sarama.ProducerMessage, [5]int, int64) {
	var counts [5]int
	var size int64
	n := 0
	lens := [5]int{len(b.Readings), len(b.Windows), len(b.WorkPeriods), len(b.Late), len(b.DeadLetters)}
	for i, l := range lens {
		if k.topics[i] != "" {
			n += l
		}
	}
	if n == 0 {
		return nil, counts, 0
	}
	msgs := make([]*sarama.ProducerMessage, 0, n)
	add := func(table int, buf []byte, keyLen int) {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic:    k.topics[table],
			Key:      sarama.ByteEncoder(buf[:keyLen:keyLen]),
			Value:    sarama.ByteEncoder(buf[keyLen:]),
			Metadata: table,
		})
		counts[table]++
		size += int64(len(buf))
	}
	if k.topics[0] != "" {
		for _, r := range b.Readings {
			r.PboxID = cleanString(r.PboxID, maxPboxIDChars)
			r.Company = cleanString(r.Company, maxNameChars)
			r.Site = cleanString(r.Site, maxNameChars)
			buf := appendSourceKey(make([]byte, 0, 256), r.Partition, r.Offset)
			kl := len(buf)
			buf = appendReadingJSON(buf, &r)
			add(0, buf[:len(buf)-1], kl)
		}
	}
	if k.topics[1] != "" {
		for _, w := range b.Windows {
			w.PboxID = cleanString(w.PboxID, maxPboxIDChars)
			w.Company = cleanString(w.Company, maxNameChars)
			w.Site = cleanString(w.Site, maxNameChars)
			buf := appendDeviceKey(make([]byte, 0, 320), w.PboxID, w.Start)
			kl := len(buf)
			buf = appendWindowJSON(buf, &w)
			add(1, buf[:len(buf)-1], kl)
		}
	}
	if k.topics[2] != "" {
		for _, p := range b.WorkPeriods {
			p.PboxID = cleanString(p.PboxID, maxPboxIDChars)
			p.Company = cleanString(p.Company, maxNameChars)
			p.Site = cleanString(p.Site, maxNameChars)
			buf := appendDeviceKey(make([]byte, 0, 320), p.PboxID, p.Start)
			kl := len(buf)
			buf = appendWorkPeriodJSON(buf, &p)
			add(2, buf[:len(buf)-1], kl)
		}
	}
	limit := k.cfg.MaxMessageBytes - 512 // room for the record overhead
	if k.topics[3] != "" {
		for _, l := range b.Late {
			l.PboxID = cleanString(l.PboxID, maxPboxIDChars)
			l.Reason = cleanString(l.Reason, maxReasonChars)
			orig := len(l.Payload)
			l.Payload = l.Payload[:min(orig, k.cfg.MaxPayloadBytes)]
			for {
				buf := appendSourceKey(make([]byte, 0, 256+2*len(l.Payload)), l.Partition, l.Offset)
				kl := len(buf)
				buf = appendLateJSON(buf, &l, orig)
				if len(buf) <= limit || len(l.Payload) == 0 {
					add(3, buf[:len(buf)-1], kl)
					break
				}
				l.Payload = l.Payload[:len(l.Payload)/2]
			}
		}
	}
	if k.topics[4] != "" {
		for _, d := range b.DeadLetters {
			d.Reason = cleanString(d.Reason, maxReasonChars)
			orig := len(d.Payload)
			d.Payload = d.Payload[:min(orig, k.cfg.MaxPayloadBytes)]
			for {
				buf := appendSourceKey(make([]byte, 0, 256+2*len(d.Payload)), d.Partition, d.Offset)
				kl := len(buf)
				buf = appendDeadLetterJSON(buf, &d, orig)
				if len(buf) <= limit || len(d.Payload) == 0 {
					add(4, buf[:len(buf)-1], kl)
					break
				}
				d.Payload = d.Payload[:len(d.Payload)/2]
			}
		}
	}
	return msgs, counts, size
}

// appendSourceKey appends "<partition>|<offset>".
func appendSourceKey(b []byte, partition int32, offset int64) []byte {
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, '|')
	return strconv.AppendInt(b, offset, 10)
}

// appendDeviceKey appends "<pboxid>|<time>", the time as in JSON values
// without the quotes.
func appendDeviceKey(b []byte, pboxid string, ms int64) []byte {
	b = append(b, pboxid...)
	b = append(b, '|')
	n := len(b)
	b = appendJSONTime(b, ms) // "…Z"
	copy(b[n:], b[n+1:len(b)-1])
	return b[:len(b)-2]
}

// KafkaKey returns the message key the Kafka sink gives row, a pointer to
// one of the operators row types (*operators.Reading, *WindowAggregate,
// *WorkPeriod, *LateRecord, *DeadLetter); "" for another type.
func KafkaKey(row any) string {
	switch r := row.(type) {
	case *operators.Reading:
		return string(appendSourceKey(nil, r.Partition, r.Offset))
	case *operators.WindowAggregate:
		return string(appendDeviceKey(nil, cleanString(r.PboxID, maxPboxIDChars), r.Start))
	case *operators.WorkPeriod:
		return string(appendDeviceKey(nil, cleanString(r.PboxID, maxPboxIDChars), r.Start))
	case *operators.LateRecord:
		return string(appendSourceKey(nil, r.Partition, r.Offset))
	case *operators.DeadLetter:
		return string(appendSourceKey(nil, r.Partition, r.Offset))
	}
	return ""
}

// txnMetrics counts the transactions of a transactional sink.
type txnMetrics struct {
	commits prometheus.Counter
	aborts  prometheus.Counter
	fenced  prometheus.Counter
}

func newTxnMetrics(reg prometheus.Registerer, sink string) *txnMetrics {
	commits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_txn_commits_total",
		Help: "Sink transactions committed (a checkpoint's rows of one device partition made visible), by sink kind.",
	}, []string{"sink"})
	aborts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_txn_aborts_total",
		Help: "Sink transactions aborted by Abort, or by Close with rows in them, by sink kind.",
	}, []string{"sink"})
	fenced := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_sink_txn_fenced_total",
		Help: "Partition writers of a sink found fenced by a newer writer of the same device partition, by sink kind.",
	}, []string{"sink"})
	if reg != nil {
		commits = register(reg, commits)
		aborts = register(reg, aborts)
		fenced = register(reg, fenced)
	}
	return &txnMetrics{
		commits: commits.WithLabelValues(sink),
		aborts:  aborts.WithLabelValues(sink),
		fenced:  fenced.WithLabelValues(sink),
	}
}
