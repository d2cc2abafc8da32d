package control

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestFSMJobLifecycle drives one job through submitted → running → failed
// → running → finished, then an update and a cancel, as the holders'
// reports would, and checks fencing and the snapshot round trip.
func TestFSMJobLifecycle(t *testing.T) {
	a := newApplier(t)
	state := func() JobStatus {
		t.Helper()
		st, ok := a.fsm.View().JobStatus("j")
		if !ok {
			t.Fatal("no status")
		}
		return st
	}
	rev := a.must(JobPut{Name: "j", Spec: "x", Partitions: 2}).Job.ModifyIndex
	if s := state(); s.State != JobSubmitted || s.Revision != rev || s.PartitionCount != 2 {
		t.Fatalf("after submit: %+v", s)
	}
	a.must(LeaseAcquire{Job: "j", Partition: 0, Owner: "n1"})
	a.must(LeaseAcquire{Job: "j", Partition: 1, Owner: "n2"})
	a.must(JobReport{Job: "j", Partition: 1, Owner: "n2", Epoch: 1, Revision: rev, State: PartitionRunning})
	if s := state(); s.State != JobRunning || len(s.Partitions) != 1 {
		t.Fatalf("after a running report: %+v", s)
	}
	// Fenced: wrong owner, wrong epoch, unknown job.
	for _, c := range []JobReport{
		{Job: "j", Partition: 0, Owner: "n2", Epoch: 1, State: PartitionRunning},
		{Job: "j", Partition: 0, Owner: "n1", Epoch: 2, State: PartitionRunning},
	} {
		if _, err := a.apply(c); !errors.Is(err, ErrConflict) {
			t.Errorf("%+v: %v, want ErrConflict", c, err)
		}
	}
	if _, err := a.apply(JobReport{Job: "other", Partition: 0, Owner: "n1", Epoch: 1, State: PartitionRunning}); !errors.Is(err, ErrNotFound) {
		t.Errorf("report of an unknown job: %v", err)
	}
	a.must(JobReport{Job: "j", Partition: 0, Owner: "n1", Epoch: 1, Revision: rev, State: PartitionFailed, Error: "sink down"})
	if s := state(); s.State != JobFailed || s.Partitions[0].Error != "sink down" {
		t.Fatalf("after a failure: %+v", s)
	}
	a.must(JobReport{Job: "j", Partition: 0, Owner: "n1", Epoch: 1, Revision: rev, State: PartitionRunning})
	a.must(JobReport{Job: "j", Partition: 0, Owner: "n1", Epoch: 1, Revision: rev, State: PartitionFinished, Offset: 10})
	if s := state(); s.State != JobRunning || s.Partitions[0].Restarts != 1 || s.Partitions[0].Error != "sink down" {
		t.Fatalf("one of two finished: %+v", s)
	}
	a.must(JobReport{Job: "j", Partition: 1, Owner: "n2", Epoch: 1, Revision: rev, State: PartitionFinished, Offset: 7})
	if s := state(); s.State != JobFinished {
		t.Fatalf("both finished: %+v", s)
	}

	// Snapshot and restore keep the status.
	var buf bytes.Buffer
	snap, _ := a.fsm.Snapshot()
	if err := snap.Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got, _ := restored.View().JobStatus("j"); !reflect.DeepEqual(got, state()) {
		t.Errorf("restored status %+v, want %+v", got, state())
	}

	// An update is a new revision: finished partitions of the old one do
	// not finish it.
	rev2 := a.must(JobPut{Name: "j", Spec: "y", Partitions: 2}).Job.ModifyIndex
	if s := state(); s.State != JobRunning || s.Revision != rev2 {
		t.Fatalf("after an update: %+v", s)
	}
	a.must(JobCancel{Name: "j"})
	if s := state(); s.State != JobCancelled {
		t.Fatalf("after cancel: %+v", s)
	}
	if _, ok := a.fsm.View().Job("j"); ok {
		t.Error("a cancelled job is still stored")
	}
	if _, err := a.apply(JobCancel{Name: "j"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second cancel: %v", err)
	}
	a.must(JobPut{Name: "j", Spec: "z"})
	if s := state(); s.State != JobSubmitted || len(s.Partitions) != 0 {
		t.Fatalf("submitted again: %+v", s)
	}
	a.must(JobDelete{Name: "j"})
	if _, ok := a.fsm.View().JobStatus("j"); ok {
		t.Error("a deleted job keeps a status")
	}
}
