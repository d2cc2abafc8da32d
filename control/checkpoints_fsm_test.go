package control

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

func checkpointIDs(v View, job string) []uint64 {
	var out []uint64
	for _, cp := range v.Checkpoints(job) {
		out = append(out, cp.ID)
	}
	return out
}

// TestFSMRetentionKeepsLastComplete: the FSM applies checkpoint.Subsumed
// with the job's checkpoint.retain (CheckpointStart.Retain) at every start
// and completion: a run of incomplete checkpoints longer than the retention
// never evicts a complete checkpoint, only the older incomplete ones, and a
// completion evicts the incomplete ones before it.
func TestFSMRetentionKeepsLastComplete(t *testing.T) {
	a := newApplier(t)
	for p := int32(0); p < 2; p++ {
		a.must(LeaseAcquire{Job: "iot", Partition: p, Owner: "n1"})
	}
	ack := func(id uint64, p int32) {
		a.must(CheckpointAck{Job: "iot", ID: id, Partition: p, Epoch: 1, Offset: int64(100*id) + int64(p), Snapshot: "s"})
	}
	// 1 and 2 complete, then 3..20 with partition 1 never acking.
	for id := uint64(1); id <= 2; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 2, Retain: 3})
		ack(id, 0)
		ack(id, 1)
	}
	for id := uint64(3); id <= 20; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 2, Retain: 3})
		ack(id, 0)
	}
	v := a.fsm.View()
	if got, want := checkpointIDs(v, "iot"), []uint64{1, 2, 18, 19, 20}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained %v, want %v (complete 1 and 2 + the newest 3 incomplete)", got, want)
	}
	// What restores (no job record: all of them), newest first: with
	// transactional sinks only the complete ones, otherwise every record
	// for the partitions that acked it.
	for _, tc := range []struct {
		completeOnly bool
		want         []uint64
	}{{true, []uint64{2, 1}}, {false, []uint64{20, 19, 18, 2, 1}}} {
		var got []uint64
		for _, cp := range v.RestorableCheckpoints("iot", tc.completeOnly) {
			got = append(got, cp.ID)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("RestorableCheckpoints(complete only %v) = %v, want %v", tc.completeOnly, got, tc.want)
		}
	}
	cp, ok := v.LastCompleteCheckpoint("iot")
	if !ok || cp.ID != 2 || len(cp.Acks) != 2 {
		t.Fatalf("last complete %+v %v, want checkpoint 2 with both acks", cp, ok)
	}
	// Every older incomplete one was aborted when its successor started.
	for _, c := range v.Checkpoints("iot") {
		if c.ID == 18 || c.ID == 19 {
			if !c.Aborted || !reflect.DeepEqual(c.Missing, []int32{1}) || c.AbortReason == "" {
				t.Errorf("checkpoint %d: aborted %v missing %v reason %q, want aborted, missing [1]", c.ID, c.Aborted, c.Missing, c.AbortReason)
			}
		}
	}
	// Completing 20 evicts the incomplete ones before it, at once.
	ack(20, 1)
	if got, want := checkpointIDs(a.fsm.View(), "iot"), []uint64{1, 2, 20}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained after 20 completed %v, want %v", got, want)
	}
	// The fourth complete one evicts the oldest complete one.
	a.must(CheckpointStart{Job: "iot", ID: 21, Partitions: 2, Retain: 3})
	ack(21, 0)
	ack(21, 1)
	if got, want := checkpointIDs(a.fsm.View(), "iot"), []uint64{2, 20, 21}; !reflect.DeepEqual(got, want) {
		t.Fatalf("retained after 21 completed %v, want %v", got, want)
	}
	// Retain 0 is the default: the 3 complete + the newest RetainCheckpoints incomplete.
	for id := uint64(22); id < 22+RetainCheckpoints+2; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 2})
	}
	if n := len(a.fsm.View().Checkpoints("iot")); n != 3+RetainCheckpoints {
		t.Errorf("%d retained with the default, want %d (+ complete 2, 20, 21)", n, 3+RetainCheckpoints)
	}
	if err := (CheckpointStart{Job: "iot", ID: 99, Partitions: 2, Retain: -1}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("retain -1: %v, want ErrInvalid", err)
	}
}

// TestFSMCheckpointAbort: an aborted checkpoint records its missing
// partitions, takes no more acks, never completes, and survives a
// snapshot/restore.
func TestFSMCheckpointAbort(t *testing.T) {
	a := newApplier(t)
	for p := int32(0); p < 3; p++ {
		a.must(LeaseAcquire{Job: "iot", Partition: p, Owner: "n1"})
	}
	a.must(CheckpointStart{Job: "iot", ID: 1, Partitions: 3})
	a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 1, Epoch: 1, Offset: 5, Snapshot: "s1"})
	if _, err := a.apply(CheckpointAbort{Job: "iot", ID: 7, Reason: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("abort of an unknown checkpoint: %v, want ErrNotFound", err)
	}
	r := a.must(CheckpointAbort{Job: "iot", ID: 1, Reason: "acks missing after 30s"})
	if cp := r.Checkpoint; !cp.Aborted || cp.Complete || !reflect.DeepEqual(cp.Missing, []int32{0, 2}) || cp.AbortReason != "acks missing after 30s" || cp.AbortIndex == 0 {
		t.Fatalf("aborted checkpoint %+v", cp)
	}
	a.must(CheckpointAbort{Job: "iot", ID: 1, Reason: "again"}) // idempotent
	for _, p := range []int32{0, 2} {
		if _, err := a.apply(CheckpointAck{Job: "iot", ID: 1, Partition: p, Epoch: 1, Offset: 5, Snapshot: "s"}); !errors.Is(err, ErrConflict) {
			t.Errorf("ack of partition %d after the abort: %v, want ErrConflict", p, err)
		}
	}
	if _, ok := a.fsm.View().LastCompleteCheckpoint("iot"); ok {
		t.Error("an aborted checkpoint counts as complete")
	}
	// The next one completes; aborting it then is a conflict.
	a.must(CheckpointStart{Job: "iot", ID: 2, Partitions: 3})
	for p := int32(0); p < 3; p++ {
		a.must(CheckpointAck{Job: "iot", ID: 2, Partition: p, Epoch: 1, Offset: 9, Snapshot: "s"})
	}
	if _, err := a.apply(CheckpointAbort{Job: "iot", ID: 2, Reason: "late"}); !errors.Is(err, ErrConflict) {
		t.Errorf("abort of a complete checkpoint: %v, want ErrConflict", err)
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
	if got, want := restored.View().Checkpoints("iot"), a.fsm.View().Checkpoints("iot"); !reflect.DeepEqual(got, want) {
		t.Errorf("restored checkpoints differ:\n got %+v\nwant %+v", got, want)
	}
	if _, err := DecodeCommand([]byte{byte(TypeCheckpointAbort), '{', '}'}); err != nil {
		t.Errorf("decode abort: %v", err)
	}
	if err := (CheckpointAbort{Job: "iot"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("abort without id: %v, want ErrInvalid", err)
	}
}

// TestFSMJobDeleteDropsCheckpointsAndHandoffs: deleting a job drops its
// checkpoints and keeps its leases as the epoch floor; a job submitted again
// under the name continues above the old epochs and does not resume from
// the deleted job's handoff points; other jobs are untouched.
func TestFSMJobDeleteDropsCheckpointsAndHandoffs(t *testing.T) {
	a := newApplier(t)
	for _, job := range []string{"iot", "iot2"} {
		a.must(JobPut{Name: job, Spec: "x: 1\n"})
		a.must(LeaseAcquire{Job: job, Partition: 0, Owner: "n1"})
		a.must(CheckpointStart{Job: job, ID: 1, Partitions: 1})
		a.must(CheckpointAck{Job: job, ID: 1, Partition: 0, Epoch: 1, Offset: 5, Snapshot: "s"})
	}
	if r := a.must(JobDelete{Name: "iot"}); !r.Deleted {
		t.Fatal("job not deleted")
	}
	// The holder releases with a handoff point as its partition stops.
	a.must(LeaseRelease{Job: "iot", Partition: 0, Owner: "n1", Epoch: 1, Handoff: &HandoffPoint{Offset: 4, Snapshot: "h"}})
	v := a.fsm.View()
	if n := len(v.Checkpoints("iot")); n != 0 {
		t.Errorf("%d checkpoints of the deleted job kept", n)
	}
	if n := len(v.Checkpoints("iot2")); n != 1 {
		t.Errorf("other job: %d checkpoints, want 1", n)
	}
	// Submitted again: no handoff point, the next grant is epoch 2.
	a.must(JobPut{Name: "iot", Spec: "x: 2\n"})
	if l, ok := a.fsm.View().Lease("iot", 0); !ok || l.Handoff != nil || l.Epoch != 1 || !l.Released {
		t.Errorf("lease after re-submit %+v %v, want released at epoch 1 without handoff", l, ok)
	}
	if r := a.must(LeaseAcquire{Job: "iot", Partition: 0, Owner: "n3", PrevEpoch: 1}); r.Lease.Epoch != 2 {
		t.Errorf("epoch after re-submit %d, want 2", r.Lease.Epoch)
	}
	// An update of a live job keeps its handoff points.
	a.must(LeaseRelease{Job: "iot2", Partition: 0, Owner: "n1", Epoch: 1, Handoff: &HandoffPoint{Offset: 4, Snapshot: "h"}})
	a.must(JobPut{Name: "iot2", Spec: "x: 3\n"})
	if l, _ := a.fsm.View().Lease("iot2", 0); l.Handoff == nil {
		t.Errorf("a spec update dropped the handoff point: %+v", l)
	}
}

// TestFSMCheckpointCompletedMs: the ack that completes a checkpoint stamps
// it with its log's append time; earlier acks leave it 0.
func TestFSMCheckpointCompletedMs(t *testing.T) {
	a := newApplier(t)
	a.must(LeaseAcquire{Job: "iot", Partition: 0, Owner: "n1"})
	a.must(LeaseAcquire{Job: "iot", Partition: 1, Owner: "n1"})
	a.at = time.UnixMilli(1_700_000_000_000)
	a.must(CheckpointStart{Job: "iot", ID: 1, Partitions: 2, StartedMs: 1_699_999_999_000})
	if r := a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 0, Epoch: 1, Offset: 5, Snapshot: "s"}); r.Checkpoint.CompletedMs != 0 {
		t.Fatalf("incomplete checkpoint has completed_ms %d", r.Checkpoint.CompletedMs)
	}
	a.at = a.at.Add(1500 * time.Millisecond)
	a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 1, Epoch: 1, Offset: 7, Snapshot: "s"})
	cp, ok := a.fsm.View().LastCompleteCheckpoint("iot")
	if !ok || cp.CompletedMs != 1_700_000_001_500 {
		t.Fatalf("complete checkpoint %+v (ok %v), want completed_ms 1700000001500", cp, ok)
	}
}
