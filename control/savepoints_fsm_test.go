package control

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestFSMSavepoints: a savepoint is a checkpoint that retention (retain 2)
// never evicts, that a periodic checkpoint cannot supersede while it is in
// progress, that survives the job's cancellation and a snapshot/restore; a
// job submitted again from it restores it and nothing older, and a handoff
// of a lease acquired for the cancelled job is not kept; SavepointDelete
// removes it.
func TestFSMSavepoints(t *testing.T) {
	a := newApplier(t)
	a.must(JobPut{Name: "iot", Spec: "x"})
	for p := int32(0); p < 2; p++ {
		a.must(LeaseAcquire{Job: "iot", Partition: p, Owner: "n1"})
	}
	complete := func(id uint64) {
		for p := int32(0); p < 2; p++ {
			a.must(CheckpointAck{Job: "iot", ID: id, Partition: p, Epoch: 1, Offset: int64(100*id) + int64(p), Snapshot: "s"})
		}
	}
	a.must(CheckpointStart{Job: "iot", ID: 1, Partitions: 2, Retain: 2})
	complete(1)
	if _, err := a.apply(CheckpointStart{Job: "nope", ID: 1, Partitions: 2, Savepoint: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("savepoint of an unknown job: %v, want ErrNotFound", err)
	}
	a.must(CheckpointStart{Job: "iot", ID: 2, Partitions: 2, Savepoint: true})
	if _, err := a.apply(CheckpointStart{Job: "iot", ID: 3, Partitions: 2, Retain: 2}); !errors.Is(err, ErrConflict) {
		t.Errorf("periodic checkpoint over a savepoint in progress: %v, want ErrConflict", err)
	}
	if _, err := a.apply(JobPut{Name: "iot", Spec: "x", FromSavepoint: 2}); !errors.Is(err, ErrConflict) {
		t.Errorf("submit from an incomplete savepoint: %v, want ErrConflict", err)
	}
	complete(2)
	for id := uint64(3); id <= 12; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 2, Retain: 2})
		complete(id)
	}
	if got, want := checkpointIDs(a.fsm.View(), "iot"), []uint64{2, 11, 12}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained %v, want %v (savepoint 2 + the newest 2)", got, want)
	}
	if sps := a.fsm.View().Savepoints("iot"); len(sps) != 1 || sps[0].ID != 2 || !sps[0].Complete || len(sps[0].Acks) != 2 || sps[0].Acks[1].Offset != 201 {
		t.Fatalf("savepoints %+v, want 2, complete, offsets 200 and 201", sps)
	}

	// Cancelled: the savepoint stays, the checkpoints go.
	a.must(JobCancel{Name: "iot"})
	if got, want := checkpointIDs(a.fsm.View(), "iot"), []uint64{2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after cancel: %v, want %v", got, want)
	}
	var buf bytes.Buffer
	snap, _ := a.fsm.Snapshot()
	if err := snap.Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := restored.View().Savepoints("iot"); !reflect.DeepEqual(got, a.fsm.View().Savepoints("iot")) {
		t.Errorf("restored savepoints %+v", got)
	}

	if _, err := a.apply(JobPut{Name: "iot", Spec: "x", FromSavepoint: 9}); !errors.Is(err, ErrNotFound) {
		t.Errorf("submit from an unknown savepoint: %v, want ErrNotFound", err)
	}
	if err := (JobPut{Name: "iot", Spec: "x", FromSavepoint: 2, ResetState: true}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("from savepoint with reset state: %v, want ErrInvalid", err)
	}
	j := a.must(JobPut{Name: "iot", Spec: "x", FromSavepoint: 2}).Job
	if j.FromSavepoint != 2 || j.RestoreIndex != j.ModifyIndex {
		t.Fatalf("job %+v, want from savepoint 2 at its revision", j)
	}
	// The old job's holder releases with a handoff: not kept.
	if l := a.must(LeaseRelease{Job: "iot", Partition: 0, Owner: "n1", Epoch: 1, Handoff: &HandoffPoint{Offset: 1234, Snapshot: "old"}}).Lease; l.Handoff != nil {
		t.Errorf("handoff of the cancelled job's lease kept: %+v", l.Handoff)
	}
	a.must(CheckpointStart{Job: "iot", ID: 13, Partitions: 2, Retain: 2})
	restorable := func(completeOnly bool) []uint64 {
		var out []uint64
		for _, cp := range a.fsm.View().RestorableCheckpoints("iot", completeOnly) {
			out = append(out, cp.ID)
		}
		return out
	}
	if got, want := restorable(false), []uint64{13, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("restorable %v, want %v", got, want)
	}
	if got, want := restorable(true), []uint64{2}; !reflect.DeepEqual(got, want) {
		t.Errorf("restorable with transactional sinks %v, want %v (13 is incomplete)", got, want)
	}
	// A later revision keeps the savepoint as its floor.
	j2 := a.must(JobPut{Name: "iot", Spec: "y"}).Job
	if j2.FromSavepoint != 2 || j2.RestoreIndex != j.RestoreIndex {
		t.Errorf("next revision %+v, want the savepoint floor of %+v", j2, j)
	}
	// A job submitted anew (no savepoint) restores none of them.
	a.must(JobDelete{Name: "iot"})
	a.must(JobPut{Name: "iot", Spec: "x"})
	if got := restorable(false); len(got) != 0 {
		t.Errorf("a new job restores %v, want nothing", got)
	}

	if _, err := a.apply(SavepointDelete{Job: "iot", ID: 13}); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a checkpoint that is no savepoint: %v, want ErrNotFound", err)
	}
	if r := a.must(SavepointDelete{Job: "iot", ID: 2}); !r.Deleted {
		t.Errorf("delete: %+v", r)
	}
	if sps := a.fsm.View().Savepoints("iot"); len(sps) != 0 {
		t.Errorf("savepoints after delete: %+v", sps)
	}
	if _, err := a.apply(SavepointDelete{Job: "iot", ID: 2}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	// Stop with savepoint: the completing ack cancels the job.
	a.must(CheckpointStart{Job: "iot", ID: 20, Partitions: 2, Savepoint: true, Cancel: true})
	if _, ok := a.fsm.View().Job("iot"); !ok {
		t.Fatal("job cancelled before its savepoint completed")
	}
	if err := (CheckpointStart{Job: "iot", ID: 21, Partitions: 2, Cancel: true}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("cancel without savepoint: %v, want ErrInvalid", err)
	}
	for p := int32(0); p < 2; p++ {
		a.must(LeaseAcquire{Job: "iot", Partition: p, Owner: "n1", PrevEpoch: 1})
	}
	for p := int32(0); p < 2; p++ {
		a.must(CheckpointAck{Job: "iot", ID: 20, Partition: p, Epoch: 2, Offset: 7, Snapshot: "s"})
	}
	if st, _ := a.fsm.View().JobStatus("iot"); st.State != JobCancelled {
		t.Errorf("after the stop savepoint: job state %q, want cancelled", st.State)
	}
	if sps := a.fsm.View().Savepoints("iot"); len(sps) != 1 || !sps[0].Complete || !sps[0].CancelJob {
		t.Errorf("stop savepoint: %+v", sps)
	}
	if _, err := DecodeCommand([]byte{byte(TypeSavepointDelete), '{', '}'}); err != nil {
		t.Errorf("decode: %v", err)
	}
}
