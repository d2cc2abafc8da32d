package control

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"

	"github.com/hashicorp/raft"
)

func TestFSMLeaseHistoryAndHandoff(t *testing.T) {
	a := newApplier(t)
	at := time.UnixMilli(1_700_000_000_000)
	apply := func(cmd Command) (Result, error) {
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		a.index++
		resp := a.fsm.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: at}).(*applyResponse)
		return resp.Result, resp.Err
	}
	must := func(cmd Command) Result {
		t.Helper()
		r, err := apply(cmd)
		if err != nil {
			t.Fatalf("%#v: %v", cmd, err)
		}
		return r
	}
	must(LeaseAcquire{Job: "j", Partition: 0, Owner: "n1"})                                                                                  // 1: grant e1
	must(LeaseAcquire{Job: "j", Partition: 1, Owner: "n1"})                                                                                  // 2
	r := must(LeaseRelease{Job: "j", Partition: 0, Owner: "n1", Epoch: 1, Handoff: &HandoffPoint{Offset: 42, Snapshot: "s/0/1", Epoch: 99}}) // 3
	if h := r.Lease.Handoff; h == nil || *h != (HandoffPoint{Epoch: 1, Offset: 42, Snapshot: "s/0/1"}) {
		t.Fatalf("released lease handoff %+v, want epoch 1 offset 42", h)
	}
	r = must(LeaseAcquire{Job: "j", Partition: 0, Owner: "n2", PrevEpoch: 1}) // 4: e2
	if h := r.Lease.Handoff; h == nil || h.Offset != 42 || r.Lease.Epoch != 2 {
		t.Fatalf("new owner's lease %+v: the handoff point must survive the acquire", r.Lease)
	}
	must(LeaseAcquire{Job: "j", Partition: 0, Owner: "n3", PrevEpoch: 2, Takeover: true, HolderRenewIndex: 4}) // 5: e3 takeover (n2's acquire at 4 was its last renewal)
	must(LeaseRelease{Job: "j", Partition: 0, Owner: "n3", Epoch: 3})                                          // 6: keeps handoff
	if l, _ := a.fsm.View().Lease("j", 0); l.Handoff == nil || l.Handoff.Epoch != 1 {
		t.Fatalf("a release without a point dropped the earlier one: %+v", l)
	}
	if err := (LeaseRelease{Job: "j", Partition: 0, Owner: "n3", Epoch: 3, Handoff: &HandoffPoint{Offset: -1, Snapshot: "x"}}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("handoff with a negative offset: %v, want ErrInvalid", err)
	}
	if _, err := apply(LeaseAcquire{Job: "j", Partition: 0, Owner: "n1", PrevEpoch: 2}); !errors.Is(err, ErrConflict) {
		t.Errorf("acquire with a stale epoch: %v, want ErrConflict", err)
	}

	want := []LeaseEvent{
		{Index: 1, Kind: LeaseGranted, Owner: "n1", Epoch: 1, Partition: 0},
		{Index: 3, Kind: LeaseReleased, Owner: "n1", Epoch: 1, Partition: 0},
		{Index: 4, Kind: LeaseGranted, Owner: "n2", Epoch: 2, Partition: 0},
		{Index: 5, Kind: LeaseTakenOver, Owner: "n3", Epoch: 3, Partition: 0, PrevOwner: "n2"},
		{Index: 6, Kind: LeaseReleased, Owner: "n3", Epoch: 3, Partition: 0},
	}
	got := a.fsm.View().LeaseHistory("j", 0)
	if len(got) != len(want) {
		t.Fatalf("history %+v, want %d events", got, len(want))
	}
	for i, w := range want {
		w.Job, w.TimeMs = "j", at.UnixMilli()
		if got[i] != w {
			t.Errorf("event %d = %+v, want %+v", i, got[i], w)
		}
	}
	if n := len(a.fsm.View().LeaseHistory("", -1)); n != 6 {
		t.Errorf("%d events in all, want 6", n)
	}
	if n := len(a.fsm.View().LeaseHistory("other", -1)); n != 0 {
		t.Errorf("%d events for an unknown job", n)
	}
}

func TestFSMLeaseHistoryIsBounded(t *testing.T) {
	a := newApplier(t)
	var epoch uint64
	for i := 0; i < LeaseHistoryLimit+50; i++ {
		a.must(LeaseAcquire{Job: "j", Partition: 0, Owner: "n1", PrevEpoch: epoch})
		epoch++
	}
	h := a.fsm.View().LeaseHistory("", -1)
	if len(h) != LeaseHistoryLimit || h[0].Epoch != 51 || h[len(h)-1].Epoch != epoch {
		t.Fatalf("history has %d events from epoch %d to %d, want the last %d (51..%d)", len(h), h[0].Epoch, h[len(h)-1].Epoch, LeaseHistoryLimit, epoch)
	}
}

// TestFSMLeaseFencingInvariants applies seeded random acquires and releases
// from several owners, with right and wrong epochs, and checks the fencing
// invariants on the resulting history: per partition, grants have strictly
// increasing consecutive epochs; a grant to a new owner follows a release
// or is a takeover; a release is by the holder of the current epoch; and
// acks at any epoch but the current held one are rejected.
func TestFSMLeaseFencingInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed.For(t), 3))
	a := newApplier(t)
	owners := []string{"n1", "n2", "n3"}
	a.must(CheckpointStart{Job: "j", ID: 1, Partitions: 4})
	for i := 0; i < 3000; i++ {
		p := int32(rng.IntN(4))
		cur, _ := a.fsm.View().Lease("j", p)
		epoch := cur.Epoch
		if rng.IntN(4) == 0 {
			epoch = uint64(rng.IntN(int(cur.Epoch) + 2)) // often stale
		}
		owner := owners[rng.IntN(len(owners))]
		switch rng.IntN(3) {
		case 0:
			a.apply(LeaseAcquire{Job: "j", Partition: p, Owner: owner, PrevEpoch: epoch, Takeover: rng.IntN(3) == 0})
		case 1:
			if epoch > 0 {
				a.apply(LeaseRelease{Job: "j", Partition: p, Owner: owner, Epoch: epoch})
			}
		case 2:
			if epoch > 0 {
				_, err := a.apply(CheckpointAck{Job: "j", ID: 1, Partition: p, Epoch: epoch, Offset: 1, Snapshot: "s"})
				held := cur.Epoch > 0 && !cur.Released && epoch == cur.Epoch
				if err == nil && !held {
					t.Fatalf("step %d: ack at epoch %d accepted while the lease is %+v", i, epoch, cur)
				}
			}
		}
	}
	type holder struct {
		owner    string
		epoch    uint64
		released bool
	}
	last := map[int32]holder{}
	for _, ev := range a.fsm.View().LeaseHistory("j", -1) {
		h := last[ev.Partition]
		switch ev.Kind {
		case LeaseGranted, LeaseTakenOver:
			if ev.Epoch != h.epoch+1 {
				t.Fatalf("index %d: partition %d granted epoch %d after epoch %d", ev.Index, ev.Partition, ev.Epoch, h.epoch)
			}
			held := h.epoch > 0 && !h.released
			if held && h.owner != ev.Owner && ev.Kind != LeaseTakenOver {
				t.Fatalf("index %d: partition %d granted to %s while %s held epoch %d, without takeover", ev.Index, ev.Partition, ev.Owner, h.owner, h.epoch)
			}
			last[ev.Partition] = holder{owner: ev.Owner, epoch: ev.Epoch}
		case LeaseReleased:
			if h.released || h.owner != ev.Owner || h.epoch != ev.Epoch {
				t.Fatalf("index %d: release %+v of lease %+v", ev.Index, ev, h)
			}
			h.released = true
			last[ev.Partition] = h
		default:
			t.Fatalf("unknown event kind %q", ev.Kind)
		}
	}
	for p, h := range last {
		l, _ := a.fsm.View().Lease("j", p)
		if l.Owner != h.owner || l.Epoch != h.epoch || l.Released != h.released {
			t.Errorf("partition %d: lease %+v does not match its history %+v", p, l, h)
		}
	}
	t.Logf("final epochs: %s", fmt.Sprint(last))
}
