package sinks

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// DefaultKafkaTopicPrefix is the prefix of the default topic names: a table
// T is written to "iot-work.T".
const DefaultKafkaTopicPrefix = "iot-work"

// KafkaConfig configures the Kafka sink. The zero value of every field but
// Brokers means its default (see DefaultKafkaConfig).
type KafkaConfig struct {
	// Brokers are the bootstrap addresses, host:port; at least one.
	Brokers []string

	// The topic of each table. An empty topic means the table's rows are
	// dropped (not written). When all five are empty, WindowsTopic and
	// WorkPeriodsTopic take their defaults "iot-work.window_aggregates" and
	// "iot-work.work_periods" (readings, late records and dead letters are
	// opt-in). Names follow Kafka's rules: 1–249 characters of
	// [a-zA-Z0-9._-]; two tables may not share a topic.
	ReadingsTopic    string
	WindowsTopic     string
	WorkPeriodsTopic string
	LateTopic        string
	DeadLettersTopic string
	// CheckpointTopic receives, inside every transaction, one small
	// record naming the checkpoint the transaction commits (key: the
	// transactional id), so that a new owner of a device partition can
	// read which checkpoint's rows are the last visible ones
	// (CommitTracker). Device partition p writes to partition p of it, so
	// it needs at least as many partitions as the input topic (Txn fails
	// otherwise), and should have cleanup.policy=compact (CreateTopics
	// sets it). Give each job its own checkpoint topic. Default
	// "iot-work.checkpoints".
	CheckpointTopic string

	// Version is the Kafka protocol version sarama speaks, e.g. "2.8.0";
	// at least 0.11.0 (transactions). Default "2.8.0".
	Version string
	// ClientID is the client.id of every connection; default "eddy".
	ClientID string
	// Security is the TLS and SASL configuration of the connections;
	// default plaintext without authentication. In a sink URL: user and
	// password as kafka://USER:PASSWORD@HOST:PORT (the password may be a
	// ${NAME} reference in a job spec), sasl=PLAIN|SCRAM-SHA-256|
	// SCRAM-SHA-512 (default PLAIN when a user is given), tls=true,
	// tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=NAME.
	Security kafkaconf.Security
	// TransactionalIDPrefix is put before "<job>-<partition>" to form the
	// transactional id of a partition's producer; default "" (none).
	TransactionalIDPrefix string
	// TransactionTimeout is how long the broker lets a transaction stay
	// open before it aborts it (transaction.timeout.ms): it must exceed a
	// checkpoint interval plus the time to complete a checkpoint, and not
	// exceed the broker's transaction.max.timeout.ms (default 15 min).
	// Must be in [1s, 1h]; default 1 min.
	TransactionTimeout time.Duration
	// Compression of produced batches: none, gzip, snappy, lz4 or zstd;
	// default none.
	Compression string
	// MaxMessageBytes is the largest message the producer sends (the
	// broker's message.max.bytes must allow it). Must be in
	// [64 KiB, 64 MiB]; default 1,000,000 (Kafka's default).
	MaxMessageBytes int
	// MaxPayloadBytes is the longest payload of a late record or dead
	// letter written whole; longer payloads are cut to it, and
	// "payload_bytes" keeps the original length (as in the SQL sinks).
	// Must be in [1, MaxMessageBytes/4]; default 128 KiB. A row that still
	// does not fit MaxMessageBytes gets its payload cut further.
	MaxPayloadBytes int
	// MaxBufferedBytes bounds the rows a PartitionTxn holds in memory
	// between PreCommit and Commit (key and value bytes); beyond it Write
	// fails with ErrTxnBufferFull. Must be in [1 MiB, 4 GiB]; default
	// 64 MiB.
	MaxBufferedBytes int64

	// CreateTopics makes Open create the missing topics with
	// TopicPartitions partitions and ReplicationFactor replicas. Default
	// false: the topics must exist, or the broker must create them on
	// first use (auto.create.topics.enable).
	CreateTopics bool
	// TopicPartitions is the partition count of created topics; -1 (or
	// 0) means the broker's default (num.partitions). Give it the
	// partition count of the input topic to keep every device's output in
	// the partition of its input (see the routing rules of Kafka).
	TopicPartitions int32
	// ReplicationFactor of created topics; -1 (or 0) means the broker's
	// default (default.replication.factor).
	ReplicationFactor int16
}

// DefaultKafkaConfig returns the defaults, without brokers: window
// aggregates to "iot-work.window_aggregates" and work periods to
// "iot-work.work_periods", checkpoint records to "iot-work.checkpoints",
// Kafka protocol 2.8.0, client id "eddy", no
// transactional id prefix, transaction timeout 1 min, no compression,
// messages up to 1,000,000 bytes, payloads up to 128 KiB, 64 MiB buffered
// per PartitionTxn, topics not created.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{
		WindowsTopic:       DefaultKafkaTopicPrefix + "." + TableWindows,
		WorkPeriodsTopic:   DefaultKafkaTopicPrefix + "." + TableWorkPeriods,
		CheckpointTopic:    DefaultKafkaTopicPrefix + ".checkpoints",
		Version:            kafkaconf.DefaultVersion,
		ClientID:           "eddy",
		TransactionTimeout: time.Minute,
		Compression:        "none",
		MaxMessageBytes:    1_000_000,
		MaxPayloadBytes:    128 << 10,
		MaxBufferedBytes:   64 << 20,
		TopicPartitions:    -1,
		ReplicationFactor:  -1,
	}
}

// topics returns the topic of each table, in tableOrder.
func (c *KafkaConfig) topics() [5]string {
	return [5]string{c.ReadingsTopic, c.WindowsTopic, c.WorkPeriodsTopic, c.LateTopic, c.DeadLettersTopic}
}

// topicFor returns a pointer to the topic field of table (a Table*
// constant), or nil.
func (c *KafkaConfig) topicFor(table string) *string {
	switch table {
	case TableReadings:
		return &c.ReadingsTopic
	case TableWindows:
		return &c.WindowsTopic
	case TableWorkPeriods:
		return &c.WorkPeriodsTopic
	case TableLate:
		return &c.LateTopic
	case TableDeadLetters:
		return &c.DeadLettersTopic
	}
	return nil
}

// Topics returns the topics the sink writes (non-empty, in table order:
// readings, window_aggregates, work_periods, late_records, dead_letters),
// after defaults.
func (c KafkaConfig) Topics() []string {
	c = c.withDefaults()
	var out []string
	for _, t := range c.topics() {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (c KafkaConfig) withDefaults() KafkaConfig {
	d := DefaultKafkaConfig()
	if c.topics() == [5]string{} {
		c.WindowsTopic, c.WorkPeriodsTopic = d.WindowsTopic, d.WorkPeriodsTopic
	}
	if c.CheckpointTopic == "" {
		c.CheckpointTopic = d.CheckpointTopic
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.ClientID == "" {
		c.ClientID = d.ClientID
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = d.TransactionTimeout
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = min(d.MaxPayloadBytes, c.MaxMessageBytes/4)
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = d.MaxBufferedBytes
	}
	if c.TopicPartitions == 0 {
		c.TopicPartitions = -1
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	return c
}

// Validate reports the first invalid field of c (after zero fields take
// their defaults), saying what is allowed.
func (c KafkaConfig) Validate() error {
	c = c.withDefaults()
	if len(c.Brokers) == 0 {
		return fmt.Errorf("sinks: kafka: no brokers; give at least one host:port")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("sinks: kafka: broker %q: want host:port, e.g. 127.0.0.1:9092", b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("sinks: kafka: broker %q: port must be 1..65535", b)
		}
	}
	seen := map[string]string{}
	for i, t := range c.topics() {
		if t == "" {
			continue
		}
		if err := validKafkaTopic(t); err != nil {
			return fmt.Errorf("sinks: kafka: topic of %s: %w", tableOrder[i], err)
		}
		if other, ok := seen[t]; ok {
			return fmt.Errorf("sinks: kafka: tables %s and %s both write topic %q; give each its own topic", other, tableOrder[i], t)
		}
		seen[t] = tableOrder[i]
	}
	if err := validKafkaTopic(c.CheckpointTopic); err != nil {
		return fmt.Errorf("sinks: kafka: CheckpointTopic: %w", err)
	}
	if other, ok := seen[c.CheckpointTopic]; ok {
		return fmt.Errorf("sinks: kafka: CheckpointTopic %q is also the topic of %s; give it its own topic", c.CheckpointTopic, other)
	}
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return fmt.Errorf("sinks: kafka: version %q: %v (e.g. 2.8.0)", c.Version, err)
	}
	if !v.IsAtLeast(sarama.V0_11_0_0) {
		return fmt.Errorf("sinks: kafka: version %s: transactions need Kafka 0.11.0 or later", c.Version)
	}
	if _, err := kafkaCodec(c.Compression); err != nil {
		return err
	}
	if err := c.Security.Validate(); err != nil {
		return fmt.Errorf("sinks: kafka: %w", err)
	}
	switch {
	case c.TransactionTimeout < time.Second || c.TransactionTimeout > time.Hour:
		return fmt.Errorf("sinks: kafka: TransactionTimeout is %v; must be in [1s, 1h] (0 means the default %v)", c.TransactionTimeout, DefaultKafkaConfig().TransactionTimeout)
	case c.MaxMessageBytes < 64<<10 || c.MaxMessageBytes > 64<<20:
		return fmt.Errorf("sinks: kafka: MaxMessageBytes is %d; must be in [65536, 67108864] (0 means the default %d)", c.MaxMessageBytes, DefaultKafkaConfig().MaxMessageBytes)
	case c.MaxPayloadBytes < 1 || c.MaxPayloadBytes > c.MaxMessageBytes/4:
		return fmt.Errorf("sinks: kafka: MaxPayloadBytes is %d; must be in [1, MaxMessageBytes/4 = %d] (JSON escaping may grow a payload)", c.MaxPayloadBytes, c.MaxMessageBytes/4)
	case c.MaxBufferedBytes < 1<<20 || c.MaxBufferedBytes > 4<<30:
		return fmt.Errorf("sinks: kafka: MaxBufferedBytes is %d; must be in [1 MiB, 4 GiB] (0 means the default %d)", c.MaxBufferedBytes, DefaultKafkaConfig().MaxBufferedBytes)
	case c.TopicPartitions < -1:
		return fmt.Errorf("sinks: kafka: TopicPartitions is %d; must be >= 1, or -1 for the broker's default", c.TopicPartitions)
	case c.ReplicationFactor < -1:
		return fmt.Errorf("sinks: kafka: ReplicationFactor is %d; must be >= 1, or -1 for the broker's default", c.ReplicationFactor)
	}
	if strings.ContainsAny(c.TransactionalIDPrefix, " \t\n") {
		return fmt.Errorf("sinks: kafka: TransactionalIDPrefix %q contains white space", c.TransactionalIDPrefix)
	}
	return nil
}

func validKafkaTopic(t string) error {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("topic %q: must be 1-249 characters and not . or ..", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic %q: only letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

func kafkaCodec(name string) (sarama.CompressionCodec, error) {
	switch name {
	case "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return 0, fmt.Errorf("sinks: kafka: compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// kafkaURLOptions are the query parameters of a kafka: sink URL, besides
// the table names.
var kafkaURLOptions = []string{"prefix", "tables", "checkpoints", "version", "client_id", "txn_prefix", "txn_timeout", "compression", "create_topics", "partitions", "replication", "sasl", "tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name"}

// ParseKafkaURL parses a kafka: sink URL (see URLForms) into a KafkaConfig
// (defaults for what the URL leaves out):
//
//	kafka://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/][?OPTION=VALUE&...]
//
// Options: prefix=P (default topic names P.<table>; default iot-work),
// tables=LIST (tables to write, comma-separated table names or "all";
// default window_aggregates,work_periods), <table>=TOPIC (the topic of one
// table; it also enables the table), checkpoints=TOPIC (CheckpointTopic;
// default P.checkpoints), version=V (default 2.8.0),
// client_id=ID, txn_prefix=P (TransactionalIDPrefix), txn_timeout=DURATION
// (e.g. 90s), compression=none|gzip|snappy|lz4|zstd, create_topics=BOOL,
// partitions=N and replication=N (for created topics); USER:PASSWORD@
// with sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 (default PLAIN), tls=BOOL,
// tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=NAME (see
// KafkaConfig.Security). Errors wrap ErrBadURL and never hold the
// password; the result is not validated (NewKafka does).
func ParseKafkaURL(s string) (KafkaConfig, error) {
	bad := func(format string, args ...any) (KafkaConfig, error) {
		return KafkaConfig{}, fmt.Errorf("%w %q: %s", ErrBadURL, s, fmt.Sprintf(format, args...))
	}
	rest, ok := strings.CutPrefix(s, "kafka:")
	if !ok {
		return bad("not a kafka: URL")
	}
	rest = strings.TrimPrefix(rest, "//")
	hosts, query, _ := strings.Cut(rest, "?")
	hosts = strings.TrimSuffix(hosts, "/")
	var user, password string
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		userinfo := hosts[:at]
		hosts = hosts[at+1:]
		u, p, ok := strings.Cut(userinfo, ":")
		if !ok || u == "" {
			return bad("credentials: want USER:PASSWORD@ before the brokers")
		}
		var err error
		if user, err = url.PathUnescape(u); err != nil {
			return bad("user: %v", err)
		}
		if password, err = url.PathUnescape(p); err != nil {
			return bad("password is not URL-escaped correctly")
		}
	}
	if hosts == "" || strings.Contains(hosts, "/") {
		return bad("kafka needs brokers: kafka://HOST:PORT[,HOST:PORT...][?OPTIONS]")
	}
	cfg := DefaultKafkaConfig()
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Brokers = append(cfg.Brokers, h)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad("options: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad("option %s given %d times", k, len(v))
		}
		if !slices.Contains(kafkaURLOptions, k) && cfg.topicFor(k) == nil {
			return bad("unknown option %q; options: %s, or a table name (%s) = topic", k, strings.Join(kafkaURLOptions, ", "), strings.Join(tableOrder[:], ", "))
		}
	}
	prefix := DefaultKafkaTopicPrefix
	if q.Has("prefix") {
		prefix = q.Get("prefix")
		if prefix == "" {
			return bad("prefix is empty")
		}
	}
	enabled := []string{TableWindows, TableWorkPeriods}
	if q.Has("tables") {
		enabled = nil
		for _, t := range strings.Split(q.Get("tables"), ",") {
			switch t = strings.TrimSpace(t); {
			case t == "all":
				enabled = append(enabled, tableOrder[:]...)
			case cfg.topicFor(t) != nil:
				enabled = append(enabled, t)
			case t == "":
			default:
				return bad("tables: unknown table %q; want names from %s, or all", t, strings.Join(tableOrder[:], ", "))
			}
		}
	}
	cfg.WindowsTopic, cfg.WorkPeriodsTopic = "", ""
	for _, t := range enabled {
		*cfg.topicFor(t) = prefix + "." + t
	}
	for _, t := range tableOrder {
		if q.Has(t) {
			if q.Get(t) == "" {
				return bad("%s= names no topic", t)
			}
			*cfg.topicFor(t) = q.Get(t)
		}
	}
	if cfg.topics() == [5]string{} {
		return bad("no table is written; list some in tables=")
	}
	cfg.CheckpointTopic = prefix + ".checkpoints"
	if q.Has("checkpoints") {
		if cfg.CheckpointTopic = q.Get("checkpoints"); cfg.CheckpointTopic == "" {
			return bad("checkpoints= names no topic")
		}
	}
	if q.Has("version") {
		cfg.Version = q.Get("version")
	}
	if q.Has("client_id") {
		cfg.ClientID = q.Get("client_id")
	}
	if q.Has("txn_prefix") {
		cfg.TransactionalIDPrefix = q.Get("txn_prefix")
	}
	if q.Has("txn_timeout") {
		d, err := time.ParseDuration(q.Get("txn_timeout"))
		if err != nil {
			return bad("txn_timeout: %v (e.g. 90s)", err)
		}
		cfg.TransactionTimeout = d
	}
	if q.Has("compression") {
		cfg.Compression = q.Get("compression")
	}
	if q.Has("create_topics") {
		b, err := strconv.ParseBool(q.Get("create_topics"))
		if err != nil {
			return bad("create_topics: want true or false")
		}
		cfg.CreateTopics = b
	}
	if q.Has("partitions") {
		n, err := strconv.ParseInt(q.Get("partitions"), 10, 32)
		if err != nil {
			return bad("partitions: want an integer")
		}
		cfg.TopicPartitions = int32(n)
	}
	if user != "" {
		cfg.Security.SASL = kafkaconf.SASL{Mechanism: kafkaconf.Plain, User: user, Password: password}
	}
	if q.Has("sasl") {
		if user == "" {
			return bad("sasl= needs USER:PASSWORD@ before the brokers")
		}
		cfg.Security.SASL.Mechanism = strings.ToUpper(q.Get("sasl"))
	}
	if q.Has("tls") {
		b, err := strconv.ParseBool(q.Get("tls"))
		if err != nil {
			return bad("tls: want true or false")
		}
		cfg.Security.TLS.Enable = b
	}
	cfg.Security.TLS.CAFile = q.Get("tls_ca")
	cfg.Security.TLS.CertFile = q.Get("tls_cert")
	cfg.Security.TLS.KeyFile = q.Get("tls_key")
	cfg.Security.TLS.ServerName = q.Get("tls_server_name")
	if q.Has("replication") {
		n, err := strconv.ParseInt(q.Get("replication"), 10, 16)
		if err != nil {
			return bad("replication: want an integer")
		}
		cfg.ReplicationFactor = int16(n)
	}
	return cfg, nil
}
