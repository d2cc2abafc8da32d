package actors

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/internal/promreg"
)

// Metrics are the job metrics of the partition actors on one node, with the
// names DESIGN.md lists. Create one per Job; it registers on the Registerer
// handed to NewJob (nil: not registered). The metrics carry no job label of
// their own: the caller registers them on a Registerer that adds one
// (promreg.ForJob: eddy_job="<job>"), so several jobs share one registry.
type Metrics struct {
	Received      prometheus.Counter
	Parsed        prometheus.Counter
	Failed        *prometheus.CounterVec // label reason
	Late          prometheus.Counter
	WindowsFired  prometheus.Counter
	WorkPeriods   prometheus.Counter
	Lag           *prometheus.GaugeVec // label partition
	Watermark     *prometheus.GaugeVec // label partition
	BatchSeconds  prometheus.Histogram
	ActorRestarts prometheus.Counter
	StateDevices  *prometheus.GaugeVec // label partition
	Backpressured *prometheus.GaugeVec // label partition

	// Checkpoints (checkpoints on).
	CheckpointSeconds          prometheus.Histogram
	CheckpointPartitionSeconds prometheus.Histogram
	CheckpointSyncSeconds      prometheus.Histogram
	CheckpointBytes            prometheus.Gauge
	CheckpointLastID           prometheus.Gauge
	Checkpoints                *prometheus.CounterVec // labels kind, result
	RestoreSeconds             prometheus.Histogram
	RestoreFallbacks           prometheus.Counter
	// SourceOffsetResets and SourceSkippedRecords: restores whose offset
	// was below the source partition's log start (clampToLogStart).
	SourceOffsetResets   prometheus.Counter
	SourceSkippedRecords prometheus.Counter
	// RecordLatency: eddy_record_latency_seconds, from a record's Kafka
	// timestamp to the sink commit of its output (see latencyTracker).
	RecordLatency prometheus.Histogram
}

// RecordLatencyBuckets are the buckets of eddy_record_latency_seconds:
// 1 ms to 60 s.
var RecordLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

// NewMetrics creates the job metrics and registers them on reg when reg is
// not nil. It panics when a metric is already registered on reg (like
// prometheus.MustRegister).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m, err := newMetrics(reg)
	if err != nil {
		panic(err)
	}
	return m
}

// newMetrics is NewMetrics returning the registration error instead; on
// error nothing stays registered.
func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_records_received_total",
			Help: "Source records received by partition actors, valid or not.",
		}),
		Parsed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_records_parsed_total",
			Help: "Source records decoded and validated (on time or late).",
		}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_records_failed_total",
			Help: "Source records sent to the dead-letter output, by reason.",
		}, []string{"reason"}),
		Late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_records_late_total",
			Help: "Valid records that arrived behind the watermark and went to the late output.",
		}),
		WindowsFired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_window_fired_total",
			Help: "Event-time windows fired (a re-fire under allowed lateness counts again).",
		}),
		WorkPeriods: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_work_periods_total",
			Help: "Work periods emitted.",
		}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_partition_lag_records",
			Help: "Records between the partition's high watermark offset and the next offset to process.",
		}, []string{"partition"}),
		Watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_partition_watermark_seconds",
			Help: "Event-time watermark of the partition, Unix seconds.",
		}, []string{"partition"}),
		BatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eddy_actor_batch_seconds",
			Help:    "Time a partition actor spends on one batch: operators plus sink write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		ActorRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_actor_restarts_total",
			Help: "Partition actors restarted by supervision after a panic.",
		}),
	}
	m.StateDevices = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eddy_state_devices",
		Help: "Devices with open keyed state (windows, buffered readings, open work period) in the partition.",
	}, []string{"partition"})
	m.Backpressured = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eddy_partition_backpressured",
		Help: "1 while the partition actor waits for space in a sink's full buffer (it reads no records meanwhile: backpressure, e.g. during a sink outage), else 0.",
	}, []string{"partition"})
	durations := prometheus.ExponentialBuckets(0.0005, 2, 18) // 0.5 ms .. 65 s
	m.CheckpointSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_checkpoint_duration_seconds",
		Help:    "Time from the start of a checkpoint or savepoint to its completion (every partition acked, manifest stored).",
		Buckets: durations,
	})
	m.CheckpointPartitionSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_checkpoint_partition_duration_seconds",
		Help:    "Time from a partition's checkpoint barrier to its ack: sink pre-commit, state flush and snapshot upload.",
		Buckets: durations,
	})
	m.CheckpointSyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_checkpoint_sync_duration_seconds",
		Help:    "Time a partition pauses processing at a checkpoint barrier (sink pre-commit and state flush; the upload runs concurrently).",
		Buckets: durations,
	})
	m.CheckpointBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_checkpoint_size_bytes",
		Help: "Total snapshot size of the last completed checkpoint or savepoint.",
	})
	m.CheckpointLastID = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_checkpoint_last_completed_id",
		Help: "Id of the last completed checkpoint or savepoint.",
	})
	m.Checkpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eddy_checkpoints_total",
		Help: "Checkpoints and savepoints by kind (checkpoint, savepoint) and result (completed, failed).",
	}, []string{"kind", "result"})
	m.RestoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_checkpoint_restore_duration_seconds",
		Help:    "Time a partition took to restore its state from a checkpoint at start.",
		Buckets: durations,
	})
	m.RestoreFallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_checkpoint_restore_fallbacks_total",
		Help: "Snapshots found corrupt or missing at restore; the partition fell back to an older checkpoint.",
	})
	m.SourceOffsetResets = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_source_offset_resets_total",
		Help: "Partition restores whose source offset was below the log start of the source partition (records deleted by retention); the partition resumed at the log start.",
	})
	m.SourceSkippedRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_source_skipped_records_total",
		Help: "Source records skipped by those resets: between the restored offset and the log start, lost to the job.",
	})
	m.RecordLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_record_latency_seconds",
		Help:    "Time from a source record's Kafka timestamp to the sink commit that made its output durable and visible (the first flush of every sink after the record's batch was written; with transactional sinks, the commit of the next checkpoint), in seconds.",
		Buckets: RecordLatencyBuckets,
	})
	if reg == nil {
		return m, nil
	}
	err := promreg.NewGroup(reg).RegisterAll(m.SourceOffsetResets, m.SourceSkippedRecords,
		m.Received, m.Parsed, m.Failed, m.Late, m.WindowsFired,
		m.WorkPeriods, m.Lag, m.Watermark, m.BatchSeconds, m.ActorRestarts, m.StateDevices, m.Backpressured,
		m.CheckpointSeconds, m.CheckpointPartitionSeconds, m.CheckpointSyncSeconds, m.CheckpointBytes,
		m.CheckpointLastID, m.Checkpoints, m.RestoreSeconds, m.RestoreFallbacks, m.RecordLatency)
	if err != nil {
		return nil, fmt.Errorf("actors: register job metrics: %w", err)
	}
	return m, nil
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }
