package assign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Runner starts and stops the processing of device partitions on this node;
// the Assigner drives it, the wiring implements it with partition actors.
//
// Calls for one partition never overlap (the Assigner has at most one in
// flight per partition); calls for different partitions run concurrently,
// up to Config.Parallelism Start/Handoff calls at once. Every Start
// gets a lease epoch never used before for that partition: sink writes and
// checkpoint acks must carry it (the fencing token).
type Runner interface {
	// Start makes the partition run under lease (lease.Owner is this node,
	// lease.Epoch the fencing token): restore the partition's state from
	// the newer (higher offset) of its ack in the job's last complete
	// checkpoint and lease.Handoff, seek the source to that offset and
	// start consuming. It returns once the partition runs, or an error if
	// it could not start; then nothing of it may keep running. ctx is
	// cancelled when the Assigner gives the start up (fencing, Close):
	// Start should then return promptly.
	Start(ctx context.Context, lease control.Lease) error
	// Handoff drains the partition for its next owner: finish the current
	// batch, snapshot the state, commit the sinks, stop. It returns the
	// point the next owner resumes from (Snapshot "" = none: the next owner
	// restores from the last complete checkpoint). When it returns, with or
	// without an error, the partition must no longer process or write; the
	// Assigner then releases the lease. ctx bounds the drain
	// (Config.HandoffTimeout) and is cancelled on fencing or Close.
	Handoff(ctx context.Context, lease control.Lease) (control.HandoffPoint, error)
	// Stop stops the partition at once, without a snapshot (fencing, lease
	// lost, failed start, Close). It returns when the partition no longer
	// processes or writes. Stopping a partition that does not run is a
	// no-op.
	Stop(job string, partition int32)
}

// ProgressSource reports the progress of partitions running on this node
// (the Runner usually implements it). It must be fast and safe for
// concurrent use.
type ProgressSource interface {
	PartitionProgress(job string, partition int32) (control.PartitionProgress, bool)
}

// Config configures an Assigner. Start from DefaultConfig
// and set Runner.
type Config struct {
	// Runner starts and stops partitions. Required.
	Runner Runner
	// Progress reports partition progress for the status API; default: the
	// Runner if it implements ProgressSource.
	Progress ProgressSource
	// PartitionCount returns the partition count of a job whose record does
	// not declare it (Job.Partitions == 0), normally from the source
	// topic's metadata. It may block (bounded by ctx, 10 s); it is called
	// off the reconcile loop, again every PartitionCountRefresh. nil: such
	// jobs are not run on this node (a warning is logged).
	PartitionCount func(ctx context.Context, job control.Job) (int32, error)
	// PartitionCountRefresh: how often PartitionCount is asked again;
	// default 1 min.
	PartitionCountRefresh time.Duration

	// LeaseConfirm is the fencing interval: when this node has not been in
	// confirmed contact with the Raft majority for this long — it is not
	// the leader and has not heard from a known leader — it stops every
	// partition, because their leases may be taken over. It must exceed a
	// normal leader election (about 0.5–1.5 s with the default Raft
	// timeouts), or every leader change stops all partitions. Default 2 s.
	LeaseConfirm time.Duration
	// LeaseTTL is the time bound of this node's partition leases: the node
	// renews them through Raft every LeaseTTL/4; a lease it could not renew
	// is valid for LeaseTTL − LeaseSafety after the send time of its last
	// confirmed renewal, and another node takes it over only after seeing
	// no renewal for LeaseTTL + LeaseSafety (package documentation, Leases
	// and time). Recovery after a node dies takes about LeaseTTL +
	// LeaseSafety. Must be >= 8 × CheckInterval; default 3 s.
	LeaseTTL time.Duration
	// LeaseSafety is the margin on both sides of a lease's expiry: it
	// covers clock-rate differences between nodes and the time between the
	// holder's last check and the stop of its writes. Must be > 0 and
	// < LeaseTTL/2; default 500 ms.
	LeaseSafety time.Duration
	// CheckInterval: how often the fencing check and the reconcile run
	// besides membership and FSM events; default 100 ms.
	CheckInterval time.Duration
	// Parallelism bounds concurrent Start and Handoff calls; default 8.
	Parallelism int
	// RetryMin and RetryMax bound the exponential backoff of a partition
	// after a failed acquire, start or release; defaults 100 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// HandoffTimeout bounds Runner.Handoff; default 30 s.
	HandoffTimeout time.Duration

	// Logger; default: the node's logger.
	Logger *slog.Logger
	// Registerer receives the assigner's metrics; default: the node's.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a config with every default set; Runner
// must still be set.
func DefaultConfig() Config {
	return Config{
		PartitionCountRefresh: time.Minute,
		LeaseConfirm:          2 * time.Second,
		LeaseTTL:              3 * time.Second,
		LeaseSafety:           500 * time.Millisecond,
		CheckInterval:         100 * time.Millisecond,
		Parallelism:           8,
		RetryMin:              100 * time.Millisecond,
		RetryMax:              5 * time.Second,
		HandoffTimeout:        30 * time.Second,
	}
}

// Validate checks the config; errors wrap ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: assigner: %s", control.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Runner == nil:
		return bad("Runner must be set")
	case c.LeaseConfirm < 10*time.Millisecond:
		return bad("LeaseConfirm (%v) must be >= 10ms", c.LeaseConfirm)
	case c.CheckInterval <= 0 || c.CheckInterval > c.LeaseConfirm/2:
		return bad("CheckInterval (%v) must be > 0 and <= LeaseConfirm/2 (%v)", c.CheckInterval, c.LeaseConfirm/2)
	case c.LeaseTTL < 8*c.CheckInterval:
		return bad("LeaseTTL (%v) must be >= 8 × CheckInterval (%v)", c.LeaseTTL, 8*c.CheckInterval)
	case c.LeaseSafety <= 0 || 2*c.LeaseSafety >= c.LeaseTTL:
		return bad("LeaseSafety (%v) must be > 0 and < LeaseTTL/2 (%v)", c.LeaseSafety, c.LeaseTTL/2)
	case c.Parallelism < 1:
		return bad("Parallelism (%d) must be >= 1", c.Parallelism)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return bad("RetryMin (%v) must be > 0 and <= RetryMax (%v)", c.RetryMin, c.RetryMax)
	case c.HandoffTimeout <= 0 || c.PartitionCountRefresh <= 0:
		return bad("HandoffTimeout (%v) and PartitionCountRefresh (%v) must be > 0", c.HandoffTimeout, c.PartitionCountRefresh)
	}
	return nil
}

// Assigner places device partitions on the cluster's nodes and runs this
// node's share of them through a Runner. One runs on every node that
// processes partitions; see the package documentation (Placement, leases
// and fencing) for the protocol. Its methods are safe for concurrent use.
type Assigner struct {
	n        *control.Node
	cfg      Config
	log      *slog.Logger
	metrics  *assignerMetrics
	reg      prometheus.Registerer
	progress ProgressSource

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // loop, FSM watcher, meta publisher, count fetchers
	opsWG     sync.WaitGroup // partition operations
	kick      chan struct{}
	drainReq  chan struct{} // closed by Shutdown
	drainOnce sync.Once
	drained   chan struct{} // closed by the loop once drained
	done      chan struct{} // closed when the loop has returned
	closeOnce sync.Once

	resMu   sync.Mutex
	results []opResult

	metaMu        sync.Mutex
	metaWant      metaState
	metaPublished metaState
	metaKick      chan struct{}

	countMu sync.Mutex
	counts  map[string]*partitionCount

	statusMu sync.Mutex
	status   []control.PartitionStatus

	clock *leaseClock // this node's lease validity, shared with the sinks' guard

	// Owned by the loop goroutine.
	planner       *planner                    // decides (plan.go)
	cancels       map[pkey]context.CancelFunc // of the operations in flight
	lastConfirmed time.Time
	warnedNoCount map[string]bool
}

type pkey struct {
	job string
	p   int32
}

type metaState struct {
	assignable bool
}

type partitionCount struct {
	modify   uint64 // Job.ModifyIndex the count belongs to
	n        int32
	at       time.Time
	err      error
	fetching bool
}

// New attaches an Assigner to n (n.AttachPartitions: the node's HTTP API
// reads its partitions, Node.Leave hands them off and Node.Close stops
// them through it) and starts it. At most one Assigner may be attached to
// a node at a time (control.ErrConflict otherwise). Stop it with
// Shutdown (hand the partitions over) and Close; Node.Close closes it too.
func New(n *control.Node, cfg Config) (*Assigner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Assigner{
		n: n, cfg: cfg, log: cfg.Logger, reg: cfg.Registerer, progress: cfg.Progress,
		kick:          make(chan struct{}, 1),
		drainReq:      make(chan struct{}),
		drained:       make(chan struct{}),
		done:          make(chan struct{}),
		metaKick:      make(chan struct{}, 1),
		counts:        make(map[string]*partitionCount),
		cancels:       make(map[pkey]context.CancelFunc),
		warnedNoCount: make(map[string]bool),
		clock:         newLeaseClock(cfg.LeaseTTL, cfg.LeaseSafety),
	}
	a.planner = newPlanner(n.ID(), cfg.planConfig(), a.clock)
	if a.log == nil {
		a.log = n.Logger()
	}
	a.log = a.log.With("component", "assigner")
	if a.reg == nil {
		a.reg = n.Registerer()
	}
	if a.progress == nil {
		a.progress, _ = cfg.Runner.(ProgressSource)
	}
	var err error
	if a.metrics, err = newAssignerMetrics(a.reg); err != nil {
		return nil, err
	}
	if err := n.AttachPartitions(a); err != nil {
		a.metrics.unregister()
		return nil, err
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(4)
	go a.run()
	go a.watchFSM()
	go a.publishMeta()
	go a.renewLoop()
	return a, nil
}

// Shutdown hands every partition of this node over: the node stops taking
// partitions (Assignable is withdrawn), drains each running partition
// (Runner.Handoff) and releases its lease, so that the new owners resume
// from the handoff points without a takeover. It returns nil when nothing
// runs and no lease is held any more (while fenced: when nothing runs; the
// leases then wait for a takeover), ctx's error if ctx ends first (call
// Close then), or control.ErrClosed after Close. Node.Leave calls it.
func (a *Assigner) Shutdown(ctx context.Context) error {
	a.drainOnce.Do(func() { close(a.drainReq) })
	select {
	case <-a.drained:
		return nil
	case <-a.done:
		return control.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the assigner at once: in-flight operations are cancelled,
// every running partition is stopped (Runner.Stop) without releasing its
// lease, and Assignable is withdrawn. Leases stay with this node until it
// is seen dead or fenced, or re-acquires them after a restart. Idempotent;
// returns when every goroutine of the assigner has returned.
func (a *Assigner) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
		a.n.DetachPartitions(a)
		err := a.n.Membership().UpdateMeta(func(m *control.Meta) { m.Assignable = false }, 500*time.Millisecond)
		if err != nil && !errors.Is(err, control.ErrMembersShutdown) {
			a.log.Debug("withdraw assignable flag", "err", err)
		}
		a.metrics.unregister()
	})
	return nil
}

// Partitions returns the partitions this node runs or is starting, handing
// off or stopping, sorted by job and partition, with their progress. A
// partition whose lease has expired on this node's lease clock is reported
// stopping, never running (a node that resumes after a pause answers from
// the clock, before its loop has stopped the partition).
func (a *Assigner) Partitions() []control.PartitionStatus {
	a.statusMu.Lock()
	out := append([]control.PartitionStatus(nil), a.status...)
	a.statusMu.Unlock()
	now := time.Now()
	for i := range out {
		// A node resumed after a pause must not report a partition whose
		// lease expired meanwhile as running, even before its loop ran.
		if out[i].State == control.PartitionRunning && !a.clock.valid(out[i].Job, out[i].Partition, out[i].Epoch, now) {
			out[i].State = control.PartitionStopping
		}
	}
	if a.progress != nil {
		for i := range out {
			if out[i].State != control.PartitionRunning {
				continue
			}
			if pr, ok := a.progress.PartitionProgress(out[i].Job, out[i].Partition); ok {
				out[i].Progress = &pr
			}
		}
	}
	return out
}

// PartitionCount returns the partition count of job as this node knows it
// (declared in the job record, or from Config.PartitionCount), or 0.
func (a *Assigner) PartitionCount(job control.Job) int32 {
	if job.Partitions > 0 {
		return job.Partitions
	}
	a.countMu.Lock()
	defer a.countMu.Unlock()
	if c := a.counts[job.Name]; c != nil && c.modify == job.ModifyIndex {
		return c.n
	}
	return 0
}

// Desired returns the member placement gives partition p of job among the
// placeable member ids (Owner of PartitionKey(job, p); "" when placeable is
// empty). It implements control.PartitionSource.
func (a *Assigner) Desired(job string, p int32, placeable []string) string {
	return Owner(PartitionKey(job, p), placeable)
}

var _ control.PartitionAssigner = (*Assigner)(nil)

func (a *Assigner) kickLoop() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// watchFSM wakes the loop after every applied batch.
func (a *Assigner) watchFSM() {
	defer a.wg.Done()
	var last uint64
	for {
		v, err := a.n.FSM().Wait(a.ctx, func(v control.View) bool { return v.Index() != last })
		if err != nil {
			return
		}
		last = v.Index()
		a.kickLoop()
	}
}

// publishMeta gossips the Assignable flag the loop wants.
func (a *Assigner) publishMeta() {
	defer a.wg.Done()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.metaKick:
		}
		a.metaMu.Lock()
		want := a.metaWant
		a.metaMu.Unlock()
		err := a.n.Membership().UpdateMeta(func(m *control.Meta) {
			m.Assignable = want.assignable
		}, time.Second)
		if errors.Is(err, control.ErrMembersShutdown) {
			return
		}
		if err != nil {
			// The local metadata is updated; only the broadcast was not
			// confirmed in time. Gossip and push/pull carry it on.
			a.log.Debug("gossip assigner flags", "err", err)
		}
		a.metaMu.Lock()
		a.metaPublished = want
		a.metaMu.Unlock()
	}
}

// setMeta records the flags to gossip and wakes the publisher if they
// differ from what it last published.
func (a *Assigner) setMeta(assignable bool) {
	a.metaMu.Lock()
	a.metaWant = metaState{assignable: assignable}
	changed := a.metaWant != a.metaPublished
	a.metaMu.Unlock()
	if changed {
		select {
		case a.metaKick <- struct{}{}:
		default:
		}
	}
}

// run is the reconcile loop; it owns the slots.
func (a *Assigner) run() {
	defer a.wg.Done()
	defer close(a.done)
	events, cancel := a.n.Membership().Subscribe(64)
	defer cancel()
	tick := time.NewTicker(a.cfg.CheckInterval)
	defer tick.Stop()
	drainReq := a.drainReq
	for {
		select {
		case <-a.ctx.Done():
			a.stopAll()
			return
		case <-tick.C:
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-drainReq:
			drainReq = nil
			a.planner.drain()
			a.log.Info("draining: handing every partition over")
		case <-a.kick:
		}
		now := time.Now()
		a.collect(now)
		a.step(now)
		a.publishStatus()
	}
}

// collect applies the results of finished operations.
func (a *Assigner) collect(now time.Time) {
	a.resMu.Lock()
	results := a.results
	a.results = nil
	a.resMu.Unlock()
	for _, r := range results {
		a.finish(r, now)
	}
}

func (a *Assigner) deliver(r opResult) {
	a.resMu.Lock()
	a.results = append(a.results, r)
	a.resMu.Unlock()
	a.kickLoop()
}

// updateContact advances lastConfirmed: the last moment this node knew it
// was in contact with the Raft majority. A leader is (hashicorp/raft steps
// a leader down after LeaderLeaseTimeout without a quorum); a follower is
// as of its last contact with a known leader.
// updateContact advances lastConfirmed: the last moment this node knew it
// was in contact with the Raft majority. A leader is (hashicorp/raft steps
// a leader down after LeaderLeaseTimeout without a quorum); a follower is
// as of its last contact with a known leader.
func (a *Assigner) updateContact(now time.Time) {
	r := a.n.Raft()
	if r.State() == raft.Leader {
		a.lastConfirmed = now
		return
	}
	if _, id := r.LeaderWithID(); id != "" {
		if lc := r.LastContact(); lc.After(a.lastConfirmed) && !lc.After(now) {
			a.lastConfirmed = lc
		}
	}
}

// step gathers the planner's input, plans and performs the plan.
func (a *Assigner) step(now time.Time) {
	a.updateContact(now)
	view := a.n.FSM().View()
	in := planInput{Now: now, View: view, Members: a.n.Membership().Members(), Joined: a.n.Joined(),
		Contact: a.lastConfirmed, Partitions: a.partitionCounts(view.Jobs(), now)}
	p := a.planner.plan(in)
	switch {
	case p.fence:
		a.metrics.fenced.Set(1)
		if p.fenceBusy {
			a.metrics.fencings.Inc()
			a.log.Warn("lost contact with the Raft majority or could not renew the node lease: stopping every partition", "last_contact", a.lastConfirmed, "lease_confirm", a.cfg.LeaseConfirm, "lease_ttl", a.cfg.LeaseTTL)
		}
	case p.unfence:
		a.metrics.fenced.Set(0)
		a.log.Info("in contact with the Raft majority")
	}
	a.setMeta(p.assignable)
	for _, o := range p.ops {
		a.perform(o, view)
	}
	if p.drained {
		close(a.drained)
		a.log.Info("drained: no partition runs here and no lease is held")
	}
}

// partitionCounts returns the partition count of every job, asking
// PartitionCount in the background for jobs that do not declare it, and
// forgets the counts of jobs that are gone.
func (a *Assigner) partitionCounts(jobs []control.Job, now time.Time) map[string]int32 {
	out := make(map[string]int32, len(jobs))
	live := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		live[j.Name] = true
		out[j.Name] = a.partitionCountFor(j, now)
	}
	a.gcCounts(live)
	return out
}

// perform starts one op of the plan.
func (a *Assigner) perform(o op, view control.View) {
	k := o.key
	switch o.kind {
	case opCancel:
		if c := a.cancels[k]; c != nil {
			c()
		}
	case opStart:
		a.startAcquire(k, o.acquire, o.deadSince)
	case opHandoff:
		a.startHandoff(k, o.lease)
	case opStop:
		switch o.reason {
		case stopLeaseExpired:
			a.metrics.lost.Inc()
			a.log.Warn("lease expired (not renewed in time): stopping the partition", "job", k.job, "partition", k.p, "epoch", o.lease.Epoch, "lease_ttl", a.cfg.LeaseTTL)
		case stopLeaseLost:
			a.metrics.lost.Inc()
			l, has := view.Lease(k.job, k.p)
			a.log.Warn("lease lost: stopping the partition", "job", k.job, "partition", k.p, "epoch", o.lease.Epoch, "lease", describeLease(l, has))
		}
		a.launch(k, opStop, func(context.Context) opResult {
			a.cfg.Runner.Stop(k.job, k.p)
			return opResult{}
		})
	case opRelease:
		a.startRelease(k, o.lease)
	}
}

// LeaseValid reports whether this node may still process and write for
// partition p of job under lease epoch: the lease was granted to this node
// and renewed through Raft recently enough (Config.LeaseTTL −
// LeaseSafety after the send time of its last confirmed renewal). A false
// answer is final for that epoch: the Assigner stops the partition and
// starts it again under a new epoch. Safe for concurrent use; cheap enough
// for every sink write.
func (a *Assigner) LeaseValid(job string, p int32, epoch uint64) bool {
	return a.clock.valid(job, p, epoch, time.Now())
}

// renewLoop renews this node's lease through Raft every LeaseTTL/4 while it
// needs one (sooner after a failure, never more often than CheckInterval);
// an idle node looks again at every applied change.
func (a *Assigner) renewLoop() {
	defer a.wg.Done()
	every := a.cfg.LeaseTTL / 4
	timer := time.NewTimer(0)
	defer timer.Stop()
	failing := false
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-timer.C:
		}
		if v := a.n.FSM().View(); !needsLease(v, a.n.ID()) {
			// Idle: wait for the next applied change (a job submitted).
			wctx, cancel := context.WithTimeout(a.ctx, a.cfg.LeaseTTL)
			_, _ = a.n.FSM().Wait(wctx, func(n control.View) bool { return n.Index() != v.Index() })
			cancel()
			timer.Reset(0)
			continue
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.LeaseTTL-a.cfg.LeaseSafety)
		res, err := a.n.Apply(ctx, control.LeaseRenew{Owner: a.n.ID(), TTLMs: a.cfg.LeaseTTL.Milliseconds(), SafetyMs: a.cfg.LeaseSafety.Milliseconds()})
		cancel()
		next := every
		switch {
		case err == nil:
			a.clock.renewed(res.Leases, sent)
			if failing {
				a.log.Info("node lease renewed again")
			}
			failing = false
		case a.ctx.Err() != nil:
			return
		default:
			if !failing {
				a.log.Warn("node lease renewal failed; partitions stop when their leases expire", "err", err, "lease_ttl", a.cfg.LeaseTTL)
			}
			failing = true
			next = a.cfg.CheckInterval
		}
		a.kickLoop()
		timer.Reset(max(a.cfg.CheckInterval, next-time.Since(sent)))
	}
}

// describeLease says whom lease l (ok: it exists) belongs to, for logs.
func describeLease(l control.Lease, ok bool) string {
	switch {
	case !ok:
		return "not granted"
	case l.Released:
		return fmt.Sprintf("released at epoch %d", l.Epoch)
	}
	return fmt.Sprintf("held by %s at epoch %d", l.Owner, l.Epoch)
}

// launch runs fn, the I/O of the planner's op kind for partition k, on its
// own goroutine and delivers its result to the loop.
func (a *Assigner) launch(k pkey, kind opKind, fn func(ctx context.Context) opResult) {
	ctx, cancel := context.WithCancel(a.ctx)
	a.cancels[k] = cancel
	a.opsWG.Add(1)
	go func() {
		defer a.opsWG.Done()
		defer cancel()
		r := fn(ctx)
		r.key, r.kind = k, kind
		a.deliver(r)
	}()
}

func (a *Assigner) startAcquire(k pkey, cmd control.LeaseAcquire, deadSince time.Time) {
	a.launch(k, opStart, func(ctx context.Context) opResult {
		r := opResult{takeover: cmd.Takeover, deadSince: deadSince}
		sent := time.Now()
		res, err := a.n.Apply(ctx, cmd)
		if err != nil {
			r.err = fmt.Errorf("acquire lease: %w", err)
			return r
		}
		r.granted, r.lease = true, *res.Lease
		a.clock.granted(r.lease, sent)
		if err := ctx.Err(); err != nil {
			r.err = err
			return r
		}
		if err := a.cfg.Runner.Start(ctx, r.lease); err != nil {
			a.cfg.Runner.Stop(cmd.Job, cmd.Partition)
			r.err = fmt.Errorf("start: %w", err)
			return r
		}
		if err := ctx.Err(); err != nil {
			a.cfg.Runner.Stop(cmd.Job, cmd.Partition)
			r.err = err
		}
		return r
	})
}

func (a *Assigner) startHandoff(k pkey, lease control.Lease) {
	a.launch(k, opHandoff, func(ctx context.Context) opResult {
		var r opResult
		hctx, cancel := context.WithTimeout(ctx, a.cfg.HandoffTimeout)
		point, err := a.cfg.Runner.Handoff(hctx, lease)
		cancel()
		if err != nil {
			a.log.Warn("handoff failed: the next owner restores from the last complete checkpoint", "job", lease.Job, "partition", lease.Partition, "epoch", lease.Epoch, "err", err)
			a.cfg.Runner.Stop(lease.Job, lease.Partition)
			point = control.HandoffPoint{}
		}
		cmd := control.LeaseRelease{Job: lease.Job, Partition: lease.Partition, Owner: lease.Owner, Epoch: lease.Epoch}
		if point.Snapshot != "" {
			cmd.Handoff = &point
		}
		res, err := a.n.Apply(ctx, cmd)
		if err != nil {
			r.err = fmt.Errorf("release lease: %w", err)
			return r
		}
		r.index = res.Index
		return r
	})
}

func (a *Assigner) startRelease(k pkey, lease control.Lease) {
	a.launch(k, opRelease, func(ctx context.Context) opResult {
		res, err := a.n.Apply(ctx, control.LeaseRelease{Job: lease.Job, Partition: lease.Partition, Owner: lease.Owner, Epoch: lease.Epoch})
		if err != nil {
			return opResult{err: fmt.Errorf("release lease: %w", err)}
		}
		return opResult{index: res.Index}
	})
}

// finish feeds the result of an operation to the planner, then logs it and
// updates the metrics.
func (a *Assigner) finish(r opResult, now time.Time) {
	s := a.planner.finish(r, now)
	if s == nil {
		return
	}
	delete(a.cancels, r.key)
	k := r.key
	switch r.kind {
	case opStart:
		if r.err != nil {
			switch {
			case errors.Is(r.err, control.ErrConflict):
				a.log.Debug("lease not granted", "job", k.job, "partition", k.p, "err", r.err)
			case errors.Is(r.err, context.Canceled):
			case r.granted:
				a.metrics.startFailures.Inc()
				a.log.Error("partition did not start", "job", k.job, "partition", k.p, "epoch", r.lease.Epoch, "retry_in", s.notBefore.Sub(now), "err", r.err)
			default:
				a.log.Warn("lease acquire failed", "job", k.job, "partition", k.p, "retry_in", s.notBefore.Sub(now), "err", r.err)
			}
			return
		}
		a.metrics.epoch.WithLabelValues(k.job, fmt.Sprint(k.p)).Set(float64(r.lease.Epoch))
		if r.takeover {
			a.metrics.recoveries.Inc()
			if !r.deadSince.IsZero() {
				a.metrics.recoverySeconds.Observe(now.Sub(r.deadSince).Seconds())
			}
		}
		a.log.Info("partition started", "job", k.job, "partition", k.p, "epoch", r.lease.Epoch, "takeover", r.takeover, "handoff", r.lease.Handoff != nil)
	case opHandoff:
		a.metrics.handoffs.Inc()
		a.metrics.epoch.DeleteLabelValues(k.job, fmt.Sprint(k.p))
		if r.err != nil {
			a.log.Warn("partition handed off but its lease is not released yet", "job", k.job, "partition", k.p, "err", r.err)
			return
		}
		a.log.Info("partition handed off", "job", k.job, "partition", k.p, "epoch", s.lease.Epoch)
	case opStop:
		a.metrics.epoch.DeleteLabelValues(k.job, fmt.Sprint(k.p))
		a.log.Info("partition stopped", "job", k.job, "partition", k.p, "epoch", s.lease.Epoch)
	case opRelease:
		if r.err != nil {
			if !errors.Is(r.err, control.ErrConflict) {
				a.log.Warn("release of an unused lease failed", "job", k.job, "partition", k.p, "err", r.err)
			}
			return
		}
	}
	a.metrics.owned.Set(float64(a.planner.countRunning()))
}

// stopAll (on Close) cancels every operation, waits for them and stops
// every partition still running.
func (a *Assigner) stopAll() {
	for _, c := range a.cancels {
		c()
	}
	a.opsWG.Wait()
	a.collect(time.Now())
	for _, s := range a.planner.slots {
		if s.running {
			a.cfg.Runner.Stop(s.key.job, s.key.p)
			s.running = false
			a.metrics.epoch.DeleteLabelValues(s.key.job, fmt.Sprint(s.key.p))
		}
	}
	a.metrics.owned.Set(0)
	a.publishStatus()
}

var opStates = map[opKind]string{opStart: control.PartitionStarting, opHandoff: control.PartitionHandingOff, opStop: control.PartitionStopping, opRelease: control.PartitionReleasing}

func (a *Assigner) publishStatus() {
	out := make([]control.PartitionStatus, 0, len(a.planner.slots))
	for _, s := range a.planner.slots {
		st := control.PartitionStatus{Job: s.key.job, Partition: s.key.p, Node: a.n.ID(), Since: s.since}
		switch {
		case s.op != opNone:
			st.State = opStates[s.op]
			if s.op != opStart {
				st.Epoch = s.lease.Epoch
			}
		case s.running:
			st.State, st.Epoch = control.PartitionRunning, s.lease.Epoch
		default:
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Partition < out[j].Partition
	})
	a.statusMu.Lock()
	a.status = out
	a.statusMu.Unlock()
}

// partitionCountFor returns the partition count of j, asking
// PartitionCount in the background when the record does not declare it.
func (a *Assigner) partitionCountFor(j control.Job, now time.Time) int32 {
	if j.Partitions > 0 {
		return j.Partitions
	}
	if a.cfg.PartitionCount == nil {
		if !a.warnedNoCount[j.Name] {
			a.warnedNoCount[j.Name] = true
			a.log.Warn("job declares no partition count and this node cannot ask the source: not running it (submit it with --partitions N)", "job", j.Name)
		}
		return 0
	}
	a.countMu.Lock()
	defer a.countMu.Unlock()
	c := a.counts[j.Name]
	if c == nil || c.modify != j.ModifyIndex {
		c = &partitionCount{modify: j.ModifyIndex}
		a.counts[j.Name] = c
	}
	due := c.at.IsZero() || now.Sub(c.at) >= a.cfg.PartitionCountRefresh || (c.err != nil && now.Sub(c.at) >= a.cfg.RetryMax)
	if due && !c.fetching {
		c.fetching = true
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
			n, err := a.cfg.PartitionCount(ctx, j)
			cancel()
			if err == nil && (n < 0 || n > control.MaxPartitions) {
				err = fmt.Errorf("partition count %d is out of range 0..%d", n, control.MaxPartitions)
			}
			a.countMu.Lock()
			c.fetching, c.at, c.err = false, time.Now(), err
			if err == nil {
				c.n = n
			}
			a.countMu.Unlock()
			if err != nil && a.ctx.Err() == nil {
				a.log.Warn("partition count of job", "job", j.Name, "err", err)
			}
			a.kickLoop()
		}()
	}
	return c.n
}

func (a *Assigner) gcCounts(live map[string]bool) {
	a.countMu.Lock()
	defer a.countMu.Unlock()
	for name := range a.counts {
		if !live[name] {
			delete(a.counts, name)
		}
	}
	for name := range a.warnedNoCount {
		if !live[name] {
			delete(a.warnedNoCount, name)
		}
	}
}
