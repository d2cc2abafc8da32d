package assign

import (
	"sync"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// leaseClock is the holder's side of the lease timing: for every partition
// lease this node holds (job, partition, epoch), until when it may still
// process and write. Times are the node's monotonic clock. A lease is valid
// until the send time of its newest Raft-confirmed renewal (the acquire, or a
// LeaseRenew whose result listed it) + TTL − Safety. Expiry is sticky: once
// a check saw a lease expired, a late renewal never revives it — the
// partition may have dropped rows meanwhile, so it must be stopped and
// started again under a new epoch (from its last checkpoint).
//
// Safe for concurrent use: the sinks' lease guard calls valid from the
// partitions' goroutines.
type leaseClock struct {
	ttl, safety time.Duration

	mu     sync.Mutex
	leases map[leaseID]*leaseTerm
	node   time.Time // validity of the node lease itself (zero: never renewed)
}

type leaseID struct {
	job   string
	p     int32
	epoch uint64
}

type leaseTerm struct {
	until   time.Time
	expired bool
}

func newLeaseClock(ttl, safety time.Duration) *leaseClock {
	return &leaseClock{ttl: ttl, safety: safety, leases: map[leaseID]*leaseTerm{}}
}

// term is how long a renewal sent at sent keeps a lease valid.
func (c *leaseClock) term(sent time.Time) time.Time { return sent.Add(c.ttl - c.safety) }

// granted records an acquire sent at sent that Raft granted.
func (c *leaseClock) granted(l control.Lease, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leases[leaseID{l.Job, l.Partition, l.Epoch}] = &leaseTerm{until: c.term(sent)}
	c.node = later(c.node, c.term(sent))
}

// renewed records a renewal sent at sent; held is what Raft said this node
// holds at the renewal.
func (c *leaseClock) renewed(held []control.Lease, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.term(sent)
	c.node = later(c.node, until)
	for _, l := range held {
		if t := c.leases[leaseID{l.Job, l.Partition, l.Epoch}]; t != nil && !t.expired {
			t.until = later(t.until, until)
		}
	}
}

// valid reports whether the lease (job, p, epoch) is held and unexpired at
// now; a false answer for a known lease is final.
func (c *leaseClock) valid(job string, p int32, epoch uint64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.leases[leaseID{job, p, epoch}]
	if t == nil || t.expired {
		return false
	}
	if !now.Before(t.until) {
		t.expired = true
		return false
	}
	return true
}

// nodeValid reports whether this node's own lease is unexpired at now.
func (c *leaseClock) nodeValid(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Before(c.node)
}

// forget ends the lease (job, p, epoch) on this node (stopped, handed off).
func (c *leaseClock) forget(job string, p int32, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.leases, leaseID{job, p, epoch})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// renewWatch is the taker's side: per node, the newest NodeLease.RenewIndex
// seen in the local replica and when (this node's monotonic clock) it was
// first seen. Owned by the Assigner's loop.
type renewWatch map[string]renewSeen

type renewSeen struct {
	index   uint64
	since   time.Time // when index was first seen
	expires time.Time // since + the node's TTL + safety: a takeover may follow
}

// observe updates the watch from the view; nodes that never renewed are
// watched from now with index 0 and the local timing.
func (w renewWatch) observe(v control.View, owners []string, ttl, safety time.Duration, now time.Time) {
	for _, nl := range v.NodeLeases() {
		w.see(nl.Node, nl.RenewIndex, time.Duration(nl.TTLMs)*time.Millisecond, time.Duration(nl.SafetyMs)*time.Millisecond, ttl, safety, now)
	}
	for _, o := range owners {
		w.watch(o, ttl, safety, now)
	}
}

// watch starts watching node from now, with index 0 and the local timing,
// unless it is watched already.
func (w renewWatch) watch(node string, ttl, safety time.Duration, now time.Time) {
	if _, ok := w[node]; !ok {
		w.see(node, 0, 0, 0, ttl, safety, now)
	}
}

func (w renewWatch) see(node string, index uint64, ttl, safety, defTTL, defSafety time.Duration, now time.Time) {
	if ttl <= 0 {
		ttl, safety = defTTL, defSafety
	}
	s, ok := w[node]
	if ok && s.index == index {
		return
	}
	w[node] = renewSeen{index: index, since: now, expires: now.Add(ttl + safety)}
}

// expired reports whether node's lease has provably expired at now, and the
// renewal index a takeover must name.
func (w renewWatch) expired(node string, now time.Time) (uint64, time.Time, bool) {
	s, ok := w[node]
	if !ok {
		return 0, time.Time{}, false
	}
	return s.index, s.since, !now.Before(s.expires)
}
