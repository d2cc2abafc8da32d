package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
	"unicode"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// GroupIDOff as Spec.Source.GroupID (source.group_id: "-") turns the
// offset commits off.
const GroupIDOff = "-"

// MaxGroupIDBytes bounds a consumer group id.
const MaxGroupIDBytes = 249

// DefaultGroupID returns the consumer group a job commits its offsets to
// when source.group_id is unset: "eddy-<job name>".
func DefaultGroupID(job string) string { return "eddy-" + job }

// OffsetGroup returns the consumer group the job commits the source
// offsets of its completed checkpoints to: Source.GroupID, or
// DefaultGroupID(Name) when that is empty; "" when Source.GroupID is
// GroupIDOff.
func (c *Config) OffsetGroup() string {
	switch c.Source.GroupID {
	case GroupIDOff:
		return ""
	case "":
		return DefaultGroupID(c.Name)
	}
	return c.Source.GroupID
}

// ValidateGroupID checks a consumer group id. Kafka itself refuses only
// the empty id; eddy also refuses ids longer than MaxGroupIDBytes and ids
// with whitespace or control characters, which kafka-consumer-groups
// --group and Burrow's configuration cannot carry safely.
func ValidateGroupID(id string) error {
	switch {
	case id == "":
		return errors.New("must not be empty (leave source.group_id out for eddy-<job name>, or \"-\" for no offset commits)")
	case len(id) > MaxGroupIDBytes:
		return fmt.Errorf("%q is %d bytes; at most %d", id, len(id), MaxGroupIDBytes)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%q holds whitespace, a control character or invalid UTF-8; use letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// NewOffsetCommitMetrics returns eddy_offset_commits_total{result="ok"|"error"},
// the commits of checkpointed source offsets to the job's consumer group
// (one per completed checkpoint, or fewer when commits coalesce behind a
// slow broker), registered on reg when reg is not nil. labels are more
// variable labels before result (a cluster node's Raft leader commits for
// every job: promreg.JobLabel); curry them (MustCurryWith) before handing
// the vector to NewOffsetCommitter.
func NewOffsetCommitMetrics(reg prometheus.Registerer, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_offset_commits_total",
		Help: "Commits of the source offsets of completed checkpoints to the job's Kafka consumer group (source.group_id; informational, for lag tools: restore uses the checkpoint), by result (ok, error).",
	}, append(labels, "result"))
	if len(labels) == 0 {
		v.WithLabelValues("ok")
		v.WithLabelValues("error")
	}
	if reg != nil {
		reg.MustRegister(v)
	}
	return v
}

// offsetCommitTimeout bounds the network calls of one commit attempt
// (dial, request, response), so that Close, which sends the last pending
// commit, returns in bounded time when the brokers are down.
const offsetCommitTimeout = 5 * time.Second

// OffsetCommitter commits the source offsets of a job's completed
// checkpoints to a Kafka consumer group, so that the standard lag tools
// (kafka-consumer-groups --describe, Burrow) see the job's lag. The
// offsets are informational: a restore reads them from the checkpoint,
// never from the group, and a failed commit is logged (warn) and counted
// (eddy_offset_commits_total{result="error"}), never an error of the job.
//
// A commit follows the Kafka committed-offset convention: the offset of a
// partition is the next one to read (last processed + 1), which is a
// checkpoint's resume offset. It is a "simple" commit (Kafka's
// OffsetCommit with generation -1 and no member id, as
// kafka-consumer-groups --reset-offsets makes): eddy places partitions
// itself and never joins the group (Kafka and the kfake dev broker accept
// such commits on a group without members). One OffsetCommit request to the
// group coordinator carries every partition of the checkpoint. A group
// with active members of another consumer refuses it (UNKNOWN_MEMBER_ID).
//
// Submit hands a checkpoint's offsets to a goroutine and returns at once;
// when commits fall behind, the newest pending checkpoint replaces the
// older one. Submit and Close are safe for concurrent use; a nil
// *OffsetCommitter ignores both.
type OffsetCommitter struct {
	group, topic string
	brokers      []string
	sec          kafkaconf.Security
	conf         *sarama.Config
	commits      *prometheus.CounterVec
	log          *slog.Logger

	mu      sync.Mutex
	pending *offsetCommit // newest not yet sent; nil none
	closed  bool
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once

	client sarama.Client // the run goroutine's; connected at the first commit
}

type offsetCommit struct {
	checkpoint uint64
	offsets    map[int32]int64
}

// NewOffsetCommitter returns the committer of cfg's source offsets to
// cfg.OffsetGroup(), or nil, nil when that is "" (commits off). It connects
// at the first commit. commits nil: NewOffsetCommitMetrics(nil); log nil:
// slog.Default(). Errors: an invalid group id or Kafka security
// configuration.
func NewOffsetCommitter(cfg Config, commits *prometheus.CounterVec, log *slog.Logger) (*OffsetCommitter, error) {
	group := cfg.OffsetGroup()
	if group == "" {
		return nil, nil
	}
	if err := ValidateGroupID(group); err != nil {
		return nil, fmt.Errorf("actors: source group id: %w", err)
	}
	sc, err := kafkaconf.New("eddy", cfg.Source.KafkaVersion, cfg.Source.Security)
	if err != nil {
		return nil, err
	}
	sc.Net.DialTimeout, sc.Net.ReadTimeout, sc.Net.WriteTimeout = offsetCommitTimeout, offsetCommitTimeout, offsetCommitTimeout
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Metadata.Full = false
	if commits == nil {
		commits = NewOffsetCommitMetrics(nil)
	}
	if log == nil {
		log = slog.Default()
	}
	c := &OffsetCommitter{
		group: group, topic: cfg.Source.Topic, brokers: cfg.Source.Brokers, sec: cfg.Source.Security,
		conf: sc, commits: commits, log: log.With("group", group),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go c.run()
	return c, nil
}

// Group returns the consumer group id.
func (c *OffsetCommitter) Group() string { return c.group }

// Submit queues the commit of checkpoint's offsets (partition → next
// offset to read; negative offsets are left out) and returns at once. It
// replaces a pending commit of an older checkpoint and ignores one older
// than the pending commit. After Close it does nothing.
func (c *OffsetCommitter) Submit(checkpoint uint64, offsets map[int32]int64) {
	if c == nil || len(offsets) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.pending != nil && c.pending.checkpoint > checkpoint {
		return
	}
	c.pending = &offsetCommit{checkpoint: checkpoint, offsets: offsets}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close sends the pending commit, if any (a bounded run's final
// checkpoint), waits for the commit in flight and disconnects. It takes at
// most a few offsetCommitTimeouts when the brokers are down. Idempotent.
func (c *OffsetCommitter) Close() {
	if c == nil {
		return
	}
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.quit)
		<-c.done
	})
}

func (c *OffsetCommitter) run() {
	defer close(c.done)
	defer func() {
		if c.client != nil {
			c.client.Close()
		}
	}()
	for {
		select {
		case <-c.wake:
		case <-c.quit:
		}
		c.mu.Lock()
		oc := c.pending
		c.pending = nil
		closed := c.closed
		c.mu.Unlock()
		if oc != nil {
			c.commitAndCount(oc)
		}
		if closed {
			return
		}
	}
}

func (c *OffsetCommitter) commitAndCount(oc *offsetCommit) {
	began := time.Now()
	if err := c.commit(oc); err != nil {
		c.commits.WithLabelValues("error").Inc()
		c.log.Warn("committing the checkpointed source offsets to the consumer group failed (informational only: lag tools show older offsets; restore uses the checkpoint)",
			"checkpoint", oc.checkpoint, "err", err)
		return
	}
	c.commits.WithLabelValues("ok").Inc()
	c.log.Debug("committed the checkpointed source offsets to the consumer group", "checkpoint", oc.checkpoint,
		"partitions", len(oc.offsets), "took", time.Since(began).Round(time.Microsecond))
}

// commit sends one OffsetCommit of oc to the group coordinator, once more
// after a coordinator change or a broken connection.
func (c *OffsetCommitter) commit(oc *offsetCommit) error {
	if c.client == nil {
		client, err := sarama.NewClient(c.brokers, c.conf)
		if err != nil {
			return fmt.Errorf("connect to kafka %v: %w", c.brokers, kafkaconf.Explain(err, c.sec))
		}
		c.client = client
	}
	req := sarama.NewOffsetCommitRequest(c.conf, c.group)
	ts := int64(0) // the commit timestamp field exists in v1 only
	if req.Version == 1 {
		ts = sarama.ReceiveTime
	}
	meta := fmt.Sprintf("eddy checkpoint %d", oc.checkpoint)
	parts := make([]int32, 0, len(oc.offsets))
	for p, o := range oc.offsets {
		if o >= 0 {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	sort.Slice(parts, func(a, b int) bool { return parts[a] < parts[b] })
	for _, p := range parts {
		// Leader epoch -1: unknown (the offset is not tied to a fetch).
		req.AddBlockWithLeaderEpoch(c.topic, p, oc.offsets[p], -1, ts, meta)
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err = c.send(req); err == nil {
			return nil
		}
		var kerr sarama.KError
		if errors.As(err, &kerr) && !retriableCommitError(kerr) {
			return err
		}
		_ = c.client.RefreshCoordinator(c.group)
	}
	return err
}

func (c *OffsetCommitter) send(req *sarama.OffsetCommitRequest) error {
	b, err := c.client.Coordinator(c.group)
	if err != nil {
		return fmt.Errorf("find the coordinator of group %s: %w", c.group, err)
	}
	resp, err := b.CommitOffset(req)
	if err != nil {
		_ = b.Close() // the client reconnects it
		return fmt.Errorf("offset commit to broker %s: %w", b.Addr(), err)
	}
	var errs []error
	for topic, ps := range resp.Errors {
		for p, kerr := range ps {
			if !errors.Is(kerr, sarama.ErrNoError) {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p, kerr))
			}
		}
	}
	return errors.Join(errs...)
}

func retriableCommitError(k sarama.KError) bool {
	switch k {
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrOffsetsLoadInProgress:
		return true
	}
	return false
}
