package virtual

import (
	"testing"

	"github.com/eddy-iot/eddy/control"
	"github.com/hashicorp/raft"
)

func TestViewLeases(t *testing.T) {
	fsm := control.NewFSM(nil)
	var index uint64
	apply := func(cmd control.Command) {
		t.Helper()
		data, err := control.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		index++
		fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
	}
	leases := ViewLeases{View: fsm.View}
	if _, _, ok := leases.Owner("j", 0); ok {
		t.Fatal("owner of a partition never leased")
	}
	apply(control.LeaseAcquire{Job: "j", Partition: 0, Owner: "n1"})
	if o, e, ok := leases.Owner("j", 0); !ok || o != "n1" || e != 1 {
		t.Fatalf("after acquire: %q %d %v, want n1 epoch 1", o, e, ok)
	}
	apply(control.LeaseRelease{Job: "j", Partition: 0, Owner: "n1", Epoch: 1})
	if o, _, ok := leases.Owner("j", 0); ok {
		t.Fatalf("released lease still has holder %q", o)
	}
	apply(control.LeaseAcquire{Job: "j", Partition: 0, Owner: "n2", PrevEpoch: 1})
	if o, e, ok := leases.Owner("j", 0); !ok || o != "n2" || e != 2 {
		t.Fatalf("after the move: %q %d %v, want n2 epoch 2", o, e, ok)
	}
}

type progressSource map[int32]control.PartitionProgress

func (s progressSource) PartitionProgress(_ string, p int32) (control.PartitionProgress, bool) {
	pp, ok := s[p]
	return pp, ok
}

func TestProgressLocal(t *testing.T) {
	l := ProgressLocal{Source: progressSource{
		1: {Offset: 10, Lag: 2, WatermarkMs: 1_700_000_000_123},
		2: {Offset: 5, Lag: -1},
	}}
	if p, ok := l.Progress("j", 1); !ok || p.Offset != 10 || p.Lag != 2 || p.Watermark.UnixMilli() != 1_700_000_000_123 {
		t.Fatalf("partition 1: %+v %v", p, ok)
	}
	if p, ok := l.Progress("j", 2); !ok || !p.Watermark.IsZero() || p.Lag != -1 {
		t.Fatalf("partition 2 (no watermark): %+v %v", p, ok)
	}
	if _, ok := l.Progress("j", 3); ok {
		t.Fatal("partition 3 does not run here")
	}
}

func TestAssignerLocal(t *testing.T) {
	l := AssignerLocal{Partitions: func() []control.PartitionStatus {
		return []control.PartitionStatus{
			{Job: "j", Partition: 0, State: control.PartitionRunning, Progress: &control.PartitionProgress{Offset: 7, Lag: 1, WatermarkMs: 1000}},
			{Job: "j", Partition: 1, State: control.PartitionRunning}, // no progress yet
			{Job: "k", Partition: 0, State: "starting"},
		}
	}}
	if p, ok := l.Progress("j", 0); !ok || p.Offset != 7 || p.Lag != 1 || p.Watermark.UnixMilli() != 1000 {
		t.Fatalf("j/0: %+v %v", p, ok)
	}
	for _, c := range []struct {
		job string
		p   int
	}{{"j", 1}, {"k", 0}, {"j", 2}} {
		if _, ok := l.Progress(c.job, c.p); ok {
			t.Errorf("%s/%d reported as running", c.job, c.p)
		}
	}
}
