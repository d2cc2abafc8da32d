package jobs

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/secret"
)

// reportInterval is how often the reporter looks at the partitions this
// node runs (for the bounded end) and retries reports Raft did not take.
const reportInterval = 250 * time.Millisecond

// reporter keeps the job status in Raft current for the partitions this
// node holds: it sends a control.JobReport when a partition's state,
// epoch, revision or error changes — never periodically — so the Raft log
// grows with state changes only (at most one per restart backoff in a
// crash loop).
type reporter struct {
	r    *Runner
	kick chan struct{}

	mu     sync.Mutex
	sent   map[pkey]control.JobReport // the last report Raft took (or refused for good)
	want   map[pkey]control.JobReport // newer reports still to send
	counts map[*jobRuntime]int32      // the job's partition count from its source
}

func newReporter(r *Runner) *reporter {
	return &reporter{r: r, kick: make(chan struct{}, 1), sent: map[pkey]control.JobReport{},
		want: map[pkey]control.JobReport{}, counts: map[*jobRuntime]int32{}}
}

func sameReport(a, b control.JobReport) bool {
	return a.State == b.State && a.Epoch == b.Epoch && a.Revision == b.Revision && a.Error == b.Error && a.Offset == b.Offset && a.Owner == b.Owner
}

// latest returns the newest report of k, sent or not.
func (rp *reporter) latest(k pkey) (control.JobReport, bool) {
	if w, ok := rp.want[k]; ok {
		return w, true
	}
	s, ok := rp.sent[k]
	return s, ok
}

// set queues rep unless it is what Raft already has.
func (rp *reporter) set(rep control.JobReport) {
	k := pkey{rep.Job, rep.Partition}
	rp.mu.Lock()
	if last, ok := rp.latest(k); ok && sameReport(last, rep) {
		rp.mu.Unlock()
		return
	}
	rp.want[k] = rep
	rp.mu.Unlock()
	select {
	case rp.kick <- struct{}{}:
	default:
	}
}

// failed reports that partition p of job stopped on err under epoch; the
// poll does not report it running again until restarted says so.
func (rp *reporter) failed(job string, p int32, epoch, revision uint64, err error) {
	msg := secret.RedactText(err.Error())
	if j, ok := rp.r.node.FSM().View().Job(job); ok {
		if js, _, lerr := specs.load(j); lerr == nil {
			msg = js.HideEnv(msg) // what ${NAME} gave stays on the node
		}
	}
	if len(msg) > control.MaxReportError {
		msg = msg[:control.MaxReportError]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	rp.set(control.JobReport{Job: job, Partition: p, Owner: rp.r.node.ID(), Epoch: epoch, Revision: revision, State: control.PartitionFailed, Error: msg})
}

// restarted reports that a failed partition runs again.
func (rp *reporter) restarted(job string, p int32, epoch, revision uint64) {
	rp.set(control.JobReport{Job: job, Partition: p, Owner: rp.r.node.ID(), Epoch: epoch, Revision: revision, State: control.PartitionRunning})
}

// run polls and sends until ctx ends.
func (rp *reporter) run(ctx context.Context) {
	tick := time.NewTicker(reportInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			rp.r.rollout(rp.r.node.FSM().View())
			rp.poll()
		case <-rp.kick:
		}
		rp.send(ctx)
	}
}

// poll reports the partitions this node runs: running, or finished once
// a bounded partition read to its end offset.
func (rp *reporter) poll() {
	r := rp.r
	r.mu.Lock()
	type owned struct {
		k     pkey
		epoch uint64
		jr    *jobRuntime
	}
	var list []owned
	for k, epoch := range r.owned {
		if jr := r.jobs[k.job]; jr != nil {
			list = append(list, owned{k, epoch, jr})
		}
	}
	r.mu.Unlock()
	for _, o := range list {
		st, ok := o.jr.rt.Status(o.k.p)
		if !ok {
			continue
		}
		rp.mu.Lock()
		last, had := rp.latest(o.k)
		n, counted := rp.counts[o.jr]
		rp.mu.Unlock()
		if had && last.State == control.PartitionFailed && last.Epoch == o.epoch {
			continue // failed: the restart reports it
		}
		if !counted {
			if c, err := o.jr.rt.Partitions(); err == nil {
				n = c
				rp.mu.Lock()
				rp.counts[o.jr] = c
				rp.mu.Unlock()
			}
		}
		rep := control.JobReport{Job: o.k.job, Partition: o.k.p, Owner: r.node.ID(), Epoch: o.epoch,
			Revision: o.jr.modify, State: control.PartitionRunning, Partitions: n}
		if st.Done {
			rep.State, rep.Offset = control.PartitionFinished, st.NextOffset
			if !(had && last.State == control.PartitionFinished && last.Epoch == o.epoch && last.Revision == rep.Revision) {
				// finished means the rows are in the sinks: flush what the
				// last batches left buffered first.
				if err := rp.flush(o.jr); err != nil {
					r.log.Warn("flush at the bounded end failed; the partition is reported finished once it succeeds", "job", o.k.job, "partition", o.k.p, "err", err)
					rep.State = control.PartitionRunning
				}
			}
		}
		rp.set(rep)
	}
}

// send proposes the queued reports; those Raft cannot take now (no leader)
// stay queued, fenced or obsolete ones are dropped.
func (rp *reporter) send(ctx context.Context) {
	rp.mu.Lock()
	batch := make([]control.JobReport, 0, len(rp.want))
	for _, w := range rp.want {
		batch = append(batch, w)
	}
	rp.mu.Unlock()
	for _, rep := range batch {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := rp.r.node.Apply(actx, rep)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, control.ErrConflict) && !errors.Is(err, control.ErrNotFound) && !errors.Is(err, control.ErrInvalid) {
			// No leader (or no answer): the others wait for the next tick
			// rather than each waiting out the apply timeout now.
			rp.r.log.Debug("job report not recorded yet", "job", rep.Job, "partition", rep.Partition, "state", rep.State, "err", err)
			return
		}
		k := pkey{rep.Job, rep.Partition}
		rp.mu.Lock()
		if w, ok := rp.want[k]; ok && sameReport(w, rep) {
			delete(rp.want, k)
			rp.sent[k] = rep
		}
		rp.mu.Unlock()
	}
}

// forget drops the partition counts of closed runtimes.
func (rp *reporter) forget(jr *jobRuntime) {
	rp.mu.Lock()
	delete(rp.counts, jr)
	rp.mu.Unlock()
}

// reportFailed reports a failed partition with the revision its runtime runs
// (or, when the runtime could not be made, the stored one).
func (r *Runner) reportFailed(job string, p int32, epoch uint64, err error) {
	r.rep.failed(job, p, epoch, r.revision(job), err)
}

// reportRestarted reports a failed partition running again.
func (r *Runner) reportRestarted(job string, p int32, epoch uint64) {
	r.rep.restarted(job, p, epoch, r.revision(job))
}

func (r *Runner) revision(job string) uint64 {
	r.mu.Lock()
	jr := r.jobs[job]
	r.mu.Unlock()
	if jr != nil {
		return jr.modify
	}
	j, _ := r.node.FSM().View().Job(job)
	return j.ModifyIndex
}

// flush flushes the sinks of jr that rows are written to directly (with
// checkpoints on, transactional sinks make rows visible when a checkpoint
// commits instead).
func (rp *reporter) flush(jr *jobRuntime) error {
	ctx, cancel := context.WithTimeout(rp.r.ctx, 30*time.Second)
	defer cancel()
	var errs []error
	for _, s := range jr.sink {
		if _, tx := s.(sinks.TransactionalSink); tx && jr.cfg.Checkpoint.Enabled() {
			continue
		}
		errs = append(errs, s.Flush(ctx))
	}
	return errors.Join(errs...)
}
