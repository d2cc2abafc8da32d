package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/cluster/assign"
	"github.com/eddy-iot/eddy/control"
)

// Service runs the jobs of the control plane on one node: an Assigner with
// a Runner, and the checkpoint coordinator (active on the Raft leader) plus
// this node's barrier and commit driver.
type Service struct {
	node    *control.Node
	cfg     Config
	log     *slog.Logger
	runner  *Runner
	asg     *assign.Assigner
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// coordinator state, touched by the coordinator goroutine only
	committed map[string]uint64 // newest checkpoint told to commit, by job
	started   map[string]time.Time
	aborting  map[string]time.Time         // when an abort of the newest checkpoint was last proposed, by job
	aborted   map[string]uint64            // newest aborted checkpoint handled by drive, by job
	barriers  map[string]map[int32]barrier // last barrier drive sent each partition, by job
	storages  map[string]string            // checkpoint storage URL of every job seen, for its garbage
	deletedAt map[string]time.Time         // when a job of storages was seen deleted
	gcAt      map[string]time.Time         // last snapshot collection, by job
	gcBusy    map[string]bool              // a collection of the job runs
	stores    map[string]*checkpoint.Storage
	gcDone    chan string                   // job whose collection ended
	offsets   map[string]*groupOffsets      // consumer-group offset committers, by job (leader)
	coords    map[string]*leaderCoordinator // checkpoint coordinators, by job (leader)
}

// barrier is a checkpoint barrier drive sent a partition under a lease epoch.
type barrier struct {
	epoch uint64
	id    uint64
}

// DefaultSnapshotGCInterval is the default of Config.SnapshotGCInterval.
const DefaultSnapshotGCInterval = 10 * time.Second

// Start starts the Service on node. Close (a hard stop, like a kill) or
// Shutdown (hand every partition over first) end it.
func Start(node *control.Node, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CoordinatorTick == 0 {
		cfg.CoordinatorTick = 100 * time.Millisecond
	}
	if cfg.SnapshotGCInterval == 0 {
		cfg.SnapshotGCInterval = DefaultSnapshotGCInterval
	}
	s := &Service{node: node, cfg: cfg, log: cfg.Logger.With("component", "jobs"),
		committed: map[string]uint64{}, started: map[string]time.Time{}, aborting: map[string]time.Time{},
		aborted: map[string]uint64{}, barriers: map[string]map[int32]barrier{}, storages: map[string]string{}, deletedAt: map[string]time.Time{},
		gcAt: map[string]time.Time{}, gcBusy: map[string]bool{}, stores: map[string]*checkpoint.Storage{},
		gcDone: make(chan string, 16), offsets: map[string]*groupOffsets{}, coords: map[string]*leaderCoordinator{}}
	var err error
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	s.runner = newRunner(node, cfg)
	s.runner.log = cfg.Logger
	s.runner.metrics = s.metrics
	acfg := cfg.Assigner
	if acfg.LeaseConfirm == 0 {
		acfg = assign.DefaultConfig()
		acfg.Logger, acfg.Registerer = cfg.Assigner.Logger, cfg.Assigner.Registerer
		if cfg.Assigner.LeaseTTL > 0 {
			acfg.LeaseTTL, acfg.LeaseSafety = cfg.Assigner.LeaseTTL, cfg.Assigner.LeaseSafety
		}
	}
	acfg.Runner = s.runner
	acfg.Progress = s.runner
	acfg.PartitionCount = s.partitionCount
	asg, err := assign.New(node, acfg)
	if err != nil {
		s.runner.close()
		s.metrics.reg.UnregisterAll()
		return nil, err
	}
	s.asg = asg
	s.runner.asg.Store(asg)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.coordinate()
	}()
	return s, nil
}

// Assigner returns the node's partition assigner.
func (s *Service) Assigner() *assign.Assigner { return s.asg }

// partitionCount asks the job's source topic for its partition count.
func (s *Service) partitionCount(ctx context.Context, j control.Job) (int32, error) {
	jr, err := s.runner.runtime(ctx, j.Name)
	if err != nil {
		return 0, err
	}
	return jr.rt.Partitions()
}

// Shutdown drains the node: every partition is handed over to its next
// owner (Assigner.Shutdown), then the Service closes.
func (s *Service) Shutdown(ctx context.Context) error {
	err := s.asg.Shutdown(ctx)
	return errors.Join(err, s.Close())
}

// Close stops everything at once: partitions stop without a handoff and
// keep their leases (taken over after the node is seen dead). Idempotent.
func (s *Service) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeOffsets() // the coordinator goroutine that owns them returned
		err = errors.Join(s.asg.Close(), s.runner.close())
		s.metrics.reg.UnregisterAll()
		for _, st := range s.stores {
			err = errors.Join(err, st.Close())
		}
	})
	return err
}

// coordinate is the checkpoint coordinator loop: on the leader it starts
// checkpoints; on every node it sends barriers and commits.
func (s *Service) coordinate() {
	fsm := s.node.FSM()
	last := uint64(0)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CoordinatorTick)
		view, _ := fsm.Wait(ctx, func(v control.View) bool { return v.Index() > last })
		cancel()
		if s.ctx.Err() != nil {
			return
		}
	drained:
		for {
			select {
			case job := <-s.gcDone:
				delete(s.gcBusy, job)
			default:
				break drained
			}
		}
		last = view.Index()
		if s.node.IsLeader() {
			s.lead(view)
			s.collectDeleted(view)
			s.commitOffsets(view)
		} else {
			for name, g := range s.offsets { // leadership lost: the new leader commits
				s.closeOffsetsLater(g.c)
				delete(s.offsets, name)
			}
		}
		s.drive(view)
		s.runner.gc(view)
		specs.forget(view)
	}
}

// leaderCoordinator is the checkpoint coordinator of one job on the
// leader, over the job's Raft ports.
type leaderCoordinator struct {
	modify uint64 // job revision it was made for
	n      int32  // partition count it was made for
	co     *checkpoint.CheckpointCoordinator
}

// coordinator returns the leader's coordinator of job j with n partitions,
// made anew when the job's revision or partition count changed.
func (s *Service) coordinator(j control.Job, cfg actors.Config, js *spec.Spec, n int32) (*checkpoint.CheckpointCoordinator, error) {
	if lc := s.coords[j.Name]; lc != nil && lc.modify == j.ModifyIndex && lc.n == n {
		return lc.co, nil
	}
	parts := make([]int32, n)
	for p := range parts {
		parts[p] = int32(p)
	}
	fsm := s.node.FSM()
	co, err := checkpoint.NewCheckpointCoordinator(checkpoint.CoordinatorConfig{
		Job: j.Name, Partitions: parts, Interval: cfg.Checkpoint.Interval,
		AckTimeout: js.CheckpointAckTimeout(cfg.Checkpoint), Retain: cfg.Checkpoint.Retain,
	}, control.NewCheckpointIDs(fsm, j.Name), control.NewCheckpointStore(fsm, j.Name), time.Now())
	if err != nil {
		return nil, err
	}
	s.coords[j.Name] = &leaderCoordinator{modify: j.ModifyIndex, n: n, co: co}
	return co, nil
}

// lead drives the checkpoint coordinator of every job with checkpoints:
// it feeds it the job's newest checkpoint record (the pending checkpoint
// and its acks live in Raft), triggers the next checkpoint when the
// coordinator says one is due and proposes its CheckpointStart (the id
// from the job's Raft counter, which the start's apply takes; Interval
// after the previous start, at once after an abort or when the job has
// none), and CheckpointAbort when the acks are missing past the job's ack
// timeout (spec.Spec.CheckpointAckTimeout). Retention is the FSM's, at
// each start and completion (CheckpointStart.Retain, the coordinator's
// Retain).
func (s *Service) lead(view control.View) {
	now := time.Now()
	for _, j := range view.Jobs() {
		cfg, js, err := s.runner.jobConfig(j)
		if err != nil || !cfg.Checkpoint.Enabled() {
			continue
		}
		s.storages[j.Name] = cfg.Checkpoint.Storage
		n := s.asg.PartitionCount(j)
		if n <= 0 {
			continue
		}
		cps := view.Checkpoints(j.Name)
		s.collect(j.Name, cfg.Checkpoint.Storage, view, cps, now)
		co, err := s.coordinator(j, cfg, js, n)
		if err != nil {
			s.log.Debug("checkpoint coordinator", "job", j.Name, "err", err)
			continue
		}
		if len(cps) == 0 {
			co.Observe(nil)
		} else {
			co.Observe(cps[len(cps)-1].Observed())
		}
		d := co.Due(now)
		if d.Expired != 0 {
			s.abort(j.Name, cps[len(cps)-1], co.Config().AckTimeout, now)
			continue // the next starts once the abort is applied
		}
		if !d.Trigger {
			continue
		}
		// Do not propose the same start twice while the first is in flight.
		if t, ok := s.started[j.Name]; ok && now.Sub(t) < time.Second {
			continue
		}
		id, err := co.Trigger(s.ctx, checkpoint.KindCheckpoint, false, now) // numbered by the Raft counter
		if err != nil {
			continue
		}
		s.started[j.Name] = now
		start := control.CheckpointStart{Job: j.Name, ID: id, Partitions: n, StartedMs: now.UnixMilli(), Retain: co.Config().Retain}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			defer cancel()
			_, err := s.node.Apply(ctx, start)
			if err != nil && !errors.Is(err, control.ErrConflict) {
				s.log.Debug("starting a checkpoint", "job", j.Name, "id", id, "err", err)
			}
		}()
	}
	for name := range s.coords {
		if _, ok := view.Job(name); !ok {
			delete(s.coords, name)
		}
	}
}

// abort proposes CheckpointAbort for cp, whose acks are missing after d.
func (s *Service) abort(job string, cp control.Checkpoint, d time.Duration, now time.Time) {
	if t, ok := s.aborting[job]; ok && now.Sub(t) < time.Second {
		return
	}
	s.aborting[job] = now
	acked := make(map[int32]bool, len(cp.Acks))
	for _, a := range cp.Acks {
		acked[a.Partition] = true
	}
	var missing []int32
	for p := int32(0); p < cp.Partitions; p++ {
		if !acked[p] {
			missing = append(missing, p)
		}
	}
	s.log.Warn("aborting a checkpoint: acks missing; the next checkpoint starts now", "job", job, "checkpoint", cp.ID,
		"ack_timeout", d, "missing", missing, "acked", len(cp.Acks), "partitions", cp.Partitions)
	cmd := control.CheckpointAbort{Job: job, ID: cp.ID, Reason: fmt.Sprintf("acks missing after %v", d)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		res, err := s.node.Apply(ctx, cmd)
		switch {
		case err == nil && res.Checkpoint != nil && res.Checkpoint.AbortIndex == res.Index:
			s.metrics.aborts.Inc()
		case err != nil && !errors.Is(err, control.ErrConflict):
			s.log.Debug("aborting a checkpoint", "job", job, "id", cp.ID, "err", err)
		}
	}()
}

// drive sends the newest pending checkpoint's barrier to every partition
// this node runs that has not acked it, commits complete checkpoints, and,
// with transactional sinks, restarts the partitions that got the barrier
// of an aborted checkpoint: their open transaction, pre-committed for a
// checkpoint that will never complete, is aborted (Runtime.Stop) before the
// broker's transaction timeout could, and they resume from the last
// committed checkpoint. Without transactional sinks nothing is undone: a
// partition whose snapshot failed takes a new one at the next barrier.
func (s *Service) drive(view control.View) {
	s.runner.mu.Lock()
	jobs := make([]*jobRuntime, 0, len(s.runner.jobs))
	for _, jr := range s.runner.jobs {
		jobs = append(jobs, jr)
	}
	for name := range s.barriers {
		if s.runner.jobs[name] == nil { // runtime closed: its partitions are gone
			delete(s.barriers, name)
			delete(s.aborted, name)
		}
	}
	s.runner.mu.Unlock()
	for _, jr := range jobs {
		if jr.interval == 0 {
			continue
		}
		cps := view.Checkpoints(jr.name)
		if len(cps) == 0 {
			continue
		}
		running := jr.rt.Running()
		sent := s.barriers[jr.name]
		if sent == nil {
			sent = map[int32]barrier{}
			s.barriers[jr.name] = sent
		}
		if cp := cps[len(cps)-1]; !cp.Complete && !cp.Aborted {
			acked := make(map[int32]bool, len(cp.Acks))
			for _, a := range cp.Acks {
				acked[a.Partition] = true
			}
			for p, epoch := range running {
				if !acked[p] && jr.rt.Barrier(p, epoch, cp.ID) == nil {
					sent[p] = barrier{epoch: epoch, id: cp.ID}
				}
			}
		}
		if !jr.rt.Transactional() {
			continue
		}
		newlyAborted := map[uint64]control.Checkpoint{}
		for _, cp := range cps {
			if cp.Aborted && cp.ID > s.aborted[jr.name] {
				newlyAborted[cp.ID] = cp
				s.aborted[jr.name] = max(s.aborted[jr.name], cp.ID)
			}
		}
		for p, b := range sent {
			if cp, ok := newlyAborted[b.id]; ok && running[p] == b.epoch {
				delete(sent, p)
				s.runner.restart(jr.name, p, b.epoch, fmt.Sprintf("checkpoint %d aborted (%s)", cp.ID, cp.AbortReason))
			}
		}
		if cp, ok := view.LastCompleteCheckpoint(jr.name); ok && cp.ID > s.committed[jr.name] {
			s.committed[jr.name] = cp.ID
			for p := range running {
				jr.rt.Commit(p, cp.ID)
			}
		}
	}
}

// collect deletes, on the leader and at most every SnapshotGCInterval per job, the
// snapshots of job that nothing references any more: checkpoint snapshots
// of checkpoints the FSM no longer retains (older than its newest
// checkpoint, whose uploads may be in flight; savepoints are retained until
// deleted), and handoff snapshots of an
// epoch older than the partition's lease epoch that are not the lease's
// handoff point.
func (s *Service) collect(job, url string, view control.View, cps []control.Checkpoint, now time.Time) {
	if len(cps) == 0 || s.gcBusy[job] || now.Sub(s.gcAt[job]) < s.cfg.SnapshotGCInterval {
		return
	}
	retained := make(map[uint64]bool, len(cps))
	for _, cp := range cps {
		retained[cp.ID] = true
	}
	newest := cps[len(cps)-1].ID
	leases := map[int32]control.Lease{}
	for _, l := range view.Leases(job) {
		leases[l.Partition] = l
	}
	keepCheckpoint := func(id uint64) bool { return id >= newest || retained[id] }
	keepHandoff := func(p int32, epoch uint64) bool {
		l, ok := leases[p]
		return !ok || epoch >= l.Epoch || l.Handoff != nil && l.Handoff.Epoch == epoch
	}
	s.gc(job, url, func(ctx context.Context, st *checkpoint.Storage) (int, error) {
		return actors.DeleteClusterSnapshots(ctx, st, job, keepCheckpoint, keepHandoff)
	})
}

// deletedGCFor is how long after a job's deletion the leader keeps deleting
// its snapshots (uploads in flight when the partitions stopped may land
// after the first pass).
const deletedGCFor = time.Minute

// collectDeleted deletes every snapshot but those of savepoints (their
// records outlive the job) of the jobs that were deleted since this node
// saw them (it must have been the leader, or become it
// while it still knew the job's checkpoint storage), every
// SnapshotGCInterval for deletedGCFor.
func (s *Service) collectDeleted(view control.View) {
	now := time.Now()
	for job, url := range s.storages {
		if _, ok := view.Job(job); ok {
			delete(s.deletedAt, job)
			continue
		}
		if _, ok := s.deletedAt[job]; !ok {
			s.deletedAt[job] = now
			s.gcAt[job] = time.Time{}
		}
		if now.Sub(s.deletedAt[job]) > deletedGCFor {
			delete(s.storages, job)
			delete(s.deletedAt, job)
			delete(s.barriers, job)
			continue
		}
		if s.gcBusy[job] || now.Sub(s.gcAt[job]) < s.cfg.SnapshotGCInterval {
			continue
		}
		savepoints := map[uint64]bool{} // kept records of the deleted job
		for _, cp := range view.Savepoints(job) {
			savepoints[cp.ID] = true
		}
		s.gc(job, url, func(ctx context.Context, st *checkpoint.Storage) (int, error) {
			if len(savepoints) > 0 {
				return actors.DeleteClusterSnapshots(ctx, st, job, func(id uint64) bool { return savepoints[id] }, func(int32, uint64) bool { return false })
			}
			keys, err := st.List(ctx, actors.ClusterSnapshotPrefix(job))
			if err != nil {
				return 0, err
			}
			return len(keys), st.DeletePrefix(ctx, actors.ClusterSnapshotPrefix(job))
		})
	}
}

// gc runs del against the checkpoint storage at url in a goroutine, one
// per job at a time.
func (s *Service) gc(job, url string, del func(context.Context, *checkpoint.Storage) (int, error)) {
	s.gcAt[job] = time.Now()
	st := s.stores[url]
	if st == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		var err error
		st, err = checkpoint.OpenStorage(ctx, url)
		cancel()
		if err != nil {
			s.log.Warn("opening checkpoint storage for garbage collection", "job", job, "err", err)
			return
		}
		s.stores[url] = st
	}
	s.gcBusy[job] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		n, err := del(ctx, st)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("deleting unreferenced checkpoint snapshots", "job", job, "err", err)
		}
		if n > 0 {
			s.log.Debug("deleted unreferenced checkpoint snapshots", "job", job, "objects", n)
			s.metrics.snapshotsDeleted.Add(float64(n))
		}
		select {
		case s.gcDone <- job:
		case <-s.ctx.Done():
		}
	}()
}
