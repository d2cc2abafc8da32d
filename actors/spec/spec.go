package spec

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
)

// Spec is a YAML job spec, the production description of a job (see
// deploy/jobs/iot-work.yaml for a documented example). Unset fields take the
// defaults of actors.DefaultConfig. Durations are Go durations ("1m", "500ms").
type Spec struct {
	Name   string `yaml:"name"`
	Source struct {
		Brokers     []string `yaml:"brokers"`
		Topic       string   `yaml:"topic"`
		Partitions  []int32  `yaml:"partitions"`
		StartOffset string   `yaml:"start_offset"`
		Bounded     bool     `yaml:"bounded"`
		// EndOffsets, partition → offset, bound the job at these offsets
		// (exclusive) instead of the end at start; implies bounded.
		EndOffsets   map[int32]int64 `yaml:"end_offsets"`
		KafkaVersion string          `yaml:"kafka_version"`
		// GroupID is the Kafka consumer group to which the source offsets
		// of every completed checkpoint are committed (the next offset to
		// read of each partition), so that kafka-consumer-groups
		// --describe and Burrow show the job's lag. Informational only: a
		// restore resumes from the checkpoint, never from the group; a
		// failed commit is a warning and eddy_offset_commits_total{result=
		// "error"}. Default "eddy-<name>"; "-" = no commits; no
		// whitespace or control characters, at most 249 bytes. Use a
		// group no other consumer joins (its members make the broker
		// refuse eddy's commits).
		GroupID string `yaml:"group_id"`
		// TLS to the brokers (see kafkaconf.TLS): enable, ca_file,
		// cert_file, key_file, server_name.
		TLS struct {
			Enable     bool   `yaml:"enable"`
			CAFile     string `yaml:"ca_file"`
			CertFile   string `yaml:"cert_file"`
			KeyFile    string `yaml:"key_file"`
			ServerName string `yaml:"server_name"`
		} `yaml:"tls"`
		// SASL authentication (see kafkaconf.SASL): mechanism PLAIN,
		// SCRAM-SHA-256 or SCRAM-SHA-512, user, password — write the
		// password as "${KAFKA_PASSWORD}" so that the stored spec keeps
		// only the reference.
		SASL struct {
			Mechanism string `yaml:"mechanism"`
			User      string `yaml:"user"`
			Password  string `yaml:"password"`
		} `yaml:"sasl"`
	} `yaml:"source"`
	Format struct {
		TimeZone        string `yaml:"time_zone"`
		MaxMessageBytes int    `yaml:"max_message_bytes"`
	} `yaml:"format"`
	EventTime struct {
		OutOfOrderness  *Duration `yaml:"out_of_orderness"`
		AllowedLateness *Duration `yaml:"allowed_lateness"`
		// MaxFuture is the watermark guard: a reading more than this ahead
		// of the wall clock is a dead letter (future_event_time) and does
		// not move the watermark. Unset: operators.DefaultMaxFuture (1h)
		// for an unbounded source, 0 (off) for a bounded one; "0s" = off.
		// At most operators.MaxGuardDuration. See operators.Config.MaxFuture.
		MaxFuture *Duration `yaml:"max_future"`
		// IdleTimeout, unbounded sources only: once a partition has
		// received no record for this long, its watermark follows
		// processing time (Flink's withIdleness). Unset or "0s": off.
		// See operators.Config.IdleTimeout.
		IdleTimeout *Duration `yaml:"idle_timeout"`
	} `yaml:"event_time"`
	Window struct {
		Kind  string    `yaml:"kind"`
		Size  *Duration `yaml:"size"`
		Slide *Duration `yaml:"slide"`
		Gap   *Duration `yaml:"gap"`
	} `yaml:"window"`
	WorkPeriods struct {
		Threshold *float64  `yaml:"threshold"`
		MaxGap    *Duration `yaml:"max_gap"`
	} `yaml:"work_periods"`
	Broadcast struct {
		// DevicesFile is a JSON or YAML map pboxid → {company, site,
		// threshold}; relative to the working directory.
		DevicesFile string `yaml:"devices_file"`
	} `yaml:"broadcast"`
	// Sink is a sink URL: sqlite:PATH, mysql:DSN, postgres://URL, clickhouse://URL, stdout,
	// ndjson:PATH, discard, kafka://HOST:PORT (see sinks.URLForms).
	Sink string `yaml:"sink"`
	// Sinks are more sink URLs; the job writes every row to each sink.
	Sinks []string `yaml:"sinks"`
	// SinkOptions tune the SQL sinks (see SinkConfig).
	SinkOptions struct {
		// BufferBytes bounds the rows a SQL sink buffers (every
		// partition of the job together); when full, partitions stop
		// reading until a write frees space (backpressure: nothing is
		// dropped). See sinks.Config.MaxBufferBytes; default 64 MiB.
		BufferBytes int64 `yaml:"buffer_bytes"`
		// BatchRows is how many rows one write transaction and one
		// INSERT carry at most; see sinks.Config.BatchRows; default 1000.
		BatchRows int `yaml:"batch_rows"`
		// BatchBytes (MySQL) is the size one multi-row INSERT is filled
		// to; see sinks.Config.BatchBytes; default 256 KiB.
		BatchBytes int `yaml:"batch_bytes"`
		// Conns (MySQL) is how many connections, one transaction each,
		// a flush writes over in parallel; see sinks.Config.Conns;
		// default 1.
		Conns int `yaml:"conns"`
		// Prepared (MySQL) writes the upserts as server-side prepared
		// statements, each shape prepared once per connection; false
		// sends their text every time; see
		// sinks.Config.TextStatements; default true.
		Prepared *bool `yaml:"prepared"`
		// FlushInterval is how often the job writes what the SQL sinks
		// (and every other plain sink) buffer, whatever the rate: the
		// bound on how long a row waits before it is written; see
		// actors.Config.SinkFlushInterval; default 500ms.
		FlushInterval *Duration `yaml:"flush_interval"`
		// FlushOnIdle also writes what the plain sinks buffer as soon as
		// a partition is caught up (a batch closed by batch_linger, not
		// full, at the high-water mark), instead of waiting for
		// flush_interval: rows are visible
		// within milliseconds at low rates, and at high rates flushes run
		// back to back; see actors.Config.SinkFlushOnIdle; default true.
		FlushOnIdle *bool `yaml:"flush_on_idle"`
	} `yaml:"sink_options"`
	// Checkpoint configures checkpoints (see actors.CheckpointConfig); without
	// storage there are none.
	Checkpoint struct {
		Storage  string    `yaml:"storage"`
		Interval *Duration `yaml:"interval"`
		Timeout  *Duration `yaml:"timeout"`
		Retain   int       `yaml:"retain"`
		// AckTimeout (cluster jobs) bounds how long the coordinator waits
		// for the acks of a checkpoint before it aborts it and starts the
		// next; see Spec.CheckpointAckTimeout.
		AckTimeout *Duration `yaml:"ack_timeout"`
	} `yaml:"checkpoint"`
	// State configures the pebble state backend (see actors.StateConfig).
	State struct {
		Dir          string `yaml:"dir"`
		CacheDevices int    `yaml:"cache_devices"`
		CacheBytes   int64  `yaml:"cache_bytes"`
	} `yaml:"state"`
	// Metrics configures what eddy run does with the job's metrics
	// besides serving them on --metrics-addr.
	Metrics struct {
		// Pushgateway is the URL (http:// or https://, optional
		// user:password@ for basic auth) of a Prometheus Pushgateway that
		// eddy run pushes the job's final metrics to when the job ends
		// (see CheckPushgatewayURL); "" = off. eddy run only: a cluster
		// spec with it is refused. --pushgateway and $EDDY_PUSHGATEWAY
		// override it.
		Pushgateway string `yaml:"pushgateway"`
	} `yaml:"metrics"`
	// BatchSize and BatchLinger tune actor batches; see actors.Config.
	BatchSize   int       `yaml:"batch_size"`
	BatchLinger *Duration `yaml:"batch_linger"`

	// env maps the values Load expanded from ${NAME} to "${NAME}"
	// (see HideEnv).
	env map[string]string
}

// SinkConfig returns the sinks' configuration of the spec: sinks.DefaultConfig
// with the sink_options that are set. Validate it with sinks.Config.Validate.
func (s *Spec) SinkConfig() sinks.Config {
	c := sinks.DefaultConfig()
	if s.SinkOptions.BufferBytes != 0 {
		c.MaxBufferBytes = s.SinkOptions.BufferBytes
	}
	if s.SinkOptions.BatchRows != 0 {
		c.BatchRows = s.SinkOptions.BatchRows
	}
	if s.SinkOptions.BatchBytes != 0 {
		c.BatchBytes = s.SinkOptions.BatchBytes
	}
	if s.SinkOptions.Conns != 0 {
		c.Conns = s.SinkOptions.Conns
	}
	if s.SinkOptions.Prepared != nil {
		c.TextStatements = !*s.SinkOptions.Prepared
	}
	return c
}

// Duration is a time.Duration that reads from YAML as "1m30s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"1m\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Parse reads a YAML job spec. Unknown fields are errors (a typo must not
// silently fall back to a default).
func Parse(data []byte) (*Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("spec: job spec: %w", err)
	}
	return &s, nil
}

// Config returns the job configuration the spec describes for mode,
// validated: actors.DefaultConfig with the fields that are set. The
// conversion is the same in every mode; a field mode does not allow is an
// error (see Mode). It stops at the first mistake; Load and LoadValue
// report all of them, each naming its field.
func (s *Spec) Config(mode Mode) (actors.Config, error) {
	c := actors.DefaultConfig()
	if err := s.modeError(mode); err != nil {
		return c, err
	}
	if s.Name != "" {
		c.Name = s.Name
	}
	c.Source.Brokers = s.Source.Brokers
	setIf(&c.Source.Topic, s.Source.Topic)
	setIf(&c.Source.StartOffset, s.Source.StartOffset)
	setIf(&c.Source.KafkaVersion, s.Source.KafkaVersion)
	c.Source.GroupID = s.Source.GroupID
	c.Source.Security = kafkaconf.Security{
		TLS:  kafkaconf.TLS(s.Source.TLS),
		SASL: kafkaconf.SASL{Mechanism: s.Source.SASL.Mechanism, User: s.Source.SASL.User, Password: s.Source.SASL.Password},
	}
	c.Source.Partitions = s.Source.Partitions
	c.Source.Bounded = s.Source.Bounded || len(s.Source.EndOffsets) > 0
	c.Source.EndOffsets = s.Source.EndOffsets
	if s.Format.TimeZone != "" {
		loc, err := time.LoadLocation(s.Format.TimeZone)
		if err != nil {
			return c, fmt.Errorf("spec: job spec format.time_zone: %w", err)
		}
		c.Operators.Location = loc
	}
	if s.Format.MaxMessageBytes != 0 {
		c.Operators.MaxMessageBytes = s.Format.MaxMessageBytes
	}
	setDur(&c.Operators.OutOfOrderness, s.EventTime.OutOfOrderness)
	setDur(&c.Operators.AllowedLateness, s.EventTime.AllowedLateness)
	c.Operators.MaxFuture = DefaultMaxFuture(c.Source.Bounded)
	setDur(&c.Operators.MaxFuture, s.EventTime.MaxFuture)
	setDur(&c.Operators.IdleTimeout, s.EventTime.IdleTimeout)
	if err := CheckGuards(c.Operators.MaxFuture, c.Operators.IdleTimeout, c.Source.Bounded, "event_time.max_future", "event_time.idle_timeout"); err != nil {
		return c, fmt.Errorf("spec: job spec %w", err)
	}
	if s.Window.Kind != "" {
		c.Operators.Window.Kind = operators.WindowKind(s.Window.Kind)
	}
	setDur(&c.Operators.Window.Size, s.Window.Size)
	setDur(&c.Operators.Window.Slide, s.Window.Slide)
	setDur(&c.Operators.Window.Gap, s.Window.Gap)
	if s.WorkPeriods.Threshold != nil {
		c.Operators.Threshold = *s.WorkPeriods.Threshold
	}
	setDur(&c.Operators.MaxGap, s.WorkPeriods.MaxGap)
	if s.BatchSize != 0 {
		c.BatchSize = s.BatchSize
	}
	setDur(&c.BatchLinger, s.BatchLinger)
	setDur(&c.SinkFlushInterval, s.SinkOptions.FlushInterval)
	if s.SinkOptions.FlushOnIdle != nil {
		c.SinkFlushOnIdle = *s.SinkOptions.FlushOnIdle
	}
	c.Checkpoint.Storage = s.Checkpoint.Storage
	setDur(&c.Checkpoint.Interval, s.Checkpoint.Interval)
	setDur(&c.Checkpoint.Timeout, s.Checkpoint.Timeout)
	if s.Checkpoint.Retain != 0 {
		c.Checkpoint.Retain = s.Checkpoint.Retain
	}
	c.State.Dir = s.State.Dir
	if s.State.CacheDevices != 0 {
		c.State.CacheDevices = s.State.CacheDevices
	}
	if s.State.CacheBytes != 0 {
		c.State.CacheBytes = s.State.CacheBytes
	}
	if len(s.SinkURLs()) == 0 {
		return c, errors.New("spec: job spec: sink is required (e.g. sink: \"mysql:user:pass@tcp(127.0.0.1:3306)/eddy\")")
	}
	for i, u := range s.Sinks {
		if u == "" {
			return c, fmt.Errorf("spec: job spec: sinks[%d] is empty", i)
		}
	}
	if a := s.Checkpoint.AckTimeout; a != nil && (time.Duration(*a) < time.Second || time.Duration(*a) > c.Checkpoint.Timeout) {
		return c, fmt.Errorf("spec: job spec: checkpoint.ack_timeout is %v; it must be >= 1s and <= checkpoint.timeout (%v); leave it out for max(3 x interval, 30s)", time.Duration(*a), c.Checkpoint.Timeout)
	}
	return c, c.Validate()
}

// MinCheckpointAckTimeout is the floor of the default checkpoint ack
// timeout of cluster jobs.
const MinCheckpointAckTimeout = 30 * time.Second

// CheckpointAckTimeout returns how long the checkpoint coordinator of a
// cluster job waits for the acks of a checkpoint before it aborts it (the
// partitions that failed retry at the next one): checkpoint.ack_timeout if
// set, else max(3 x interval, 30 s), never more than timeout (the
// checkpoint.timeout of cfg).
func (s *Spec) CheckpointAckTimeout(cfg actors.CheckpointConfig) time.Duration {
	d := max(3*cfg.Interval, MinCheckpointAckTimeout)
	if a := s.Checkpoint.AckTimeout; a != nil {
		d = time.Duration(*a)
	}
	return min(d, cfg.Timeout)
}

// SinkURLs returns the sink URLs of the spec: Sink (if set), then Sinks.
func (s *Spec) SinkURLs() []string {
	var out []string
	if s.Sink != "" {
		out = append(out, s.Sink)
	}
	return append(out, s.Sinks...)
}

// DefaultMaxFuture is the event_time.max_future of a job that does not set
// it: operators.DefaultMaxFuture for an unbounded source, 0 (off) for a
// bounded one, whose output must not depend on the wall clock.
func DefaultMaxFuture(bounded bool) time.Duration {
	if bounded {
		return 0
	}
	return operators.DefaultMaxFuture
}

// CheckGuards validates the watermark guards of a job under the names the
// user gave them (spec fields or flags): both >= 0, whole milliseconds, at
// most operators.MaxGuardDuration, and no idle timeout on a bounded source.
func CheckGuards(maxFuture, idleTimeout time.Duration, bounded bool, maxFutureName, idleName string) error {
	for _, g := range []struct {
		name string
		v    time.Duration
	}{{maxFutureName, maxFuture}, {idleName, idleTimeout}} {
		switch {
		case g.v < 0:
			return fmt.Errorf("%s must be >= 0 (0 = off), got %v", g.name, g.v)
		case g.v%time.Millisecond != 0:
			return fmt.Errorf("%s must be a whole number of milliseconds, got %v", g.name, g.v)
		case g.v > operators.MaxGuardDuration:
			return fmt.Errorf("%s must be at most %v (a longer guard is no guard), got %v", g.name, operators.MaxGuardDuration, g.v)
		}
	}
	if bounded && idleTimeout > 0 {
		return fmt.Errorf("%s applies only to unbounded sources: it makes the output depend on processing time, and a bounded replay must not; remove it or make the source unbounded", idleName)
	}
	return nil
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setDur(dst *time.Duration, v *Duration) {
	if v != nil {
		*dst = time.Duration(*v)
	}
}
