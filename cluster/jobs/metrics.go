package jobs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors"
)

// metrics of a Service, registered on Config.Registerer (a second Service
// in the same process shares the first one's collectors).
type metrics struct {
	// snapshotsDeleted: eddy_checkpoint_snapshots_deleted_total.
	snapshotsDeleted prometheus.Counter
	// aborts: eddy_checkpoint_aborts_total.
	aborts prometheus.Counter
	// restarts: eddy_partition_restarts_total{reason}.
	restarts *prometheus.CounterVec
	// offsetCommits: eddy_offset_commits_total{result} of the leader's
	// consumer-group offset commits (actors.NewOffsetCommitMetrics).
	offsetCommits *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		snapshotsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_checkpoint_snapshots_deleted_total",
			Help: "Snapshot objects the Raft leader deleted from checkpoint storage because no retained checkpoint, handoff point or job references them.",
		}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_checkpoint_aborts_total",
			Help: "Checkpoints this node, as Raft leader, aborted because acks were missing after the job's checkpoint ack timeout.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_partition_restarts_total",
			Help: "Partitions this node restarted in place from their last restore point, by reason: failed (source, sink or state error), checkpoint_aborted (transactional sinks: the open transaction of an aborted checkpoint was aborted).",
		}, []string{"reason"}),
	}
	m.offsetCommits = actors.NewOffsetCommitMetrics(nil)
	m.restarts.WithLabelValues("failed")
	m.restarts.WithLabelValues("checkpoint_aborted")
	if reg != nil {
		tolerantRegisterer{reg}.MustRegister(m.snapshotsDeleted, m.aborts, m.restarts, m.offsetCommits)
	}
	return m
}
