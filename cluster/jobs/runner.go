package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/cluster/assign"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/internal/promreg"
	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// ErrClosed is returned by Runner methods after Close.
var ErrClosed = errors.New("jobs: closed")

// Config configures a Service.
type Config struct {
	// StateDir is the directory under which each job's pebble state store
	// lives (StateDir/<job>); required. It must not be shared between
	// nodes; a job spec's state.dir is ignored on a cluster.
	StateDir string
	// Devices is the broadcast device data for enrichment (the node's Raft
	// replica); nil: none.
	Devices operators.DeviceLookup
	// Assigner tunes the partition assigner; Runner and PartitionCount are
	// set by the Service. Zero value: assign.DefaultConfig().
	Assigner assign.Config
	// CoordinatorTick is how often the checkpoint coordinator looks at the
	// FSM besides its changes; default 100 ms.
	CoordinatorTick time.Duration
	// SnapshotGCInterval is how often the Raft leader deletes, per job, the
	// snapshots in checkpoint storage that no retained checkpoint, handoff
	// point or job references; default 10 s (DefaultSnapshotGCInterval).
	SnapshotGCInterval time.Duration
	// Logger; default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the node-wide job service metrics and, per job
	// runtime, the job and sink metrics, labelled eddy_job=<job name>
	// (promreg.JobLabel; not "job", which Prometheus's target label
	// would rename to exported_job). A job runtime's metrics are
	// unregistered when it closes. nil: not registered.
	Registerer prometheus.Registerer
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.StateDir == "" {
		return errors.New("jobs: StateDir must be set (e.g. <data-dir>/state)")
	}
	if c.CoordinatorTick < 0 {
		return fmt.Errorf("jobs: CoordinatorTick (%v) must be >= 0", c.CoordinatorTick)
	}
	if c.SnapshotGCInterval < 0 {
		return fmt.Errorf("jobs: SnapshotGCInterval (%v) must be >= 0 (0 = %v)", c.SnapshotGCInterval, DefaultSnapshotGCInterval)
	}
	return nil
}

// jobRuntime is one job's runtime on this node.
type jobRuntime struct {
	name   string
	modify uint64 // Job.ModifyIndex of the spec it runs
	rt     *actors.Runtime
	sink   actors.MultiSink
	cfg    actors.Config
	// reg holds the job's metrics (job and sink), labelled eddy_job.
	reg *promreg.Group
	// interval and timeout of the job's checkpoints (0: checkpoints off).
	interval, timeout time.Duration
}

// takeOut removes jr from r.jobs (if it is still there); no runtime of
// the job opens until closeRetired(jr) has closed it. r.mu is held.
func (r *Runner) takeOut(jr *jobRuntime) {
	if r.jobs[jr.name] == jr {
		delete(r.jobs, jr.name)
	}
	r.closing[jr.name]++
}

// closeRetired forgets the status reports of jr, taken out with takeOut,
// and closes it.
func (r *Runner) closeRetired(jr *jobRuntime) error {
	r.rep.forget(jr)
	err := jr.close()
	r.mu.Lock()
	if r.closing[jr.name]--; r.closing[jr.name] <= 0 {
		delete(r.closing, jr.name)
	}
	r.mu.Unlock()
	return err
}

// close closes the runtime and the sinks, and unregisters the job's
// metrics, so that the job opened again registers them anew.
func (jr *jobRuntime) close() error {
	var err error
	if jr.rt != nil {
		err = jr.rt.Close()
	}
	err = errors.Join(err, jr.sink.Close())
	jr.reg.UnregisterAll()
	return err
}

// Runner implements assign.Runner and assign.ProgressSource with one
// actors.Runtime per job. Safe for concurrent use.
type Runner struct {
	node    *control.Node
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// asg is the node's Assigner (set right after it starts): its lease
	// clock decides whether a partition may still write and ack.
	asg atomic.Pointer[assign.Assigner]

	mu      sync.Mutex
	jobs    map[string]*jobRuntime
	owned   map[pkey]uint64      // partitions started by the Assigner, by epoch
	locks   map[pkey]*sync.Mutex // serialise a restart with Assigner calls
	closed  bool
	rep     *reporter       // job status reports to Raft (status.go)
	rolling map[string]bool // jobs whose new revision rolls out (rollout.go)
	// closing counts, by job, the runtimes taken out of jobs and not yet
	// closed: no new runtime of the job opens meanwhile (its state store
	// directory and its metrics are still the old one's).
	closing map[string]int
}

type pkey struct {
	job string
	p   int32
}

var (
	_ assign.Runner         = (*Runner)(nil)
	_ assign.ProgressSource = (*Runner)(nil)
)

func newRunner(node *control.Node, cfg Config) *Runner {
	r := &Runner{
		node: node, cfg: cfg, log: cfg.Logger,
		jobs: map[string]*jobRuntime{}, owned: map[pkey]uint64{}, locks: map[pkey]*sync.Mutex{},
		closing: map[string]int{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.rep, r.rolling = newReporter(r), map[string]bool{}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.rep.run(r.ctx)
	}()
	return r
}

// leaseValid reports whether partition p of job may still write under
// epoch on this node (assign.Assigner.LeaseValid).
func (r *Runner) leaseValid(job string, p int32, epoch uint64) bool {
	a := r.asg.Load()
	return a != nil && a.LeaseValid(job, p, epoch)
}

func (r *Runner) lock(k pkey) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.locks[k]
	if m == nil {
		m = &sync.Mutex{}
		r.locks[k] = m
	}
	return m
}

// jobConfig turns a stored job into its runtime configuration on this
// node; the spec is parsed once per revision (specs). The *Spec is shared:
// read-only.
func (r *Runner) jobConfig(j control.Job) (actors.Config, *spec.Spec, error) {
	js, cfg, err := specs.load(j)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Name = j.Name
	cfg.State.Dir = filepath.Join(r.cfg.StateDir, url.PathEscape(j.Name))
	return cfg, js, nil
}

// runtime returns the runtime of job, creating it from the spec in the
// local replica.
func (r *Runner) runtime(ctx context.Context, job string) (*jobRuntime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	j, ok := r.node.FSM().View().Job(job)
	if jr := r.jobs[job]; jr != nil {
		if ok && jr.modify != j.ModifyIndex {
			// A new revision rolls out (rollout.go): no partition starts
			// on the old one meanwhile.
			return nil, fmt.Errorf("jobs: job %s is moving from revision %d to %d on this node; retry", job, jr.modify, j.ModifyIndex)
		}
		return jr, nil
	}
	if !ok {
		return nil, fmt.Errorf("jobs: job %s is not in the local replica", job)
	}
	if r.closing[job] > 0 {
		return nil, fmt.Errorf("jobs: the previous runtime of job %s is still closing on this node; retry", job)
	}
	cfg, js, err := r.jobConfig(j)
	if err != nil {
		return nil, fmt.Errorf("jobs: job %s: %w", job, err)
	}
	jr := &jobRuntime{name: job, modify: j.ModifyIndex, cfg: cfg, reg: promreg.ForJob(r.cfg.Registerer, job)}
	if cfg.Checkpoint.Enabled() {
		jr.interval, jr.timeout = cfg.Checkpoint.Interval, cfg.Checkpoint.Timeout
	}
	ok = false
	defer func() {
		if !ok {
			jr.close()
		}
	}()
	for _, u := range js.SinkURLs() {
		s, err := sinks.Open(u, js.SinkConfig(), jr.reg)
		if err != nil {
			return nil, secret.RedactError(fmt.Errorf("jobs: job %s: %w", job, err))
		}
		jr.sink = append(jr.sink, s)
		if err := s.Open(ctx); err != nil {
			return nil, secret.RedactError(fmt.Errorf("jobs: job %s: open sink %s: %w", job, secret.RedactURL(u), err))
		}
		if k, ok := s.(*sinks.Kafka); ok && cfg.Checkpoint.Enabled() {
			// A transaction stays open from one checkpoint's commit to the
			// next one's: about interval + checkpoint time, at most
			// interval + ack timeout when a checkpoint is aborted.
			if life, limit := cfg.Checkpoint.Interval+js.CheckpointAckTimeout(cfg.Checkpoint), k.Config().TransactionTimeout; life >= limit {
				r.log.Warn("checkpoint.interval + checkpoint.ack_timeout reach the Kafka transaction timeout: the broker may abort open transactions before a stalled checkpoint is aborted; lower them or raise txn_timeout",
					"job", job, "interval", cfg.Checkpoint.Interval, "ack_timeout", js.CheckpointAckTimeout(cfg.Checkpoint), "txn_timeout", limit)
			}
		}
	}
	var sink sinks.Sink = jr.sink
	if len(jr.sink) == 1 {
		sink = jr.sink[0]
	}
	log := r.log.With("job", job)
	rt, err := actors.NewRuntime(cfg, sink, r.cfg.Devices, jr.reg, log, actors.RuntimeHooks{
		Ack: func(ctx context.Context, p int32, epoch uint64, id uint64, pt actors.RestorePoint) {
			// An expired lease may have dropped rows of this epoch: never
			// ack a checkpoint for it.
			if !r.leaseValid(job, p, epoch) {
				log.Warn("not acking a checkpoint: the lease expired", "partition", p, "epoch", epoch, "checkpoint", id)
				return
			}
			r.ack(ctx, job, p, epoch, id, pt)
		},
		Failed:     func(p int32, epoch uint64, err error) { r.failed(job, p, epoch, err) },
		LeaseValid: func(p int32, epoch uint64) bool { return r.leaseValid(job, p, epoch) },
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: job %s: %w", job, err)
	}
	jr.rt, ok = rt, true
	r.jobs[job] = jr
	log.Info("job runtime opened", "revision", j.ModifyIndex, "checkpoints", cfg.Checkpoint.Storage)
	return jr, nil
}

// restorePoints lists where partition p of job may restore from, newest
// first: the handoff point of its lease (none with transactional sinks),
// then its acks of the checkpoints the job may restore from
// (control.View.RestorableCheckpoints, the query behind the coordinator's
// store control.CheckpointStore.Completed: complete ones only with
// transactional sinks; of the job's revision, control.Job.Restorable).
func restorePoints(view control.View, lease control.Lease, transactional bool) []actors.RestorePoint {
	var out []actors.RestorePoint
	if h := lease.Handoff; h != nil && h.Snapshot != "" && !transactional {
		out = append(out, actors.RestorePoint{Handoff: true, Epoch: h.Epoch, Offset: h.Offset, Snapshot: h.Snapshot})
	}
	for _, cp := range view.RestorableCheckpoints(lease.Job, transactional) {
		for _, a := range cp.Acks {
			if a.Partition == lease.Partition {
				out = append(out, actors.RestorePoint{Checkpoint: cp.ID, Offset: a.Offset, Snapshot: a.Snapshot})
			}
		}
	}
	return out
}

// Start implements assign.Runner.
func (r *Runner) Start(ctx context.Context, lease control.Lease) error {
	k := pkey{lease.Job, lease.Partition}
	m := r.lock(k)
	m.Lock()
	defer m.Unlock()
	jr, err := r.runtime(ctx, lease.Job)
	if err != nil {
		r.reportFailed(lease.Job, lease.Partition, lease.Epoch, err)
		return err
	}
	points := restorePoints(r.node.FSM().View(), lease, jr.rt.Transactional())
	if err := jr.rt.Start(ctx, lease.Partition, lease.Epoch, points); err != nil {
		r.reportFailed(lease.Job, lease.Partition, lease.Epoch, err)
		return err
	}
	r.mu.Lock()
	r.owned[k] = lease.Epoch
	r.mu.Unlock()
	return nil
}

// Handoff implements assign.Runner.
func (r *Runner) Handoff(ctx context.Context, lease control.Lease) (control.HandoffPoint, error) {
	k := pkey{lease.Job, lease.Partition}
	m := r.lock(k)
	m.Lock()
	defer m.Unlock()
	r.mu.Lock()
	delete(r.owned, k)
	jr := r.jobs[lease.Job]
	r.mu.Unlock()
	if jr == nil {
		return control.HandoffPoint{}, nil
	}
	pt, err := jr.rt.Handoff(ctx, lease.Partition, lease.Epoch)
	if errors.Is(err, actors.ErrPartitionNotRunning) {
		return control.HandoffPoint{}, nil
	}
	if err != nil {
		return control.HandoffPoint{}, err
	}
	return control.HandoffPoint{Offset: pt.Offset, Snapshot: pt.Snapshot}, nil
}

// Stop implements assign.Runner.
func (r *Runner) Stop(job string, partition int32) {
	k := pkey{job, partition}
	m := r.lock(k)
	m.Lock()
	defer m.Unlock()
	r.mu.Lock()
	delete(r.owned, k)
	jr := r.jobs[job]
	r.mu.Unlock()
	if jr != nil {
		jr.rt.Stop(partition)
	}
}

// PartitionProgress implements assign.ProgressSource.
func (r *Runner) PartitionProgress(job string, partition int32) (control.PartitionProgress, bool) {
	r.mu.Lock()
	jr := r.jobs[job]
	r.mu.Unlock()
	if jr == nil {
		return control.PartitionProgress{}, false
	}
	st, ok := jr.rt.Status(partition)
	if !ok {
		return control.PartitionProgress{}, false
	}
	wm := st.Watermark
	if wm == math.MinInt64 || wm == math.MaxInt64 {
		wm = 0
	}
	return control.PartitionProgress{Offset: st.NextOffset, Lag: st.Lag, WatermarkMs: wm}, true
}

// ack records a partition's checkpoint ack in Raft, retrying while there
// is no leader.
func (r *Runner) ack(ctx context.Context, job string, p int32, epoch uint64, id uint64, pt actors.RestorePoint) {
	cmd := control.CheckpointAck{Job: job, ID: id, Partition: p, Epoch: epoch, Offset: pt.Offset, Snapshot: pt.Snapshot}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.node.Apply(actx, cmd)
		cancel()
		switch {
		case err == nil:
			return
		case (errors.Is(err, control.ErrNoLeader) || errors.Is(err, control.ErrNotLeader) || errors.Is(err, control.ErrUnknownOutcome)) && attempt < 20:
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		default:
			r.log.Debug("checkpoint ack not recorded", "job", job, "partition", p, "checkpoint", id, "epoch", epoch, "err", err)
			return
		}
	}
}

// restartBackoff returns the delays between the attempts to (re)start a
// partition: initial doubling to 30 s, ±20 % jitter so that the partitions
// of a failed sink do not retry in step.
func restartBackoff(initial time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 30 * time.Second}
}

// failed restarts a partition that stopped on an error, from its newest
// restore point, as long as the Assigner still has it here under epoch
// (retried with restartBackoff from 1 s).
func (r *Runner) failed(job string, p int32, epoch uint64, cause error) {
	r.wg.Add(1)
	r.reportFailed(job, p, epoch, cause)
	go func() {
		defer r.wg.Done()
		b := restartBackoff(time.Second)
		for {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(b.NextBackOff()):
			}
			done, err := r.restartNow(job, p, epoch)
			if err == nil && done {
				r.reportRestarted(job, p, epoch)
				r.metrics.restarts.WithLabelValues("failed").Inc()
				r.log.Warn("failed partition restarted", "job", job, "partition", p, "epoch", epoch, "cause", cause)
			}
			if done {
				return
			}
			if err != nil {
				r.reportFailed(job, p, epoch, err)
				r.log.Error("restarting a failed partition", "job", job, "partition", p, "err", err)
			}
		}
	}()
}

// restart stops partition p of job (epoch) and starts it again from its
// newest restore point, in the background, as long as the Assigner still
// has it here under epoch; why is logged.
func (r *Runner) restart(job string, p int32, epoch uint64, why string) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		b := restartBackoff(100 * time.Millisecond)
		for {
			done, err := r.restartNow(job, p, epoch)
			if err == nil && done {
				r.metrics.restarts.WithLabelValues("checkpoint_aborted").Inc()
				r.log.Warn("partition restarted from its last committed checkpoint", "job", job, "partition", p, "epoch", epoch, "why", why)
			}
			if done {
				return
			}
			if err != nil {
				r.log.Error("restarting a partition", "job", job, "partition", p, "why", why, "err", err)
			}
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(b.NextBackOff()):
			}
		}
	}()
}

// freshFor bounds how old this node's last contact with the Raft leader
// may be for a restart to trust the local replica's lease records.
const freshFor = time.Second

// restartNow stops and restarts partition p under epoch. done is false
// (with err) when the restart should be tried again later: the start
// failed, or the local replica is not known to be fresh — not the leader,
// no contact with the leader within freshFor, or commits the leader sent
// not applied yet — since a stale replica could show a lease that was
// taken over meanwhile, and restarting it would fence the rightful owner's
// transactional producer. done is true without error when there is nothing
// to do (the partition is no longer ours under epoch).
func (r *Runner) restartNow(job string, p int32, epoch uint64) (done bool, err error) {
	k := pkey{job, p}
	m := r.lock(k)
	m.Lock()
	defer m.Unlock()
	r.mu.Lock()
	owned := r.owned[k] == epoch
	jr := r.jobs[job]
	r.mu.Unlock()
	if !owned || jr == nil {
		return true, nil
	}
	if err := r.replicaFresh(); err != nil {
		return false, err
	}
	if !r.leaseValid(job, p, epoch) {
		return false, fmt.Errorf("jobs: the lease of %s/%d at epoch %d is not valid on this node's lease clock", job, p, epoch)
	}
	view := r.node.FSM().View()
	lease, ok := view.Lease(job, p)
	if !ok || lease.Owner != r.node.ID() || lease.Epoch != epoch || lease.Released {
		jr.rt.Stop(p)
		return true, nil
	}
	jr.rt.Stop(p)
	if err := jr.rt.Start(r.ctx, p, epoch, restorePoints(view, lease, jr.rt.Transactional())); err != nil {
		return false, err
	}
	return true, nil
}

// replicaFresh reports (nil) whether the local replica reflects what the
// Raft leader had committed at most freshFor ago.
func (r *Runner) replicaFresh() error {
	rf := r.node.Raft()
	if r.node.IsLeader() {
		return nil
	}
	_, leader := rf.LeaderWithID()
	lc := rf.LastContact()
	if leader == "" || lc.IsZero() || time.Since(lc) > freshFor {
		return fmt.Errorf("jobs: no recent contact with the Raft leader (last %v): the local lease records may be stale", lc.Format(time.RFC3339Nano))
	}
	commit := rf.CommitIndex()
	for deadline := time.Now().Add(freshFor); rf.AppliedIndex() < commit; {
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs: local replica applied %d, behind the commit index %d", rf.AppliedIndex(), commit)
		}
		select {
		case <-r.ctx.Done():
			return ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// close stops every partition and closes the runtimes and sinks.
func (r *Runner) close() error {
	r.mu.Lock()
	r.closed = true
	jobs := r.jobs
	r.jobs = map[string]*jobRuntime{}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	var errs []error
	for _, jr := range jobs {
		errs = append(errs, jr.close())
	}
	return errors.Join(errs...)
}

// gc closes the runtimes of jobs that are gone or changed and run no
// partition here any more.
func (r *Runner) gc(view control.View) {
	r.mu.Lock()
	var idle []*jobRuntime
	for name, jr := range r.jobs {
		j, ok := view.Job(name)
		if ok && j.ModifyIndex == jr.modify {
			continue
		}
		if len(jr.rt.Running()) > 0 {
			continue
		}
		busy := false
		for k := range r.owned {
			if k.job == name {
				busy = true
			}
		}
		if !busy {
			r.takeOut(jr)
			idle = append(idle, jr)
		}
	}
	r.mu.Unlock()
	for _, jr := range idle {
		r.log.Info("job runtime closed (job cancelled or changed)", "job", jr.name)
		if err := r.closeRetired(jr); err != nil {
			r.log.Warn("closing a job runtime", "job", jr.name, "err", err)
		}
	}
}
