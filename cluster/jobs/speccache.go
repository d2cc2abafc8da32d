package jobs

import (
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/control"
)

// loadSpec is spec.Load; tests replace it to count parses.
var loadSpec = spec.Load

// specCache holds the result of loading each stored job's spec on this
// process, so that the paths that read a stored job (the leader's
// coordinator loop on every Raft apply, the runner, offset commits,
// failure reports, ValidateSpec's comparison with the stored revision,
// CheckSavepoint) parse its YAML once per revision instead of on every
// wake-up.
//
// An entry is per job name and holds one revision: it is used when the
// job's ModifyIndex and spec text are those it was loaded from (the text
// guards against two Raft logs in one process, as in tests, giving the
// same index to different specs) and every environment variable the
// spec's ${NAME} references resolved to is unchanged in this process (the
// cache is per process, as spec.Load's expansion is: each node expands the
// stored ${...} text with its own environment). A new revision replaces
// the entry; forget drops the entries of jobs no longer stored. Bounded:
// at most one entry per job name seen since the last forget.
type specCache struct {
	mu      sync.Mutex
	entries map[string]*specEntry
}

type specEntry struct {
	index uint64
	text  string
	env   []envRef // the lookups of the load, in order
	spec  *spec.Spec
	cfg   actors.Config
	err   error
}

// envRef is one environment lookup of a load and what it gave.
type envRef struct {
	name, value string
	ok          bool
}

func (e *specEntry) envUnchanged() bool {
	for _, r := range e.env {
		if v, ok := os.LookupEnv(r.name); v != r.value || ok != r.ok {
			return false
		}
	}
	return true
}

// specs is the process's cache of stored specs.
var specs = &specCache{entries: map[string]*specEntry{}}

// load returns the spec and configuration of the stored job j (spec.Load
// in spec.Cluster mode), from the cache when j's revision was loaded before.
// The Config is a copy the caller may change (its slices and maps are
// cloned); the *Spec is shared and must be treated as read-only.
func (c *specCache) load(j control.Job) (*spec.Spec, actors.Config, error) {
	c.mu.Lock()
	e := c.entries[j.Name]
	c.mu.Unlock()
	if e == nil || e.index != j.ModifyIndex || e.text != j.Spec || !e.envUnchanged() {
		e = &specEntry{index: j.ModifyIndex, text: j.Spec}
		lookup := func(name string) (string, bool) {
			v, ok := os.LookupEnv(name)
			e.env = append(e.env, envRef{name, v, ok})
			return v, ok
		}
		e.spec, e.cfg, e.err = loadSpec([]byte(j.Spec), spec.Options{Mode: spec.Cluster, Lookup: lookup})
		c.mu.Lock()
		if cur := c.entries[j.Name]; cur == nil || cur.index <= j.ModifyIndex {
			c.entries[j.Name] = e
		}
		c.mu.Unlock()
	}
	return e.spec, cloneConfig(e.cfg), e.err
}

// forget drops the entries of jobs that view does not store.
func (c *specCache) forget(view control.View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.entries {
		if _, ok := view.Job(name); !ok {
			delete(c.entries, name)
		}
	}
}

// cloneConfig copies the slices and maps of cfg, so that a caller's
// change does not reach the cached configuration.
func cloneConfig(cfg actors.Config) actors.Config {
	cfg.Source.Brokers = slices.Clone(cfg.Source.Brokers)
	cfg.Source.Partitions = slices.Clone(cfg.Source.Partitions)
	cfg.Source.EndOffsets = maps.Clone(cfg.Source.EndOffsets)
	return cfg
}
