package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
)

// ErrTopicNotFound is returned by Run when the source topic does not exist.
var ErrTopicNotFound = errors.New("actors: source topic not found")

// Start positions of a source partition without a stored offset.
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// SourceConfig says where a job reads from.
type SourceConfig struct {
	// Brokers are the Kafka bootstrap addresses, host:port; required.
	Brokers []string
	// Topic is the source topic; default "iot-topic".
	Topic string
	// Partitions restricts the job to these partitions; nil = every
	// partition of the topic.
	Partitions []int32
	// StartOffset is "earliest" (default) or "latest".
	StartOffset string
	// Bounded makes the job read to the end offsets that exist when it
	// starts, fire everything and return (Flink's bounded Kafka source).
	Bounded bool
	// KafkaVersion is the protocol version sarama speaks; default "2.8.0".
	KafkaVersion string
}

// Config is a job's runtime configuration. The zero value is not valid:
// start from DefaultConfig.
type Config struct {
	// Name of the job; default "iot-work". Partition actors are named
	// "<Name>/<partition>".
	Name      string
	Source    SourceConfig
	Operators operators.Config
	// BatchSize is the most records one actor message carries; > 0;
	// default 4096.
	BatchSize int
	// BatchLinger is how long a source reader waits to fill a batch once it
	// has one record; >= 0; default 5ms.
	BatchLinger time.Duration
}

// DefaultConfig returns the defaults: job "iot-work" reading "iot-topic" from
// the earliest offset, default operators, 4096-record batches.
func DefaultConfig() Config {
	return Config{
		Name: "iot-work",
		Source: SourceConfig{
			Topic:        "iot-topic",
			StartOffset:  StartEarliest,
			KafkaVersion: "2.8.0",
		},
		Operators:   operators.DefaultConfig(),
		BatchSize:   4096,
		BatchLinger: 5 * time.Millisecond,
	}
}

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("actors: job name must not be empty"))
	}
	if len(c.Source.Brokers) == 0 {
		errs = append(errs, errors.New("actors: source brokers must not be empty (e.g. 127.0.0.1:9092)"))
	}
	if c.Source.Topic == "" {
		errs = append(errs, errors.New("actors: source topic must not be empty"))
	}
	if c.Source.StartOffset != StartEarliest && c.Source.StartOffset != StartLatest {
		errs = append(errs, fmt.Errorf("actors: source start offset must be %q or %q, got %q", StartEarliest, StartLatest, c.Source.StartOffset))
	}
	if _, err := sarama.ParseKafkaVersion(c.Source.KafkaVersion); err != nil {
		errs = append(errs, fmt.Errorf("actors: source kafka version %q: %w", c.Source.KafkaVersion, err))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, fmt.Errorf("actors: batch size must be > 0, got %d", c.BatchSize))
	}
	if c.BatchLinger < 0 {
		errs = append(errs, fmt.Errorf("actors: batch linger must be >= 0, got %s", c.BatchLinger))
	}
	if err := c.Operators.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Job runs one job's partition actors on this node.
type Job struct {
	cfg     Config
	sink    sinks.Sink
	devices operators.DeviceLookup
	metrics *Metrics
	log     *slog.Logger

	mu    sync.Mutex
	tasks []*partitionTask // set by Run
	start time.Time
}

// NewJob validates cfg and returns a job writing to sink. devices is the
// broadcast business data used for enrichment (nil: none). Metrics register
// on reg (nil: not registered). log nil means slog.Default().
func NewJob(cfg Config, sink sinks.Sink, devices operators.DeviceLookup, reg prometheus.Registerer, log *slog.Logger) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("actors: sink must not be nil")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Job{cfg: cfg, sink: sink, devices: devices, metrics: NewMetrics(reg), log: log}, nil
}

// Summary totals a finished (or stopped) run over all partitions. Unlike
// operators.PartitionStats, its Valid counts on-time readings only, so
// Valid + Late + DeadLetters = Received.
type Summary struct {
	Partitions int
	operators.PartitionStats
	Duration time.Duration
}

// Run reads the source and processes it until the bounded end is reached or
// ctx is cancelled; then it flushes the sink and stops the actors. A
// cancelled ctx is a normal stop (nil error). Run may be called once.
func (j *Job) Run(ctx context.Context) (Summary, error) {
	j.mu.Lock()
	j.start = time.Now()
	j.mu.Unlock()

	client, err := newSaramaClient(j.cfg.Source)
	if err != nil {
		return Summary{}, err
	}
	defer client.Close()
	parts, err := j.partitions(client)
	if err != nil {
		return Summary{}, err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return Summary{}, fmt.Errorf("actors: kafka consumer: %w", err)
	}
	defer consumer.Close()

	system := newActorSystem(j.log)
	defer system.Shutdown()
	props := func(t *partitionTask) *actor.Props {
		return actor.PropsFromProducer(func() actor.Actor { return &partitionActor{t: t} },
			actor.WithGuardian(&reportingRestart{log: j.log, restarts: j.metrics.ActorRestarts}))
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tasks := make([]*partitionTask, 0, len(parts))
	for _, p := range parts {
		t, err := j.newTask(runCtx, client, p)
		if err != nil {
			return Summary{}, err
		}
		pid, err := system.Root.SpawnNamed(props(t), fmt.Sprintf("%s/%d", j.cfg.Name, p))
		if err != nil {
			return Summary{}, fmt.Errorf("actors: spawn partition actor %d: %w", p, err)
		}
		t.pid = pid
		tasks = append(tasks, t)
	}
	j.mu.Lock()
	j.tasks = tasks
	j.mu.Unlock()

	g, gctx := errgroup.WithContext(runCtx)
	for _, t := range tasks {
		g.Go(func() error { return t.read(gctx, consumer, system.Root) })
	}
	runErr := g.Wait()
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil // stopped by the caller
	}
	for _, t := range tasks {
		_ = system.Root.StopFuture(t.pid).Wait()
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFlush()
	if err := j.sink.Flush(flushCtx); err != nil && runErr == nil {
		runErr = fmt.Errorf("actors: final sink flush: %w", err)
	}
	return j.summary(), runErr
}

func (j *Job) partitions(client sarama.Client) ([]int32, error) {
	all, err := client.Partitions(j.cfg.Source.Topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) || (err == nil && len(all) == 0) {
		return nil, fmt.Errorf("%w: %q on %v", ErrTopicNotFound, j.cfg.Source.Topic, j.cfg.Source.Brokers)
	}
	if err != nil {
		return nil, fmt.Errorf("actors: partitions of %q: %w", j.cfg.Source.Topic, err)
	}
	if j.cfg.Source.Partitions == nil {
		return all, nil
	}
	have := make(map[int32]bool, len(all))
	for _, p := range all {
		have[p] = true
	}
	for _, p := range j.cfg.Source.Partitions {
		if !have[p] {
			return nil, fmt.Errorf("actors: topic %q has no partition %d (it has %d)", j.cfg.Source.Topic, p, len(all))
		}
	}
	return j.cfg.Source.Partitions, nil
}

// PartitionStatus is the live state of one partition actor.
type PartitionStatus struct {
	Partition int32
	// NextOffset is the next source offset to process.
	NextOffset int64
	// EndOffset is the bounded end (exclusive); -1 when unbounded.
	EndOffset int64
	// Lag is the records between the source's high watermark offset and
	// NextOffset.
	Lag int64
	// Watermark is the event-time watermark, Unix ms; math.MinInt64 before
	// the first valid record.
	Watermark int64
	Done      bool
	operators.PartitionStats
}

// Status returns the state of every partition, ordered by partition. Safe
// for concurrent use with Run.
func (j *Job) Status() []PartitionStatus {
	j.mu.Lock()
	tasks := j.tasks
	j.mu.Unlock()
	out := make([]PartitionStatus, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, t.status())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Partition < out[b].Partition })
	return out
}

func (j *Job) summary() Summary {
	st := j.Status()
	s := Summary{Partitions: len(st)}
	for _, p := range st {
		s.Received += p.Received
		s.Valid += p.Valid - p.Late
		s.Late += p.Late
		s.DeadLetters += p.DeadLetters
		s.WindowsFired += p.WindowsFired
		s.WorkPeriods += p.WorkPeriods
	}
	j.mu.Lock()
	s.Duration = time.Since(j.start)
	j.mu.Unlock()
	return s
}

func newSaramaClient(src SourceConfig) (sarama.Client, error) {
	sc := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(src.KafkaVersion)
	if err != nil {
		return nil, err
	}
	sc.Version = v
	sc.ClientID = "eddy"
	sc.Consumer.Return.Errors = true
	sc.Consumer.Fetch.Min = 1
	sc.Consumer.Fetch.Default = 4 << 20
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.ChannelBufferSize = 8192
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Metadata.AllowAutoTopicCreation = false // a job never creates its source
	client, err := sarama.NewClient(src.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("actors: connect to kafka %v: %w", src.Brokers, err)
	}
	return client, nil
}
