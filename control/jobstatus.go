package control

import (
	"fmt"
	"sort"
	"unicode/utf8"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Job lifecycle: the state of a job as the FSM derives it from its record
// and its partitions' reports (JobStatus.State).
//
//	submitted → running → finished | failed | cancelled
//
// finished: every partition reported finished (a bounded job reached its
// end offsets) under the job's current spec revision. failed: some
// partition stopped on an error; it is not final — its node restarts it
// with backoff (Restarts counts them) and the job is running again once no
// partition is failed. cancelled: eddy ctl job cancel (JobCancel) stopped
// the job on every node; final until the job is submitted again.
const (
	JobSubmitted = "submitted"
	JobRunning   = "running"
	JobFinished  = "finished"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Partition states of a JobReport and of JobPartition.State, besides
// PartitionRunning ("running").
const (
	PartitionFinished = "finished" // reached its bounded end offset
	PartitionFailed   = "failed"   // stopped on an error (see Error)
)

// Command types of this file (numbers 20 and up).
const (
	TypeJobReport CommandType = 20
	TypeJobCancel CommandType = 21
)

// MaxReportError is the longest error text a JobReport carries, in bytes.
const MaxReportError = 2048

// JobReport is a lease holder's report of the state of one partition:
// running, finished (Offset = the end offset reached) or failed (Error).
// It is fenced like a checkpoint ack: accepted only while Owner holds the
// partition's lease at Epoch (ErrConflict otherwise) and the job exists
// (ErrNotFound). Holders send one on every change, not periodically.
type JobReport struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	// Revision is the Job.ModifyIndex of the spec the partition runs.
	Revision uint64 `json:"revision"`
	State    string `json:"state"`
	// Offset is the next source offset (for finished: the end offset).
	Offset int64 `json:"offset"`
	// Error is the failure of a failed partition, passwords masked; at
	// most MaxReportError bytes.
	Error string `json:"error,omitempty"`
	// Partitions is the job's partition count as the holder knows it from
	// the source (0: unknown); the FSM keeps the largest.
	Partitions int32 `json:"partitions,omitempty"`
}

// JobCancel stops job Name on every node: its spec and checkpoints are
// removed as by JobDelete (the holders hand their partitions off and
// release the leases), and its status stays, as cancelled, until the job
// is submitted again. Rows already written stay in the sinks. ErrNotFound
// if the job does not exist.
type JobCancel struct {
	Name string `json:"name"`
}

func (JobReport) Type() CommandType { return TypeJobReport }
func (JobCancel) Type() CommandType { return TypeJobCancel }

// Validate implements Command.
func (c JobReport) Validate() error {
	if err := validateLeaseKey(c.Job, c.Partition, c.Owner); err != nil {
		return err
	}
	if c.Epoch == 0 {
		return fmt.Errorf("%w: job report needs a lease epoch >= 1", ErrInvalid)
	}
	switch c.State {
	case PartitionRunning, PartitionFinished, PartitionFailed:
	default:
		return fmt.Errorf("%w: job report state must be %q, %q or %q, got %q", ErrInvalid, PartitionRunning, PartitionFinished, PartitionFailed, c.State)
	}
	if len(c.Error) > MaxReportError || !utf8.ValidString(c.Error) {
		return fmt.Errorf("%w: job report error must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxReportError)
	}
	if c.Offset < 0 || c.Partitions < 0 || c.Partitions > MaxPartitions {
		return fmt.Errorf("%w: job report offset and partitions must be >= 0", ErrInvalid)
	}
	return nil
}

// Validate implements Command.
func (c JobCancel) Validate() error { return ValidateName("job", c.Name) }

// JobStatus is the lifecycle record of a job, kept in Raft beside its spec
// (GET /v1/jobs/{name}).
type JobStatus struct {
	Name string `json:"name"`
	// State is derived: see JobSubmitted and the others.
	State string `json:"state"`
	// Revision is the spec revision (Job.ModifyIndex) in force.
	Revision uint64 `json:"revision"`
	// SubmittedMs is when the revision was submitted (leader's clock, Unix ms).
	SubmittedMs int64 `json:"submitted_ms,omitempty"`
	// CancelledMs is when the job was cancelled; 0 if it was not.
	CancelledMs int64 `json:"cancelled_ms,omitempty"`
	// PartitionCount is the job's partition count: declared at submit, or
	// the largest reported by a holder; 0 while unknown.
	PartitionCount int32 `json:"partition_count"`
	// Partitions are the reported partitions, by partition.
	Partitions []JobPartition `json:"partitions"`
}

// JobPartition is the last report of one partition.
type JobPartition struct {
	Partition int32  `json:"partition"`
	State     string `json:"state"` // running, finished, failed
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	// Revision is the spec revision the partition runs.
	Revision uint64 `json:"revision"`
	// Offset is the next source offset; for finished the end offset.
	Offset int64 `json:"offset"`
	// Error and ErrorMs are the last failure and when it was reported
	// (kept after a restart, until the job is submitted again).
	Error   string `json:"error,omitempty"`
	ErrorMs int64  `json:"error_ms,omitempty"`
	// Restarts counts the returns to running after a failure.
	Restarts  int   `json:"restarts"`
	UpdatedMs int64 `json:"updated_ms"`
}

// JobInfo is the answer of GET /v1/jobs/{name} and an entry of GET
// /v1/jobs: the stored job (absent fields when cancelled) with its state
// and status.
type JobInfo struct {
	Job
	State  string     `json:"state"`
	Status *JobStatus `json:"status,omitempty"`
}

func (t *txn) jobStatusTxn() *iradix.Txn {
	if t.jstatus == nil {
		t.jstatus = t.st.jobStatus.Txn()
	}
	return t.jstatus
}

func (t *txn) nowMs() int64 {
	if t.appendedAt.IsZero() {
		return 0
	}
	return t.appendedAt.UnixMilli()
}

// jobSubmitted (re)starts the status of a job put at this index: a new or
// cancelled job starts over, an update keeps the partitions' reports.
func (t *txn) jobSubmitted(j *Job) {
	st := &JobStatus{Name: j.Name, Revision: j.ModifyIndex, SubmittedMs: t.nowMs(), PartitionCount: j.Partitions, Partitions: []JobPartition{}}
	if v, ok := t.jobStatusTxn().Get([]byte(j.Name)); ok {
		if old := v.(*JobStatus); old.CancelledMs == 0 {
			st.Partitions = old.Partitions
			st.PartitionCount = max(st.PartitionCount, old.PartitionCount)
		}
	}
	t.jobStatusTxn().Insert([]byte(j.Name), st)
}

func (t *txn) jobStatusDeleted(name string) { t.jobStatusTxn().Delete([]byte(name)) }

func (t *txn) jobReport(c JobReport) (Result, error) {
	jv, ok := t.jobTxn().Get([]byte(c.Job))
	if !ok {
		return Result{}, fmt.Errorf("%w: job %q (report of partition %d)", ErrNotFound, c.Job, c.Partition)
	}
	l := t.lease(c.Job, c.Partition)
	if l == nil || l.Released || l.Owner != c.Owner || l.Epoch != c.Epoch {
		return Result{}, fmt.Errorf("%w: report of %s/%d by %s at epoch %d is fenced: lease is %s", ErrConflict, c.Job, c.Partition, c.Owner, c.Epoch, describeLease(l))
	}
	var st JobStatus
	if v, ok := t.jobStatusTxn().Get([]byte(c.Job)); ok {
		st = *v.(*JobStatus)
	} else {
		j := jv.(*Job)
		st = JobStatus{Name: j.Name, Revision: j.ModifyIndex, PartitionCount: j.Partitions}
	}
	st.PartitionCount = max(st.PartitionCount, c.Partitions)
	parts := make([]JobPartition, 0, len(st.Partitions)+1)
	i := sort.Search(len(st.Partitions), func(i int) bool { return st.Partitions[i].Partition >= c.Partition })
	parts = append(parts, st.Partitions[:i]...)
	p := JobPartition{Partition: c.Partition}
	rest := st.Partitions[i:]
	if i < len(st.Partitions) && st.Partitions[i].Partition == c.Partition {
		p = st.Partitions[i]
		rest = st.Partitions[i+1:]
	}
	if p.State == PartitionFailed && c.State == PartitionRunning {
		p.Restarts++
	}
	p.State, p.Owner, p.Epoch, p.Revision, p.Offset, p.UpdatedMs = c.State, c.Owner, c.Epoch, c.Revision, c.Offset, t.nowMs()
	if c.State == PartitionFailed {
		p.Error, p.ErrorMs = c.Error, t.nowMs()
	}
	parts = append(parts, p)
	st.Partitions = append(parts, rest...)
	t.jobStatusTxn().Insert([]byte(c.Job), &st)
	return Result{}, nil
}

func (t *txn) jobCancel(c JobCancel) (Result, error) {
	var st JobStatus
	if v, ok := t.jobStatusTxn().Get([]byte(c.Name)); ok {
		st = *v.(*JobStatus)
	}
	res, err := t.jobDelete(JobDelete(c))
	if err != nil || !res.Deleted {
		if err == nil {
			err = fmt.Errorf("%w: job %q", ErrNotFound, c.Name)
		}
		return res, err
	}
	if st.Name == "" {
		st = JobStatus{Name: c.Name, Revision: res.Job.ModifyIndex, PartitionCount: res.Job.Partitions, Partitions: []JobPartition{}}
	}
	st.CancelledMs = max(t.nowMs(), 1)
	t.jobStatusTxn().Insert([]byte(c.Name), &st)
	return res, nil
}

// JobStatus returns the status of job name, its State derived (see
// JobSubmitted), or false if the job was never submitted (or deleted).
func (v View) JobStatus(name string) (JobStatus, bool) {
	j, hasJob := v.Job(name)
	sv, ok := v.st.jobStatus.Get([]byte(name))
	var st JobStatus
	switch {
	case ok:
		st = *sv.(*JobStatus)
		st.Partitions = append([]JobPartition(nil), st.Partitions...)
	case hasJob:
		st = JobStatus{Name: name, Revision: j.ModifyIndex, PartitionCount: j.Partitions}
	default:
		return JobStatus{}, false
	}
	if st.Partitions == nil {
		st.Partitions = []JobPartition{}
	}
	if hasJob && j.Partitions > 0 {
		st.PartitionCount = j.Partitions
	}
	st.State = deriveJobState(st, hasJob)
	return st, true
}

// JobInfo returns the job of name with its status; false if neither exists.
func (v View) JobInfo(name string) (JobInfo, bool) {
	st, ok := v.JobStatus(name)
	if !ok {
		return JobInfo{}, false
	}
	j, _ := v.Job(name)
	j.Name = name
	return JobInfo{Job: j, State: st.State, Status: &st}, true
}

// JobInfos returns every job with its status, and the cancelled ones,
// sorted by name.
func (v View) JobInfos() []JobInfo {
	names := map[string]bool{}
	for _, j := range v.Jobs() {
		names[j.Name] = true
	}
	v.st.jobStatus.Root().Walk(func(k []byte, _ interface{}) bool {
		names[string(k)] = true
		return false
	})
	out := make([]JobInfo, 0, len(names))
	for n := range names {
		if ji, ok := v.JobInfo(n); ok {
			out = append(out, ji)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

func deriveJobState(st JobStatus, hasJob bool) string {
	if st.CancelledMs != 0 && !hasJob {
		return JobCancelled
	}
	finished := 0
	for _, p := range st.Partitions {
		if p.State == PartitionFailed {
			return JobFailed
		}
		if p.State == PartitionFinished && p.Revision == st.Revision && p.Partition < st.PartitionCount {
			finished++
		}
	}
	switch {
	case st.PartitionCount > 0 && int32(finished) == st.PartitionCount:
		return JobFinished
	case len(st.Partitions) > 0:
		return JobRunning
	}
	return JobSubmitted
}

// PartitionState returns the last report of one partition.
func (v View) PartitionState(job string, partition int32) (JobPartition, bool) {
	sv, ok := v.st.jobStatus.Get([]byte(job))
	if !ok {
		return JobPartition{}, false
	}
	ps := sv.(*JobStatus).Partitions
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Partition >= partition })
	if i < len(ps) && ps[i].Partition == partition {
		return ps[i], true
	}
	return JobPartition{}, false
}

// resetState drops the checkpoints (but the complete savepoints) and
// handoff points of job (a revision submitted with JobPut.ResetState or
// FromSavepoint).
func (t *txn) resetState(job string) {
	t.dropCheckpoints(job)
	t.dropHandoffs(job)
}
