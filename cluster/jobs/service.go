package jobs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// Service runs the jobs of the control plane on one node: an Assigner with
// a Runner, and the checkpoint coordinator (active on the Raft leader) plus
// this node's barrier and commit driver.
type Service struct {
	node   *control.Node
	cfg    Config
	log    *slog.Logger
	runner *Runner
	asg    *control.Assigner

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// coordinator state, touched by the coordinator goroutine only
	committed map[string]uint64 // newest checkpoint told to commit, by job
	retained  map[string]uint64 // oldest checkpoint id retained when storage was last pruned, by job
	started   map[string]time.Time
}

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
	s := &Service{node: node, cfg: cfg, log: cfg.Logger.With("component", "jobs"),
		committed: map[string]uint64{}, retained: map[string]uint64{}, started: map[string]time.Time{}}
	s.runner = newRunner(node, cfg)
	s.runner.log = cfg.Logger
	acfg := cfg.Assigner
	if acfg.LeaseConfirm == 0 {
		acfg = control.DefaultAssignerConfig()
		acfg.Logger, acfg.Registerer = cfg.Assigner.Logger, cfg.Assigner.Registerer
		if cfg.Assigner.LeaseTTL > 0 {
			acfg.LeaseTTL, acfg.LeaseSafety = cfg.Assigner.LeaseTTL, cfg.Assigner.LeaseSafety
		}
	}
	acfg.Runner = s.runner
	acfg.Progress = s.runner
	acfg.PartitionCount = s.partitionCount
	asg, err := control.NewAssigner(node, acfg)
	if err != nil {
		s.runner.close()
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
func (s *Service) Assigner() *control.Assigner { return s.asg }

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
		err = errors.Join(s.asg.Close(), s.runner.close())
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
		last = view.Index()
		if s.node.IsLeader() {
			s.lead(view)
		}
		s.drive(view)
		s.runner.gc(view)
	}
}

// lead starts the next checkpoint of every job with checkpoints whose
// previous one completed at least an interval ago, or timed out.
func (s *Service) lead(view control.View) {
	now := time.Now()
	for _, j := range view.Jobs() {
		cfg, _, err := s.runner.jobConfig(j)
		if err != nil || !cfg.Checkpoint.Enabled() {
			continue
		}
		n := s.asg.PartitionCount(j)
		if n <= 0 {
			continue
		}
		cps := view.Checkpoints(j.Name)
		s.retain(j.Name, cps)
		next := uint64(1)
		if len(cps) > 0 {
			cp := cps[len(cps)-1]
			next = cp.ID + 1
			age := now.Sub(time.UnixMilli(cp.StartedMs))
			if cp.Complete && age < cfg.Checkpoint.Interval || !cp.Complete && age < cfg.Checkpoint.Timeout {
				continue
			}
		}
		// Do not propose the same start twice while the first is in flight.
		if t, ok := s.started[j.Name]; ok && now.Sub(t) < time.Second {
			continue
		}
		s.started[j.Name] = now
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			defer cancel()
			_, err := s.node.Apply(ctx, control.CheckpointStart{Job: j.Name, ID: next, Partitions: n, StartedMs: now.UnixMilli()})
			if err != nil && !errors.Is(err, control.ErrConflict) {
				s.log.Debug("starting a checkpoint", "job", j.Name, "id", next, "err", err)
			}
		}()
	}
}

// drive sends the newest incomplete checkpoint's barrier to every partition
// this node runs that has not acked it, and commits complete ones.
func (s *Service) drive(view control.View) {
	s.runner.mu.Lock()
	jobs := make([]*jobRuntime, 0, len(s.runner.jobs))
	for _, jr := range s.runner.jobs {
		jobs = append(jobs, jr)
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
		if cp := cps[len(cps)-1]; !cp.Complete {
			acked := make(map[int32]bool, len(cp.Acks))
			for _, a := range cp.Acks {
				acked[a.Partition] = true
			}
			for p, epoch := range running {
				if !acked[p] {
					_ = jr.rt.Barrier(p, epoch, int64(cp.ID))
				}
			}
		}
		if !jr.rt.Transactional() {
			continue
		}
		if cp, ok := view.LastCompleteCheckpoint(jr.name); ok && cp.ID > s.committed[jr.name] {
			s.committed[jr.name] = cp.ID
			for p := range running {
				jr.rt.Commit(p, int64(cp.ID))
			}
		}
	}
}

// retain deletes, on the leader, the snapshots of checkpoints the FSM no
// longer retains (it keeps control.RetainCheckpoints per job).
func (s *Service) retain(job string, cps []control.Checkpoint) {
	if len(cps) < control.RetainCheckpoints || cps[0].ID <= s.retained[job] {
		return
	}
	s.runner.mu.Lock()
	jr := s.runner.jobs[job]
	s.runner.mu.Unlock()
	if jr == nil {
		return
	}
	s.retained[job] = cps[0].ID
	oldest := int64(cps[0].ID)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		deleted, err := jr.rt.DeleteCheckpointsBefore(ctx, oldest)
		if err != nil {
			s.log.Warn("deleting old checkpoint snapshots", "job", job, "err", err)
		}
		if len(deleted) > 0 {
			s.log.Debug("deleted old checkpoint snapshots", "job", job, "checkpoints", len(deleted))
		}
	}()
}
