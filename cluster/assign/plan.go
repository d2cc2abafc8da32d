package assign

import (
	"slices"
	"sort"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// The Assigner is split in two, the etcd-io/raft way (RawNode decides,
// the caller does the I/O):
//
//   - planner (this file) decides. plan(planInput) turns one look at the
//     world — the FSM view, the gossip members, the time of the last
//     confirmed Raft contact, the partition counts, the time now — into
//     the operations to perform (acquire and start, hand off, stop,
//     release, cancel) and the Assignable flag to gossip; finish(opResult)
//     applies the outcome of one operation. It starts no goroutine, does
//     no I/O and reads no clock: time comes in as planInput.Now.
//   - Assigner (assigner.go) is the thin loop around it: it gathers the
//     input, performs each op on its own goroutine (Raft applies, Runner
//     calls), logs, counts metrics and feeds the results back.
//
// The planner's lease rules are those of the package documentation (Leases
// and time): a partition whose lease expired on this node's lease clock, or
// that Raft no longer says is this node's, is stopped; a lease held by
// another node is taken over only after that node's RenewIndex has been
// unchanged for its TTL + safety on this node's clock; members whose node
// lease expired that way are left out of placement; a node out of contact
// with the Raft majority (LeaseConfirm) or whose own node lease expired
// stops everything and withdraws Assignable. testdata/*.txt are its
// scripted cases (plan_test.go).

// planConfig is the part of Config the planner decides with.
type planConfig struct {
	LeaseConfirm, LeaseTTL, LeaseSafety time.Duration
	Parallelism                         int
	RetryMin, RetryMax                  time.Duration
}

func (c Config) planConfig() planConfig {
	return planConfig{
		LeaseConfirm: c.LeaseConfirm, LeaseTTL: c.LeaseTTL, LeaseSafety: c.LeaseSafety,
		Parallelism: c.Parallelism, RetryMin: c.RetryMin, RetryMax: c.RetryMax,
	}
}

// planInput is one look at the world.
type planInput struct {
	Now     time.Time
	View    control.View     // the local FSM replica
	Members []control.Member // the gossip view, this node included or not
	// Joined: this node has joined the cluster (control.Node.Joined).
	Joined bool
	// Contact is the last moment this node knew it was in contact with the
	// Raft majority (zero: never).
	Contact time.Time
	// Partitions is the partition count of every job in View (0: unknown,
	// the job is not run here).
	Partitions map[string]int32
}

type opKind int

const (
	opNone    opKind = iota
	opStart          // acquire the lease (LeaseAcquire), then Runner.Start under it
	opHandoff        // Runner.Handoff, then LeaseRelease with the handoff point
	opStop           // Runner.Stop (the lease stays; it expired, was lost, or we are fenced)
	opRelease        // LeaseRelease of a lease nothing runs under
	opCancel         // cancel the in-flight operation of the partition (fencing)
)

func (k opKind) String() string {
	return [...]string{"none", "start", "handoff", "stop", "release", "cancel"}[k]
}

// Why a running partition is stopped (op.reason for opStop).
const (
	stopLeaseExpired = "lease expired"
	stopLeaseLost    = "lease lost"
	stopFenced       = "fenced"
)

// op is one operation the loop must perform.
type op struct {
	kind opKind
	key  pkey
	// opStart: the acquire to propose; deadSince is, for a takeover, when
	// the holder was first seen dead (recovery-time metric).
	acquire   control.LeaseAcquire
	deadSince time.Time
	// opHandoff, opStop, opRelease: the lease it concerns.
	lease  control.Lease
	reason string // opStop
}

// plan is the outcome of one planner step.
type plan struct {
	ops        []op
	assignable bool // the Assignable flag to gossip
	// fence/unfence report a change of the fenced state in this step;
	// fenceBusy that something ran or was in flight when it was fenced.
	fence, unfence, fenceBusy bool
	drained                   bool // the drain finished in this step
}

// slot is this node's record of one partition.
type slot struct {
	key           pkey
	running       bool
	lease         control.Lease // the grant it runs (or last ran) under
	op            opKind        // the operation in flight (opNone: none)
	cancelled     bool          // op was cancelled
	failures      int
	notBefore     time.Time
	releasedIndex uint64 // index of this node's last release
	since         time.Time
}

type opResult struct {
	key       pkey
	kind      opKind
	granted   bool          // opStart: the lease was granted
	lease     control.Lease // opStart: the granted lease
	takeover  bool
	deadSince time.Time // opStart takeover: when the holder's last renewal was first seen
	index     uint64    // opHandoff/opRelease: index of the release
	err       error
}

// planner is the deterministic part of the Assigner. Not safe for
// concurrent use: the Assigner's loop owns it.
type planner struct {
	self  string
	cfg   planConfig
	clock *leaseClock // this node's lease validity (shared with the sinks' guard)

	slots    map[pkey]*slot
	inflight int // operations in flight, opCancel excluded
	renewals renewWatch
	fenced   bool
	draining bool
	drained  bool
}

func newPlanner(self string, cfg planConfig, clock *leaseClock) *planner {
	return &planner{self: self, cfg: cfg, clock: clock, slots: map[pkey]*slot{}, renewals: renewWatch{}}
}

// drain makes the planner hand every partition over and stop taking new
// ones; plan reports drained once nothing runs and no lease is held.
func (p *planner) drain() { p.draining = true }

// plan decides what to do now.
func (p *planner) plan(in planInput) plan {
	var out plan
	fenced := in.Contact.IsZero() || in.Now.Sub(in.Contact) > p.cfg.LeaseConfirm ||
		(needsLease(in.View, p.self) && !p.clock.nodeValid(in.Now))
	switch {
	case fenced && !p.fenced:
		p.fenced, out.fence, out.fenceBusy = true, true, p.busy()
	case !fenced && p.fenced:
		p.fenced, out.unfence = false, true
	}
	if p.fenced {
		p.planFenced(&out, in.Now)
	} else {
		p.reconcile(&out, in)
	}
	if p.draining && !p.drained && !p.busy() && (p.fenced || !holdsLease(in.View, p.self)) {
		p.drained, out.drained = true, true
	}
	return out
}

// busy reports whether any partition runs or has an operation in flight.
func (p *planner) busy() bool {
	for _, s := range p.slots {
		if s.running || s.op != opNone {
			return true
		}
	}
	return false
}

func (p *planner) countRunning() int {
	n := 0
	for _, s := range p.slots {
		if s.running {
			n++
		}
	}
	return n
}

// needsLease reports whether node must hold a valid node lease: some job
// exists or it holds a partition lease. An idle cluster writes no renewals
// to the Raft log.
func needsLease(v control.View, node string) bool {
	return len(v.Jobs()) > 0 || holdsLease(v, node)
}

// holdsLease reports whether node holds an unreleased partition lease.
func holdsLease(v control.View, node string) bool {
	for _, l := range v.Leases("") {
		if l.Owner == node && !l.Released {
			return true
		}
	}
	return false
}

// planFenced stops everything and withdraws Assignable. The leases stay
// with this node in Raft until they expire (no renewal for LeaseTTL +
// LeaseSafety in the other nodes' view), then the desired owners take them
// over; or until this node renews again and restarts them.
func (p *planner) planFenced(out *plan, now time.Time) {
	for _, k := range sortedKeys(p.slots) {
		s := p.slots[k]
		switch {
		case s.op != opNone:
			if s.op != opStop && !s.cancelled {
				s.cancelled = true
				out.ops = append(out.ops, op{kind: opCancel, key: k})
			}
		case s.running:
			p.launch(out, s, op{kind: opStop, lease: s.lease, reason: stopFenced}, now)
		}
	}
	out.assignable = false
}

func sortedKeys(m map[pkey]*slot) []pkey {
	keys := make([]pkey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortPkeys(keys)
	return keys
}

func sortPkeys(keys []pkey) {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].job != keys[j].job {
			return keys[i].job < keys[j].job
		}
		return keys[i].p < keys[j].p
	})
}

// launch records op as s's operation in flight and emits it.
func (p *planner) launch(out *plan, s *slot, o op, now time.Time) {
	o.key = s.key
	s.op, s.cancelled, s.since = o.kind, false, now
	p.inflight++
	out.ops = append(out.ops, o)
}

func (p *planner) reconcile(out *plan, in planInput) {
	me, now, view := p.self, in.Now, in.View
	assignable := in.Joined && !p.draining
	out.assignable = assignable
	byID := make(map[string]control.Member, len(in.Members))
	ids := make([]string, 0, len(in.Members))
	for _, m := range in.Members {
		byID[m.ID] = m
		ids = append(ids, m.ID)
	}
	p.renewals.observe(view, ids, p.cfg.LeaseTTL, p.cfg.LeaseSafety, now)
	// Placement: the members gossip calls placeable, minus those whose
	// node lease has expired in Raft (a node cut from Raft but not from
	// gossip must not keep partitions nobody may take over).
	eligible := make([]string, 0, len(in.Members)+1)
	for _, m := range in.Members {
		if m.ID != me && m.Placeable() {
			eligible = append(eligible, m.ID)
		}
	}
	eligible = slices.DeleteFunc(eligible, func(id string) bool {
		_, _, expired := p.renewals.expired(id, now)
		return expired
	})
	if assignable {
		eligible = append(eligible, me)
	}

	desired := map[pkey]bool{}
	for _, j := range view.Jobs() {
		n := in.Partitions[j.Name]
		for q := int32(0); q < n; q++ {
			if Owner(PartitionKey(j.Name, q), eligible) == me {
				desired[pkey{j.Name, q}] = true
			}
		}
	}

	seen := map[pkey]bool{}
	keys := make([]pkey, 0, len(p.slots)+len(desired))
	add := func(k pkey) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for k := range p.slots {
		add(k)
	}
	for k := range desired {
		add(k)
	}
	for _, l := range view.Leases("") {
		if l.Owner == me && !l.Released {
			add(pkey{l.Job, l.Partition})
		}
	}
	sortPkeys(keys)
	for _, k := range keys {
		p.reconcilePartition(out, k, view, desired[k], byID, now)
	}
	for k, s := range p.slots {
		if !s.running && s.op == opNone && !desired[k] && now.After(s.notBefore) {
			if l, ok := view.Lease(k.job, k.p); !ok || l.Owner != me || l.Released {
				delete(p.slots, k)
			}
		}
	}
}

func (p *planner) slotFor(k pkey, now time.Time) *slot {
	s := p.slots[k]
	if s == nil {
		s = &slot{key: k, since: now}
		p.slots[k] = s
	}
	return s
}

func (p *planner) reconcilePartition(out *plan, k pkey, view control.View, want bool, byID map[string]control.Member, now time.Time) {
	me := p.self
	s := p.slots[k]
	if s != nil && s.op != opNone {
		return
	}
	lease, has := view.Lease(k.job, k.p)
	if s != nil && s.running {
		if !p.clock.valid(k.job, k.p, s.lease.Epoch, now) {
			p.launch(out, s, op{kind: opStop, lease: s.lease, reason: stopLeaseExpired}, now)
			return
		}
		if view.Index() >= s.lease.ModifyIndex && (!has || lease.Owner != me || lease.Epoch != s.lease.Epoch || lease.Released) {
			p.launch(out, s, op{kind: opStop, lease: s.lease, reason: stopLeaseLost}, now)
			return
		}
		if !want && p.inflight < p.cfg.Parallelism {
			p.launch(out, s, op{kind: opHandoff, lease: s.lease}, now)
		}
		return
	}
	if !want {
		// A lease of ours that nothing runs under (left from a failed
		// start, a failed release or an earlier incarnation): give it
		// back so that the desired owner needs no takeover.
		if has && lease.Owner == me && !lease.Released && (s == nil || view.Index() >= s.releasedIndex) {
			s = p.slotFor(k, now)
			if now.After(s.notBefore) && p.inflight < p.cfg.Parallelism {
				p.launch(out, s, op{kind: opRelease, lease: lease}, now)
			}
		}
		return
	}
	s = p.slotFor(k, now)
	if now.Before(s.notBefore) || p.inflight >= p.cfg.Parallelism {
		return
	}
	cmd := control.LeaseAcquire{Job: k.job, Partition: k.p, Owner: me,
		TTLMs: p.cfg.LeaseTTL.Milliseconds(), SafetyMs: p.cfg.LeaseSafety.Milliseconds()}
	var deadSince time.Time
	switch {
	case !has:
	case lease.Released || lease.Owner == me:
		cmd.PrevEpoch = lease.Epoch
	default:
		// Held by another node: only its expiry in Raft allows a takeover,
		// whatever gossip says (a node cut from gossip but not from Raft
		// keeps renewing and keeps its leases: no ping-pong).
		cmd.PrevEpoch = lease.Epoch
		// A holder neither in gossip nor in the node leases (it never
		// renewed: an older version) is watched from now, index 0.
		p.renewals.watch(lease.Owner, p.cfg.LeaseTTL, p.cfg.LeaseSafety, now)
		idx, since, expired := p.renewals.expired(lease.Owner, now)
		if !expired {
			return // the holder runs it; it hands it over once it sees us
		}
		cmd.Takeover, cmd.HolderRenewIndex, deadSince = true, idx, since
		if holder, known := byID[lease.Owner]; known && holder.Status != control.StatusAlive && holder.Since.Before(since) {
			deadSince = holder.Since
		}
	}
	p.launch(out, s, op{kind: opStart, acquire: cmd, deadSince: deadSince}, now)
}

// backoff schedules the next attempt of s after a failure: RetryMin,
// doubling per consecutive failure, at most RetryMax.
func (p *planner) backoff(s *slot, now time.Time) {
	s.failures++
	d := p.cfg.RetryMin
	for i := 1; i < s.failures && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	s.notBefore = now.Add(min(d, p.cfg.RetryMax))
}

// finish applies the result of an operation to its slot. It returns the
// slot, or nil when no such operation was in flight (the result is then
// ignored).
func (p *planner) finish(r opResult, now time.Time) *slot {
	s := p.slots[r.key]
	if s == nil || s.op == opNone || s.op != r.kind {
		return nil
	}
	s.op, s.cancelled, s.since = opNone, false, now
	p.inflight--
	k := r.key
	switch r.kind {
	case opStart:
		if r.granted {
			s.lease = r.lease
		}
		if r.err != nil {
			if r.granted {
				p.clock.forget(k.job, k.p, r.lease.Epoch)
			}
			p.backoff(s, now)
			return s
		}
		s.running, s.failures = true, 0
	case opHandoff:
		s.running = false
		p.clock.forget(k.job, k.p, s.lease.Epoch)
		if r.err != nil {
			p.backoff(s, now)
			return s
		}
		s.releasedIndex, s.failures = r.index, 0
	case opStop:
		s.running = false
		p.clock.forget(k.job, k.p, s.lease.Epoch)
	case opRelease:
		if r.err != nil {
			p.backoff(s, now)
			return s
		}
		s.releasedIndex, s.failures = r.index, 0
	}
	return s
}
