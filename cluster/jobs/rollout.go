package jobs

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/control"
)

// A new revision of a job (eddy ctl job submit of a job that exists) is
// rolled out by every node to the partitions it holds, without giving up
// their leases: drain each partition (Runtime.Handoff: the reader stops,
// the batch in flight finishes, the state is snapshotted and the sinks
// flushed), close the old runtime, open one with the new spec, and start
// each partition again under the same lease epoch from its drained
// snapshot (or, with transactional sinks, its last committed checkpoint).
// The lease holder's job report then carries the new revision. A revision
// submitted with control.JobPut.ResetState restores nothing of the old
// state. A new runtime that cannot be opened (say, a sink that refuses
// connections) is retried with backoff, its partitions reported failed.

// rolloutDrainTimeout bounds the drain of one partition.
const rolloutDrainTimeout = 30 * time.Second

// rollout starts the rollout of every job whose runtime here runs an older
// revision than the local replica's and holds partitions (an idle one is
// closed by gc instead). Called by the reporter loop.
func (r *Runner) rollout(view control.View) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for name, jr := range r.jobs {
		j, ok := view.Job(name)
		if !ok || j.ModifyIndex == jr.modify || r.rolling[name] || len(r.ownedOf(name)) == 0 {
			continue
		}
		r.rolling[name] = true
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.rollJob(name, jr)
			r.mu.Lock()
			delete(r.rolling, name)
			r.mu.Unlock()
		}()
	}
}

// ownedOf returns the partitions of job started here, by epoch; r.mu held.
func (r *Runner) ownedOf(job string) map[int32]uint64 {
	out := map[int32]uint64{}
	for k, epoch := range r.owned {
		if k.job == job {
			out[k.p] = epoch
		}
	}
	return out
}

// rollJob moves the partitions of job from runtime old to the revision in
// the local replica.
func (r *Runner) rollJob(job string, old *jobRuntime) {
	r.mu.Lock()
	parts := r.ownedOf(job)
	r.mu.Unlock()
	ps := make([]int32, 0, len(parts))
	for p := range parts {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a] < ps[b] })
	locks := func() func() {
		for _, p := range ps {
			r.lock(pkey{job, p}).Lock()
		}
		return func() {
			for _, p := range ps {
				r.lock(pkey{job, p}).Unlock()
			}
		}
	}
	log := r.log.With("job", job, "from_revision", old.modify)

	// Drain every partition and close the old runtime (its state store is
	// the job's directory: one runtime per job at a time).
	unlock := locks()
	r.mu.Lock()
	current := r.jobs[job] == old
	r.mu.Unlock()
	if !current {
		unlock()
		return
	}
	points := map[int32]actors.RestorePoint{}
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(r.ctx, rolloutDrainTimeout)
		pt, err := old.rt.Handoff(ctx, p, parts[p])
		cancel()
		switch {
		case err == nil && pt.Snapshot != "":
			points[p] = pt
		case err != nil && !errors.Is(err, actors.ErrPartitionNotRunning):
			log.Warn("rollout: drain failed; the partition restarts from its last checkpoint", "partition", p, "err", err)
		}
	}
	r.mu.Lock()
	r.takeOut(old)
	r.mu.Unlock()
	if err := r.closeRetired(old); err != nil {
		log.Warn("rollout: closing the old runtime", "err", err)
	}
	unlock()

	b := restartBackoff(500 * time.Millisecond)
	for {
		done, err := r.rollStart(job, ps, parts, points)
		if done {
			if err == nil {
				log.Info("rollout: partitions run the new revision", "partitions", len(ps))
			}
			return
		}
		delay := b.NextBackOff()
		log.Warn("rollout: the new revision does not start yet", "retry_in", delay, "err", err)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// rollStart starts the partitions ps (still held here at their epochs) on
// the job's current runtime. done is false when it should be retried.
func (r *Runner) rollStart(job string, ps []int32, parts map[int32]uint64, points map[int32]actors.RestorePoint) (done bool, err error) {
	for _, p := range ps {
		r.lock(pkey{job, p}).Lock()
	}
	defer func() {
		for _, p := range ps {
			r.lock(pkey{job, p}).Unlock()
		}
	}()
	view := r.node.FSM().View()
	j, ok := view.Job(job)
	if !ok {
		return true, nil // cancelled meanwhile
	}
	var mine []int32
	r.mu.Lock()
	for _, p := range ps {
		if r.owned[pkey{job, p}] == parts[p] {
			mine = append(mine, p)
		}
	}
	r.mu.Unlock()
	if len(mine) == 0 {
		return true, nil
	}
	jr, err := r.runtime(r.ctx, job)
	if err != nil {
		for _, p := range mine {
			r.rep.failed(job, p, parts[p], j.ModifyIndex, err)
		}
		return errors.Is(err, ErrClosed), err
	}
	for _, p := range mine {
		epoch := parts[p]
		lease, ok := view.Lease(job, p)
		if !ok || lease.Owner != r.node.ID() || lease.Epoch != epoch || lease.Released {
			continue
		}
		pts := restorePoints(view, lease, jr.rt.Transactional())
		// The drained point is the old revision's state: not restored
		// when this revision resets it or starts from a savepoint.
		if pt, ok := points[p]; ok && !jr.rt.Transactional() && !j.StateReset && j.RestoreIndex != j.ModifyIndex {
			pts = append([]actors.RestorePoint{pt}, pts...)
		}
		if j.StateReset {
			pts = nil
		}
		if err := jr.rt.Start(r.ctx, p, epoch, pts); err != nil {
			r.failed(job, p, epoch, err)
			continue
		}
		r.rep.restarted(job, p, epoch, jr.modify) // clears a failed report of an earlier attempt
	}
	return true, nil
}
