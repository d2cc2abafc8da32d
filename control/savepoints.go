package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Savepoints of cluster jobs. A savepoint is a checkpoint started on
// demand (POST /v1/jobs/{name}/savepoints: CheckpointStart with Savepoint)
// and marked so in its record: retention never evicts it once complete,
// the job's deletion or cancellation keeps it, and the leader's snapshot
// collection keeps its snapshots, until SavepointDelete. A job submitted
// with JobPut.FromSavepoint starts every partition from it.

// TypeSavepointDelete is the command type of SavepointDelete.
const TypeSavepointDelete CommandType = 22

// SavepointDelete removes savepoint ID of Job (ErrNotFound when the job has
// no savepoint of that id). Its snapshots are deleted from checkpoint
// storage by the leader's next snapshot collection of the job.
type SavepointDelete struct {
	Job string `json:"job"`
	ID  uint64 `json:"id"`
}

func (SavepointDelete) Type() CommandType { return TypeSavepointDelete }

// Validate implements Command.
func (c SavepointDelete) Validate() error {
	if err := ValidateName("job", c.Job); err != nil {
		return err
	}
	if c.ID == 0 {
		return fmt.Errorf("%w: savepoint id must be >= 1", ErrInvalid)
	}
	return nil
}

// DefaultSavepointTimeout and MaxSavepointTimeout bound how long POST
// /v1/jobs/{name}/savepoints waits for the savepoint (?timeout=).
const (
	DefaultSavepointTimeout = 2 * time.Minute
	MaxSavepointTimeout     = 10 * time.Minute
)

// savepoint returns the savepoint record id of job, if any.
func (t *txn) savepoint(job string, id uint64) (*Checkpoint, bool) {
	v, ok := t.ckptTxn().Get(checkpointKey(job, id))
	if !ok || !v.(*Checkpoint).Savepoint {
		return nil, false
	}
	return v.(*Checkpoint), true
}

// checkSavepoint checks that job has a complete savepoint id.
func (t *txn) checkSavepoint(job string, id uint64) error {
	cp, ok := t.savepoint(job, id)
	switch {
	case !ok:
		return fmt.Errorf("%w: savepoint %d of job %s", ErrNotFound, id, job)
	case !cp.Complete:
		return fmt.Errorf("%w: savepoint %d of job %s is not complete (aborted: %v %s)", ErrConflict, id, job, cp.Aborted, cp.AbortReason)
	}
	return nil
}

// dropCheckpoints deletes the checkpoint records of job but its complete
// savepoints.
func (t *txn) dropCheckpoints(job string) {
	ck := t.ckptTxn()
	var drop [][]byte
	ck.Root().WalkPrefix(jobPrefix(job), func(k []byte, v interface{}) bool {
		if cp := v.(*Checkpoint); !cp.Savepoint || !cp.Complete {
			drop = append(drop, k)
		}
		return false
	})
	for _, k := range drop {
		ck.Delete(k)
	}
}

func (t *txn) savepointDelete(c SavepointDelete) (Result, error) {
	cp, ok := t.savepoint(c.Job, c.ID)
	if !ok {
		return Result{}, fmt.Errorf("%w: savepoint %d of job %s", ErrNotFound, c.ID, c.Job)
	}
	t.ckptTxn().Delete(checkpointKey(c.Job, c.ID))
	return Result{Checkpoint: cp, Deleted: true}, nil
}

// Savepoints returns the savepoint records of job (those of a deleted job
// too), ascending by id.
func (v View) Savepoints(job string) []Checkpoint {
	out := []Checkpoint{}
	for _, cp := range v.Checkpoints(job) {
		if cp.Savepoint {
			out = append(out, cp)
		}
	}
	return out
}

// jobOrSavepoints answers 404 unless job exists or has savepoints.
func (n *Node) jobOrSavepoints(w http.ResponseWriter, view View, job string) bool {
	if _, ok := view.Job(job); ok || len(view.Savepoints(job)) > 0 {
		return true
	}
	writeError(w, fmt.Errorf("%w: job %q (and no savepoint of it)", ErrNotFound, job))
	return false
}

// handleSavepointList serves GET /v1/jobs/{name}/savepoints: the job's
// savepoint records (Checkpoint, with per-partition acks), ascending by id.
func (n *Node) handleSavepointList(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	n.syncLocal(r.Context())
	view := n.fsm.View()
	if !n.jobOrSavepoints(w, view, r.PathValue("name")) {
		return
	}
	writeJSON(w, http.StatusOK, view.Savepoints(r.PathValue("name")))
}

// handleSavepointDelete serves DELETE /v1/jobs/{name}/savepoints/{id}.
func (n *Node) handleSavepointDelete(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, fmt.Errorf("%w: savepoint id %q must be a positive integer", ErrInvalid, r.PathValue("id")))
		return
	}
	res, err := n.Apply(r.Context(), SavepointDelete{Job: r.PathValue("name"), ID: id})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"job": r.PathValue("name"), "id": id, "deleted": res.Deleted, "index": res.Index})
}

// handleSavepointCreate serves POST
// /v1/jobs/{name}/savepoints[?timeout=D][&cancel=true]: it starts a savepoint (the job's next checkpoint id, over the partition
// count its status knows, superseding a periodic checkpoint in flight) and
// answers the record once it is complete (200). A savepoint aborted
// (acks missing past the job's ack timeout, or the job deleted) is
// answered 409; one still incomplete after the timeout (default
// DefaultSavepointTimeout, at most MaxSavepointTimeout) is aborted and
// answered 409 too. 404 for an unknown job; 409 when the job has no
// checkpoints or its partition count is not known yet (no partition ran).
// With ?cancel=true it stops the job with the savepoint: the ack that
// completes it cancels the job in the same Raft entry (CheckpointStart.Cancel);
// an aborted one leaves the job running.
func (n *Node) handleSavepointCreate(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "timeout", "cancel")
	if err != nil {
		writeError(w, err)
		return
	}
	stop, err := boolParam(q, "cancel")
	if err != nil {
		writeError(w, err)
		return
	}
	timeout := DefaultSavepointTimeout
	if v := q.Get("timeout"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 || timeout > MaxSavepointTimeout {
			writeError(w, fmt.Errorf("%w: ?timeout=%q must be a duration in (0, %v], such as 60s", ErrInvalid, v, MaxSavepointTimeout))
			return
		}
	}
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	closing := context.AfterFunc(n.ctx, cancel)
	defer closing()
	var started Checkpoint
	var at uint64 // Raft index of the start
	for attempt := 0; ; attempt++ {
		n.syncLocal(ctx)
		view := n.fsm.View()
		j, ok := view.Job(name)
		if !ok {
			writeError(w, fmt.Errorf("%w: job %q", ErrNotFound, name))
			return
		}
		if check := n.cfg.CheckSavepoint; check != nil {
			if err := check(j); err != nil {
				writeError(w, fmt.Errorf("%w: job %s: %w", ErrConflict, name, err))
				return
			}
		}
		st, _ := view.JobStatus(name)
		if st.PartitionCount <= 0 {
			writeError(w, fmt.Errorf("%w: job %s: its partition count is not known yet (no partition has run); retry once it runs", ErrConflict, name))
			return
		}
		next := view.NextCheckpointID(name)
		res, err := n.Apply(ctx, CheckpointStart{Job: name, ID: next, Partitions: st.PartitionCount, StartedMs: time.Now().UnixMilli(), Savepoint: true, Cancel: stop})
		if err == nil {
			started, at = *res.Checkpoint, res.Index
			break
		}
		if !errors.Is(err, ErrConflict) || attempt >= 10 {
			writeError(w, err)
			return
		}
		// A periodic checkpoint took the id: try the next one.
	}
	view, _ := n.fsm.Wait(ctx, func(v View) bool {
		if v.Index() < at {
			return false // the start is not applied here yet
		}
		for _, cp := range v.Checkpoints(name) {
			if cp.ID == started.ID {
				return cp.Complete || cp.Aborted
			}
		}
		return true // gone: the job was deleted
	})
	if view.Index() < at {
		writeError(w, fmt.Errorf("%w: savepoint %d of job %s started, but this node did not apply it within %v", ErrUnknownOutcome, started.ID, name, timeout))
		return
	}
	for _, cp := range view.Checkpoints(name) {
		switch {
		case cp.ID != started.ID:
		case cp.Complete:
			writeJSON(w, http.StatusOK, cp)
			return
		case cp.Aborted:
			writeError(w, fmt.Errorf("%w: savepoint %d of job %s was aborted: %s", ErrConflict, cp.ID, name, cp.AbortReason))
			return
		default:
			actx, acancel := context.WithTimeout(n.ctx, 5*time.Second)
			_, _ = n.Apply(actx, CheckpointAbort{Job: name, ID: cp.ID, Reason: fmt.Sprintf("savepoint not complete after %v", timeout)})
			acancel()
			writeError(w, fmt.Errorf("%w: savepoint %d of job %s was not complete after %v (%d of %d partitions acked); it is aborted", ErrConflict, cp.ID, name, timeout, len(cp.Acks), cp.Partitions))
			return
		}
	}
	writeError(w, fmt.Errorf("%w: savepoint %d of job %s is gone (the job was deleted)", ErrConflict, started.ID, name))
}
