package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/internal/promreg"
)

// metrics of one Membership (node-wide: no job label).
type metrics struct {
	members *prometheus.GaugeVec
	dropped prometheus.Counter
	reg     *promreg.Group
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_members",
			Help: "Number of cluster members known to this node, by status (alive, failed, left).",
		}, []string{"status"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_membership_events_dropped_total",
			Help: "Membership events not delivered because a subscriber's buffer was full.",
		}),
	}
	m.reg = promreg.NewGroup(reg)
	if err := m.reg.RegisterAll(m.members, m.dropped); err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	m.update(nil)
	return m, nil
}

// update recomputes the member gauges; caller holds the Membership lock.
func (m *metrics) update(members map[string]*control.Member) {
	counts := map[control.Status]int{control.StatusAlive: 0, control.StatusFailed: 0, control.StatusLeft: 0}
	for _, mem := range members {
		counts[mem.Status]++
	}
	for s, n := range counts {
		m.members.WithLabelValues(s.String()).Set(float64(n))
	}
}

func (m *metrics) unregister() { m.reg.UnregisterAll() }
