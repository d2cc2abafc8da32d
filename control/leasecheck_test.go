package control

import (
	"strings"
	"testing"
)

func TestCheckLeaseHistory(t *testing.T) {
	ev := func(i uint64, kind, owner string, epoch uint64, prev string) LeaseEvent {
		return LeaseEvent{Index: i, Kind: kind, Job: "j", Partition: 0, Owner: owner, Epoch: epoch, PrevOwner: prev}
	}
	good := []LeaseEvent{
		ev(7, LeaseReleased, "a", 3, ""), // out of order on purpose: sorted by index
		ev(1, LeaseGranted, "a", 1, ""),
		ev(3, LeaseTakenOver, "b", 2, "a"),
		ev(4, LeaseReleased, "b", 2, ""),
		ev(6, LeaseGranted, "a", 3, ""),
	}
	kinds, err := CheckLeaseHistory(good)
	if err != nil {
		t.Fatalf("valid history: %v", err)
	}
	if kinds[LeaseGranted] != 2 || kinds[LeaseTakenOver] != 1 || kinds[LeaseReleased] != 2 {
		t.Errorf("kinds = %v", kinds)
	}
	for name, tc := range map[string]struct {
		hist []LeaseEvent
		want string
	}{
		"epoch skipped":       {[]LeaseEvent{ev(1, LeaseGranted, "a", 2, "")}, "epoch 2 after 0"},
		"grant while held":    {[]LeaseEvent{ev(1, LeaseGranted, "a", 1, ""), ev(2, LeaseGranted, "b", 2, "")}, "b acquired it while a held it"},
		"takeover wrong prev": {[]LeaseEvent{ev(1, LeaseGranted, "a", 1, ""), ev(2, LeaseTakenOver, "b", 2, "c")}, `names "c"`},
		"release by other":    {[]LeaseEvent{ev(1, LeaseGranted, "a", 1, ""), ev(2, LeaseReleased, "b", 1, "")}, "release by b"},
	} {
		_, err := CheckLeaseHistory(tc.hist)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	// Two jobs' partition 0 are different leases.
	two := []LeaseEvent{ev(1, LeaseGranted, "a", 1, ""), {Index: 2, Kind: LeaseGranted, Job: "k", Owner: "b", Epoch: 1}}
	if _, err := CheckLeaseHistory(two); err != nil {
		t.Errorf("two jobs: %v", err)
	}
}
