package devbroker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultTopic is the topic created when Config.Topics is empty: the input
// topic of the iot-work job.
const DefaultTopic = "iot-topic"

// DefaultPartitions is the partition count used when Config.Partitions is 0.
const DefaultPartitions = 12

// DefaultListen is the listen address of `eddy dev broker`: Kafka's usual
// port on the loopback interface.
const DefaultListen = "127.0.0.1:9092"

// ErrConfig wraps every Config validation error.
var ErrConfig = errors.New("devbroker: invalid config")

// Config configures Start. The zero value is usable: it listens on a free
// loopback port, creates "iot-topic" with 12 partitions, keeps everything in
// memory and logs nothing.
type Config struct {
	// Listen is the TCP host:port to listen on. Port 0 picks a free port
	// (see Broker.Addrs). Default "127.0.0.1:0". An unspecified host
	// ("", "0.0.0.0", "::") listens on every interface.
	Listen string

	// Advertise is the host clients are told to connect to in metadata
	// responses (Kafka's advertised.listeners host). Default: the listen
	// host, or 127.0.0.1 when the listen host is unspecified. The port is
	// always the listening port.
	Advertise string

	// Partitions is the partition count of the topics in Topics and of
	// auto-created topics; must be >= 0; default 12.
	Partitions int

	// Topics are created at start if they do not exist yet (a topic
	// reloaded from DataDir keeps its partition count). Default
	// ["iot-topic"]. Names follow Kafka's rules: 1-249 characters of
	// [a-zA-Z0-9._-].
	Topics []string

	// DataDir, if not empty, enables persistence below this directory (it
	// is created if needed). Default: in memory only.
	DataDir string

	// DisableAutoCreateTopics makes metadata requests for unknown topics
	// fail instead of creating them (Kafka's auto.create.topics.enable=false).
	DisableAutoCreateTopics bool

	// LogWriter receives kfake's log lines at LogLevel; nil (default)
	// silences the broker.
	LogWriter io.Writer

	// LogLevel is one of "error", "warn", "info", "debug"; default "warn".
	// Only used when LogWriter is set.
	LogLevel string

	// SASLUser and SASLPassword, when set (both or neither), make every
	// client authenticate with SASL as this superuser, with any of PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512 (kfake.EnableSASL, kfake.Superuser),
	// to try eddy's source.sasl locally. Default: no authentication.
	SASLUser, SASLPassword string
}

// DefaultConfig returns the configuration of `eddy dev broker`: listen on
// 127.0.0.1:9092, topic iot-topic with 12 partitions, in memory, silent.
func DefaultConfig() Config {
	return Config{
		Listen:     DefaultListen,
		Partitions: DefaultPartitions,
		Topics:     []string{DefaultTopic},
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if len(c.Topics) == 0 {
		c.Topics = []string{DefaultTopic}
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	return c
}

// Validate checks the configuration after defaults are applied. Errors wrap
// ErrConfig and say which field is wrong.
func (c Config) Validate() error {
	c = c.withDefaults()
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: want host:port, e.g. 127.0.0.1:9092 (%v)", ErrConfig, c.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: listen address %q: port must be 0..65535", ErrConfig, c.Listen)
	}
	_ = host
	if c.Partitions < 0 || c.Partitions > 10000 {
		return fmt.Errorf("%w: partitions = %d: must be 1..10000 (0 means the default %d)", ErrConfig, c.Partitions, DefaultPartitions)
	}
	for _, t := range c.Topics {
		if err := validTopic(t); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if (c.SASLUser == "") != (c.SASLPassword == "") {
		return fmt.Errorf("%w: SASL needs both a user and a password (or neither for no authentication)", ErrConfig)
	}
	return nil
}

func validTopic(t string) error {
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

func parseLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn", "warning":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, fmt.Errorf("log level %q: want none, error, warn, info or debug", s)
}

// Broker is a running embedded broker. Its methods are safe for concurrent
// use.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	cfg     Config

	closeOnce sync.Once
}

// Start validates cfg, starts listening and returns the running broker.
// With a DataDir it first reloads the persisted state. It fails if the
// address is in use, the data directory cannot be read or written, or a
// topic cannot be created.
func Start(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	level, _ := parseLevel(cfg.LogLevel)

	host, _, _ := net.SplitHostPort(cfg.Listen)
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = host
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			advertise = "127.0.0.1"
		}
	}

	var addr string
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, cfg.Listen)
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		addr = net.JoinHostPort(advertise, port)
		return &guardListener{Listener: ln, addr: advertisedAddr(addr)}, nil
	}

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ClusterID("eddy-dev"),
	}
	if !cfg.DisableAutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.LogWriter != nil {
		opts = append(opts, kfake.WithLogger(kfake.BasicLogger(cfg.LogWriter, level)))
	}
	if cfg.SASLUser != "" {
		opts = append(opts, kfake.EnableSASL())
		for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
			opts = append(opts, kfake.Superuser(m, cfg.SASLUser, cfg.SASLPassword))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devbroker: start on %s: %w", cfg.Listen, err)
	}
	b := &Broker{cluster: c, addr: addr, cfg: cfg}
	for _, t := range cfg.Topics {
		if err := c.CreateTopic(t, int32(cfg.Partitions), nil); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			b.Close()
			return nil, fmt.Errorf("devbroker: create topic %q: %w", t, err)
		}
	}
	return b, nil
}

// Addrs returns the bootstrap addresses of the broker (one host:port, with
// the advertised host and the actual listening port).
func (b *Broker) Addrs() []string { return []string{b.addr} }

// Partitions returns the partition count of topic, or 0 if it does not
// exist.
func (b *Broker) Partitions(topic string) int {
	return len(b.cluster.PartitionInfos(topic))
}

// Cluster returns the underlying kfake cluster, for tests that need its
// fault-injection controls (Control, Fault, DeleteRecords, ...).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops listening, closes client connections and, with a DataDir,
// saves the state to disk. It blocks until done and is idempotent.
func (b *Broker) Close() {
	b.closeOnce.Do(b.cluster.Close)
}

// advertisedAddr is what the listener reports as its Addr, because kfake
// puts the listener's address into metadata responses.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
