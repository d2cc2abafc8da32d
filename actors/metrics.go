package actors

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the job metrics of the partition actors on one node, with the
// names DESIGN.md lists. Create one per Job; it registers on the Registerer
// handed to NewJob (nil: not registered), so tests can run many jobs in one
// process.
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
}

// NewMetrics creates the job metrics and registers them on reg when reg is
// not nil. It panics when a metric is already registered on reg (like
// prometheus.MustRegister).
func NewMetrics(reg prometheus.Registerer) *Metrics {
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
	if reg != nil {
		reg.MustRegister(m.SourceOffsetResets, m.SourceSkippedRecords)
		reg.MustRegister(m.Received, m.Parsed, m.Failed, m.Late, m.WindowsFired,
			m.WorkPeriods, m.Lag, m.Watermark, m.BatchSeconds, m.ActorRestarts, m.StateDevices, m.Backpressured,
			m.CheckpointSeconds, m.CheckpointPartitionSeconds, m.CheckpointSyncSeconds, m.CheckpointBytes,
			m.CheckpointLastID, m.Checkpoints, m.RestoreSeconds, m.RestoreFallbacks)
	}
	return m
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }
