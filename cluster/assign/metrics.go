package assign

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/internal/promreg"
)

// assignerMetrics of one Assigner.
type assignerMetrics struct {
	owned           prometheus.Gauge
	epoch           *prometheus.GaugeVec
	handoffs        prometheus.Counter
	recoveries      prometheus.Counter
	recoverySeconds prometheus.Histogram
	fencings        prometheus.Counter
	fenced          prometheus.Gauge
	lost            prometheus.Counter
	startFailures   prometheus.Counter
	reg             *promreg.Group
}

func newAssignerMetrics(reg prometheus.Registerer) (*assignerMetrics, error) {
	m := &assignerMetrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_partitions_owned",
			Help: "Device partitions running on this node (lease held and started).",
		}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_partition_lease_epoch",
			Help: "Lease epoch (fencing token) under which a partition runs on this node; absent when it does not run here.",
		}, []string{"eddy_job", "partition"}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_partition_handoffs_total",
			Help: "Partitions this node handed over to their new desired owner (drained, snapshotted, lease released).",
		}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_partition_recoveries_total",
			Help: "Partitions this node took over from a dead or fenced lease holder and started.",
		}),
		recoverySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eddy_partition_recovery_seconds",
			Help:    "Time from this node seeing a partition's lease holder fail to the partition running on this node, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 13), // 10 ms .. 41 s
		}),
		fencings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_partition_fencings_total",
			Help: "Times this node lost contact with the Raft majority for the lease-confirm interval and stopped all its partitions.",
		}),
		fenced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_partition_fenced",
			Help: "1 while this node is fenced (no confirmed contact with the Raft majority: it runs no partitions), else 0.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_partition_leases_lost_total",
			Help: "Partitions stopped on this node because another node took their lease over.",
		}),
		startFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_partition_start_failures_total",
			Help: "Partition starts that failed after the lease was granted (retried with backoff).",
		}),
	}
	m.fenced.Set(1)
	m.reg = promreg.NewGroup(reg)
	if err := m.reg.RegisterAll(m.owned, m.epoch, m.handoffs, m.recoveries, m.recoverySeconds, m.fencings, m.fenced, m.lost, m.startFailures); err != nil {
		return nil, fmt.Errorf("control: register assigner metrics: %w", err)
	}
	return m, nil
}

func (m *assignerMetrics) unregister() { m.reg.UnregisterAll() }
