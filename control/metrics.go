package control

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/internal/promreg"
)

// metrics of one Node. Gauges are read from Raft and the FSM at scrape time.
type metrics struct {
	leaderChanges prometheus.Counter
	applySeconds  prometheus.Histogram
	autopilot     *prometheus.CounterVec
	httpRequests  *prometheus.CounterVec
	reg           *promreg.Group
}

func newMetrics(reg prometheus.Registerer, n *Node) (*metrics, error) {
	m := &metrics{
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_raft_leader_changes_total",
			Help: "Raft leader changes observed by this node (including to 'no leader').",
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eddy_raft_apply_seconds",
			Help:    "Time from proposing a command on the leader to its being applied to the leader's FSM, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}),
		autopilot: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_raft_autopilot_actions_total",
			Help: "Raft configuration changes made by this node as leader: added_nonvoter, promoted, removed.",
		}, []string{"action"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_control_http_requests_total",
			Help: "HTTP API requests served by this node, by method and status code.",
		}, []string{"method", "code"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg = promreg.NewGroup(reg)
	if err := m.reg.RegisterAll(
		m.leaderChanges, m.applySeconds, m.autopilot, m.httpRequests,
		gauge("eddy_raft_state", "Raft state of this node: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
			func() float64 { return float64(n.raft.State()) }),
		gauge("eddy_raft_last_index", "Last Raft log index stored on this node.",
			func() float64 { return float64(n.raft.LastIndex()) }),
		gauge("eddy_raft_commit_index", "Raft commit index known to this node.",
			func() float64 { return float64(n.raft.CommitIndex()) }),
		gauge("eddy_raft_applied_index", "Last Raft log index applied to this node's FSM.",
			func() float64 { return float64(n.fsm.View().Index()) }),
		gauge("eddy_raft_fsm_keys", "Configuration keys in this node's FSM replica.",
			func() float64 { return float64(n.fsm.View().Len()) }),
		gauge("eddy_raft_fsm_bytes", "Total size of configuration keys and values in this node's FSM replica, in bytes.",
			func() float64 { return float64(n.fsm.View().Bytes()) }),
		gauge("eddy_raft_devices", "Devices known to this node's broadcast device lookup.",
			func() float64 { return float64(n.fsm.Devices().Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eddy_raft_fsm_restores_total",
			Help: "Times this node's FSM was restored from a snapshot (at start or installed from the leader).",
		}, func() float64 { return float64(n.fsm.Restores()) }),
	); err != nil {
		return nil, fmt.Errorf("control: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) unregister() { m.reg.UnregisterAll() }
