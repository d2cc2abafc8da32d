package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/state"
	"github.com/eddy-iot/eddy/internal/promreg"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
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
	// EndOffsets, when set, are the bounded end offsets (exclusive) by
	// partition, instead of the end offsets at start (Flink's KafkaSource
	// with stopping offsets): a bounded job whose input is still being
	// produced, or one whose partitions start at different times on a
	// cluster, reads exactly up to them. A partition missing from the map
	// uses its end offset at start. Requires Bounded.
	EndOffsets map[int32]int64
	// KafkaVersion is the protocol version sarama speaks; default "2.8.0".
	KafkaVersion string
	// Security is the TLS and SASL configuration of the connections to
	// the brokers; default plaintext without authentication.
	Security kafkaconf.Security
	// GroupID is the Kafka consumer group the job commits the source
	// offsets of its completed checkpoints to, for lag tools
	// (kafka-consumer-groups, Burrow); a restore never reads them (see
	// OffsetCommitter). "" = DefaultGroupID ("eddy-<job name>");
	// GroupIDOff ("-") = no commits; else see ValidateGroupID. Without
	// checkpoints nothing is committed.
	GroupID string
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
	// SinkFlushInterval is how often a running job flushes the rows its
	// plain (non-transactional) sinks buffer, besides their own writes of
	// every sinks.Config.BatchRows rows and the checkpoints: the bound on
	// how long a row waits in a buffer before it is written, whatever the
	// rate. Shorter means fresher rows and, at low rates, smaller writes.
	// In [1ms, 1h]; default 500ms (DefaultSinkFlushInterval).
	SinkFlushInterval time.Duration
	// SinkFlushOnIdle, when true, also flushes the plain sinks as soon as
	// a partition has written a batch of fewer than BatchSize records
	// that reaches its high-water mark (its reader's BatchLinger expired
	// with nothing more at the broker: the source is caught up), instead
	// of waiting for SinkFlushInterval; a partition working through a
	// backlog asks for none. Requests coalesce (one flush in
	// flight, at most one pending), so at high rates flushes run back to
	// back. Default true.
	SinkFlushOnIdle bool
	// Checkpoint configures periodic checkpoints; off unless
	// Checkpoint.Storage is set.
	Checkpoint CheckpointConfig
	// State configures the pebble state backend used with checkpoints.
	State StateConfig
}

// CheckpointConfig configures checkpoints and savepoints (see the package
// documentation, "Checkpoints").
type CheckpointConfig struct {
	// Storage is the checkpoint storage URL (file:///dir, a plain path,
	// s3://bucket/prefix; see checkpoint.URLForms). "" = no checkpoints:
	// a restarted job starts again from Source.StartOffset.
	Storage string
	// Interval between checkpoints; > 0; default 5s.
	Interval time.Duration
	// Timeout after which an incomplete checkpoint is aborted; > 0;
	// default 10m.
	Timeout time.Duration
	// Retain is how many complete checkpoints are kept; >= 1; default 3.
	Retain int
	// FromSavepoint, if set, is the savepoint (its id, or its name
	// "sp-…") to start from instead of the newest checkpoint.
	FromSavepoint string
}

// Enabled reports whether checkpoints are on.
func (c CheckpointConfig) Enabled() bool { return c.Storage != "" }

// StateConfig configures the keyed-state backend of partition actors when
// checkpoints are on (without them all state stays in the Go heap).
type StateConfig struct {
	// Dir is the local directory of the pebble state store; default
	// $TMPDIR/eddy-state/<job name>. Its contents are deleted at start:
	// state is restored from checkpoints.
	Dir string
	// CacheDevices is how many device states each partition keeps decoded
	// in memory (an LRU cache in front of pebble); >= 1; default 65536.
	CacheDevices int
	// CacheBytes is pebble's block cache; >= 0; default 64 MiB.
	CacheBytes int64
}

// Defaults of CheckpointConfig and StateConfig.
const (
	DefaultCheckpointInterval = 5 * time.Second
	DefaultCheckpointTimeout  = 10 * time.Minute
	DefaultCacheDevices       = 65536
	// DefaultSinkFlushInterval is the default of Config.SinkFlushInterval.
	DefaultSinkFlushInterval = 500 * time.Millisecond
)

// DefaultConfig returns the defaults: job "iot-work" reading "iot-topic" from
// the earliest offset, default operators, 4096-record batches.
func DefaultConfig() Config {
	return Config{
		Name: "iot-work",
		Source: SourceConfig{
			Topic:        "iot-topic",
			StartOffset:  StartEarliest,
			KafkaVersion: kafkaconf.DefaultVersion,
		},
		Operators:         operators.DefaultConfig(),
		BatchSize:         4096,
		BatchLinger:       5 * time.Millisecond,
		SinkFlushInterval: DefaultSinkFlushInterval,
		SinkFlushOnIdle:   true,
		Checkpoint: CheckpointConfig{
			Interval: DefaultCheckpointInterval,
			Timeout:  DefaultCheckpointTimeout,
			Retain:   checkpoint.DefaultRetain,
		},
		State: StateConfig{CacheDevices: DefaultCacheDevices, CacheBytes: state.DefaultCacheBytes},
	}
}

// StateDir returns the state directory: State.Dir or the default.
func (c *Config) StateDir() string {
	if c.State.Dir != "" {
		return c.State.Dir
	}
	return filepath.Join(os.TempDir(), "eddy-state", url.PathEscape(c.Name))
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
	if len(c.Source.EndOffsets) > 0 && !c.Source.Bounded {
		errs = append(errs, errors.New("actors: source end offsets need a bounded source (source.bounded: true)"))
	}
	for p, o := range c.Source.EndOffsets {
		if p < 0 || o < 0 {
			errs = append(errs, fmt.Errorf("actors: source end offset %d of partition %d: partitions and offsets must be >= 0", o, p))
		}
	}
	if _, err := sarama.ParseKafkaVersion(c.Source.KafkaVersion); err != nil {
		errs = append(errs, fmt.Errorf("actors: source kafka version %q: %w", c.Source.KafkaVersion, err))
	}
	if err := c.Source.Security.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("actors: source: %w", err))
	}
	if c.Source.GroupID != GroupIDOff {
		if err := ValidateGroupID(c.OffsetGroup()); err != nil {
			errs = append(errs, fmt.Errorf("actors: source group id: %w", err))
		}
	}
	if c.BatchSize <= 0 {
		errs = append(errs, fmt.Errorf("actors: batch size must be > 0, got %d", c.BatchSize))
	}
	if c.BatchLinger < 0 {
		errs = append(errs, fmt.Errorf("actors: batch linger must be >= 0, got %s", c.BatchLinger))
	}
	if c.SinkFlushInterval < time.Millisecond || c.SinkFlushInterval > time.Hour {
		errs = append(errs, fmt.Errorf("actors: sink flush interval must be in [1ms, 1h], got %s", c.SinkFlushInterval))
	}
	if err := c.Operators.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Checkpoint.Enabled() {
		if c.Checkpoint.Interval <= 0 {
			errs = append(errs, fmt.Errorf("actors: checkpoint interval must be > 0, got %s", c.Checkpoint.Interval))
		}
		if c.Checkpoint.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("actors: checkpoint timeout must be > 0, got %s", c.Checkpoint.Timeout))
		}
		if c.Checkpoint.Retain < 1 {
			errs = append(errs, fmt.Errorf("actors: checkpoint retain must be >= 1, got %d", c.Checkpoint.Retain))
		}
		if c.State.CacheDevices < 1 {
			errs = append(errs, fmt.Errorf("actors: state cache_devices must be >= 1, got %d", c.State.CacheDevices))
		}
		if c.State.CacheBytes < 0 {
			errs = append(errs, fmt.Errorf("actors: state cache_bytes must be >= 0, got %d", c.State.CacheBytes))
		}
	} else if c.Checkpoint.FromSavepoint != "" {
		errs = append(errs, errors.New("actors: starting from a savepoint needs checkpoint storage (checkpoint.storage in the job spec)"))
	}
	return errors.Join(errs...)
}

// Job runs one job's partition actors on this node.
type Job struct {
	cfg     Config
	plain   []sinks.Sink              // written with Write; Flush is their pre-commit
	tx      []sinks.TransactionalSink // written through a PartitionTxn per partition (checkpoints on)
	devices operators.DeviceLookup
	metrics *Metrics
	commits *prometheus.CounterVec // eddy_offset_commits_total, registered by Run
	reg     *promreg.Group         // where the job's metrics are registered; nil: nowhere
	log     *slog.Logger
	// flushes numbers the flushes of the sinks (Job.Flush), for the record
	// latency (latency.go).
	flushes atomic.Uint64
	// flushReqs are the flushes asked for by caught-up partitions (flush.go).
	flushReqs flushRequests

	// live are the partitions running on this node, whose record latency
	// and event-time lag the job reports.
	liveMu sync.Mutex
	live   map[*partitionTask]struct{}

	mu    sync.Mutex
	tasks []*partitionTask // set by Run
	start time.Time
	ck    *checkpointer // set by Run when checkpoints are on
}

// NewJob validates cfg and returns a job writing to sink (a MultiSink for
// several). With checkpoints on, members that are sinks.TransactionalSink
// are written through one PartitionTxn per partition and committed with
// each checkpoint; all others are written with Write (WriteEpoch for a
// sinks.EpochWriter, at epoch 0; NewJob installs the job's backpressure
// hook on it) and pre-committed with Flush. The caller opens and closes the sinks. devices is the broadcast
// business data used for enrichment (nil: none). Metrics register on reg
// (nil: not registered). log nil means slog.Default().
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
	var g *promreg.Group // all or nothing registers on reg
	var mreg prometheus.Registerer
	if reg != nil {
		g = promreg.NewGroup(reg)
		mreg = g
	}
	m, err := newMetrics(mreg)
	if err != nil {
		return nil, err
	}
	j := &Job{cfg: cfg, devices: devices, metrics: m, commits: NewOffsetCommitMetrics(nil), reg: g, log: log, live: map[*partitionTask]struct{}{}}
	if g != nil {
		if err := g.Register(newEventTimeLag(j)); err != nil {
			g.UnregisterAll()
			return nil, fmt.Errorf("actors: register job metrics: %w", err)
		}
	}
	for _, s := range flatten(sink) {
		if ts, ok := s.(sinks.TransactionalSink); ok && cfg.Checkpoint.Enabled() {
			j.tx = append(j.tx, ts)
		} else {
			j.plain = append(j.plain, s)
			if ew, ok := s.(sinks.EpochWriter); ok {
				ew.SetBackpressureHook(j.backpressured)
			}
		}
	}
	return j, nil
}

// backpressured is the sinks' backpressure hook: it shows a partition
// waiting for sink buffer space in eddy_partition_backpressured.
func (j *Job) backpressured(p int32, waiting bool) {
	v := 0.0
	if waiting {
		v = 1
		j.log.Debug("partition waits for sink buffer space (backpressure)", "partition", p)
	}
	j.metrics.Backpressured.WithLabelValues(partitionLabel(p)).Set(v)
}

// dropBuffered discards the rows partition p left in the buffers of the
// plain sinks that fence by epoch (it stopped, failed or lost its lease:
// its next owner writes them again from its restore point).
func (j *Job) dropBuffered(p int32) {
	n := 0
	for _, s := range j.plain {
		if ew, ok := s.(sinks.EpochWriter); ok {
			n += ew.Drop(p)
		}
	}
	if n > 0 {
		j.log.Info("dropped the unwritten sink rows of a stopped partition", "partition", p, "rows", n)
	}
}

// MultiSink is a Sink that writes to each of its members in order. Give
// NewJob a MultiSink to write to several sinks: the job then treats each
// member on its own (transactional ones through their PartitionTxn).
type MultiSink []sinks.Sink

var _ sinks.Sink = MultiSink(nil)

// Open opens every member, stopping at the first error.
func (m MultiSink) Open(ctx context.Context) error {
	for _, s := range m {
		if err := s.Open(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Write writes b to every member, stopping at the first error.
func (m MultiSink) Write(ctx context.Context, b *sinks.Batch) error {
	for _, s := range m {
		if err := s.Write(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Flush flushes every member, stopping at the first error.
func (m MultiSink) Flush(ctx context.Context) error {
	for _, s := range m {
		if err := s.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every member and returns the errors joined.
func (m MultiSink) Close() error {
	var errs []error
	for _, s := range m {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func flatten(s sinks.Sink) []sinks.Sink {
	m, ok := s.(MultiSink)
	if !ok {
		return []sinks.Sink{s}
	}
	var out []sinks.Sink
	for _, e := range m {
		out = append(out, flatten(e)...)
	}
	return out
}

// Summary totals a finished (or stopped) run over all partitions. Unlike
// operators.PartitionStats, its Valid counts on-time readings only, so
// Valid + Late + DeadLetters = Received. Counters restored from a checkpoint
// are included: a run restored after a crash reports the totals of the
// whole job, each record counted once.
type Summary struct {
	Partitions int
	operators.PartitionStats
	Duration time.Duration
	// Restored counts the partitions restored from a checkpoint.
	Restored int
	// Processed counts the records this run processed (Received without
	// the counts restored from a checkpoint).
	Processed int64
	// FinalCheckpoint is the id of the final checkpoint of a bounded run
	// with checkpoints; 0 otherwise.
	FinalCheckpoint uint64
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
	// Devices is the number of devices with open state.
	Devices int64
	// Restored is the checkpoint the partition was restored from; 0 none.
	Restored uint64
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
		if p.Restored != 0 {
			s.Restored++
		}
	}
	s.Processed = s.Received
	j.mu.Lock()
	for _, t := range j.tasks {
		s.Processed -= t.restoredReceived
	}
	j.mu.Unlock()
	j.mu.Lock()
	s.Duration = time.Since(j.start)
	j.mu.Unlock()
	return s
}

func newSaramaClient(src SourceConfig) (sarama.Client, error) {
	sc, err := kafkaconf.New("eddy", src.KafkaVersion, src.Security)
	if err != nil {
		return nil, err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Fetch.Min = 1
	// 1 MiB per partition and fetch: the broker builds (and sarama decodes)
	// smaller responses than with 4 MiB, measured with tests/bench (discard,
	// Aberdeen data) at about 10 % less CPU per run. sarama grows the fetch
	// size for a larger message. 256 KiB raised the peak RSS at 1,000,000
	// devices (tests/bench/rss) by 80-130 MiB: more, smaller responses.
	sc.Consumer.Fetch.Default = 1 << 20
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	// The read-ahead: decoded records buffered per partition beyond the
	// batch being filled. 1024 instead of 8192 lowered the peak RSS at
	// 1,000,000 devices (tests/bench/rss, medians of 11 interleaved runs)
	// by 60 MiB with all state in the heap and 30 MiB with pebble, with the
	// same discard throughput and CPU per run (tests/bench); 256 was no
	// lower.
	sc.ChannelBufferSize = 1024
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Metadata.AllowAutoTopicCreation = false // a job never creates its source
	client, err := sarama.NewClient(src.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("actors: connect to kafka %v: %w", src.Brokers, kafkaconf.Explain(err, src.Security))
	}
	return client, nil
}
