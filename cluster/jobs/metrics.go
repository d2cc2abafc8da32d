package jobs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/internal/promreg"
)

// metrics of a Service, registered on Config.Registerer, node-wide (no job
// label but eddy_offset_commits_total's eddy_job); unregistered when the
// Service closes. The metrics of each job
// runtime are registered apart, with the job label (jobRuntime.reg).
type metrics struct {
	reg *promreg.Group
	// snapshotsDeleted: eddy_checkpoint_snapshots_deleted_total.
	snapshotsDeleted prometheus.Counter
	// aborts: eddy_checkpoint_aborts_total.
	aborts prometheus.Counter
	// restarts: eddy_partition_restarts_total{reason}.
	restarts *prometheus.CounterVec
	// offsetCommits: eddy_offset_commits_total{eddy_job,result} of the
	// leader's consumer-group offset commits, for every job
	// (actors.NewOffsetCommitMetrics; curried by job for each committer).
	offsetCommits *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: promreg.NewGroup(reg),
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
	m.offsetCommits = actors.NewOffsetCommitMetrics(nil, promreg.JobLabel)
	m.restarts.WithLabelValues("failed")
	m.restarts.WithLabelValues("checkpoint_aborted")
	if err := m.reg.RegisterAll(m.snapshotsDeleted, m.aborts, m.restarts, m.offsetCommits); err != nil {
		return nil, fmt.Errorf("jobs: register metrics: %w", err)
	}
	return m, nil
}
