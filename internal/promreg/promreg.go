// Package promreg is how eddy components register their Prometheus
// collectors: a Group registers on an injected prometheus.Registerer,
// remembers what it registered, and unregisters exactly that when its owner
// closes. So a component opened again (a job runtime re-created after a
// revision change, a node restarted in a test) registers cleanly, and a
// registration that fails half-way leaves nothing behind.
//
// Per-job collectors register on ForJob, which adds the constant label
// JobLabel (eddy_job) to every series: several jobs on one node export the
// same metric names, told apart by eddy_job. Node-wide collectors (Raft,
// membership, HTTP, the partition assigner) use NewGroup and carry no job
// label.
package promreg

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// JobLabel is the label that tells the series of one job from another's on
// the same node: eddy_job="<job name>". It is not "job" because Prometheus
// attaches its own target label job (the scrape job) to every scraped
// series; a series that already has a job label gets it renamed to
// exported_job, and queries written for job would find nothing.
const JobLabel = "eddy_job"

// Group is a prometheus.Registerer that registers on a parent Registerer
// and remembers the collectors it registered, so that UnregisterAll removes
// exactly those. A nil parent registers nothing (every call succeeds).
// Collectors are told apart by ==, so they must be comparable (pointers, as
// every prometheus constructor returns). Safe for concurrent use.
type Group struct {
	parent prometheus.Registerer

	mu  sync.Mutex
	reg []prometheus.Collector
}

var _ prometheus.Registerer = (*Group)(nil)

// NewGroup returns a Group registering on parent (nil: nowhere).
func NewGroup(parent prometheus.Registerer) *Group { return &Group{parent: parent} }

// ForJob returns a Group registering on parent with the constant label
// eddy_job=job added to every series (prometheus.WrapRegistererWith). nil
// parent: nowhere.
func ForJob(parent prometheus.Registerer, job string) *Group {
	if parent == nil {
		return &Group{}
	}
	return &Group{parent: prometheus.WrapRegistererWith(prometheus.Labels{JobLabel: job}, parent)}
}

// Register registers c on the parent and remembers it. Errors are the
// parent's (prometheus.AlreadyRegisteredError when an equal collector is
// registered already: c is then not remembered, and UnregisterAll leaves
// the existing one to whoever registered it).
func (g *Group) Register(c prometheus.Collector) error {
	if g.parent == nil {
		return nil
	}
	if err := g.parent.Register(c); err != nil {
		return err
	}
	g.mu.Lock()
	g.reg = append(g.reg, c)
	g.mu.Unlock()
	return nil
}

// MustRegister registers cs in order and panics on the first error, like
// prometheus.MustRegister.
func (g *Group) MustRegister(cs ...prometheus.Collector) {
	if err := g.RegisterAll(cs...); err != nil {
		panic(err)
	}
}

// RegisterAll registers cs in order. On the first error it unregisters
// those of cs it registered and returns the error: all or nothing.
func (g *Group) RegisterAll(cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := g.Register(c); err != nil {
			for _, r := range cs[:i] {
				g.Unregister(r)
			}
			return err
		}
	}
	return nil
}

// Unregister unregisters c from the parent and forgets it.
func (g *Group) Unregister(c prometheus.Collector) bool {
	if g.parent == nil {
		return false
	}
	g.mu.Lock()
	for i, r := range g.reg {
		if r == c {
			g.reg = append(g.reg[:i], g.reg[i+1:]...)
			break
		}
	}
	g.mu.Unlock()
	return g.parent.Unregister(c)
}

// UnregisterAll unregisters every collector the Group registered and
// forgets them. Idempotent; the Group may register again afterwards.
func (g *Group) UnregisterAll() {
	g.mu.Lock()
	cs := g.reg
	g.reg = nil
	g.mu.Unlock()
	for _, c := range cs {
		g.parent.Unregister(c)
	}
}
