package control

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"testing"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/checkpoint/checkpointtest"
)

// TestCoordinatorOnRaft runs the coordinator's table (the one eddy run's
// storage ports run in actors/checkpoint) over the Raft ports: starts and
// acks go through the FSM, which completes the checkpoint and applies
// retention.
func TestCoordinatorOnRaft(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) func() checkpointtest.Ports {
		a := newApplier(t)
		job := checkpointtest.Job
		a.must(JobPut{Name: job, Spec: "source: {}"})
		for p := int32(0); p < 3; p++ {
			a.must(LeaseAcquire{Job: job, Partition: p, Owner: "n1"})
		}
		return func() checkpointtest.Ports {
			return checkpointtest.Ports{
				IDs:   NewCheckpointIDs(a.fsm, job),
				Store: NewCheckpointStore(a.fsm, job),
				Started: func(t *testing.T, id uint64, kind checkpoint.Kind, parts []int32, retain int) {
					a.must(CheckpointStart{Job: job, ID: id, Partitions: int32(len(parts)), Savepoint: kind == checkpoint.KindSavepoint, Retain: retain})
				},
				Acked: func(t *testing.T, id uint64, ack checkpoint.PartitionAck) {
					a.must(CheckpointAck{Job: job, ID: id, Partition: ack.Partition, Epoch: 1, Offset: ack.Offset, Snapshot: ack.Snapshot})
				},
			}
		}
	})
}

// TestCheckpointIDsOutliveTheJob: the job's id counter survives its
// deletion, a new submission, a start from a savepoint and a snapshot
// restore, so that no checkpoint id is used twice under one job name.
func TestCheckpointIDsOutliveTheJob(t *testing.T) {
	a := newApplier(t)
	a.must(JobPut{Name: "iot", Spec: "s"})
	a.must(LeaseAcquire{Job: "iot", Partition: 0, Owner: "n1"})
	ids := NewCheckpointIDs(a.fsm, "iot")
	next := func() uint64 {
		id, err := ids.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if n := next(); n != 1 {
		t.Fatalf("first id %d, want 1", n)
	}
	for id := uint64(1); id <= 5; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 1, Savepoint: id == 2})
		a.must(CheckpointAck{Job: "iot", ID: id, Partition: 0, Epoch: 1, Offset: int64(id), Snapshot: "s"})
	}
	// Savepoint 2 is kept; everything else of the job goes with it.
	a.must(JobDelete{Name: "iot"})
	if n := next(); n != 6 {
		t.Fatalf("next id after the deletion %d, want 6", n)
	}
	a.must(JobPut{Name: "iot", Spec: "s", FromSavepoint: 2})
	if _, err := a.apply(CheckpointStart{Job: "iot", ID: 3, Partitions: 1}); err == nil {
		t.Fatal("a start of id 3 (used by the deleted job) applied")
	}
	if n := next(); n != 6 {
		t.Fatalf("next id after the resubmit from savepoint 2: %d, want 6", n)
	}
	a.must(CheckpointStart{Job: "iot", ID: 6, Partitions: 1})

	buf := &memSink{Buffer: &bytes.Buffer{}}
	snap, _ := a.fsm.Snapshot()
	if err := snap.Persist(buf); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(buf)); err != nil {
		t.Fatal(err)
	}
	if got := restored.View().NextCheckpointID("iot"); got != 7 {
		t.Fatalf("next id after a snapshot restore %d, want 7", got)
	}
	if got, want := checkpointIDs(restored.View(), "iot"), []uint64{2, 6}; !reflect.DeepEqual(got, want) {
		t.Fatalf("records after the restore %v, want %v", got, want)
	}
}
