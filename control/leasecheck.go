package control

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// CheckLeaseHistory checks the single-holder invariant on a lease history
// (GET /v1/leases/history): per job and partition, in Raft index order,
// every grant or takeover raises the epoch by exactly one, a grant only
// follows a release (or the holder re-acquiring), a takeover names the
// holder it replaced, and a release comes from the holder at its epoch.
// It returns the count of events per kind and one error per violation
// (errors.Join; nil when the history holds). A history of LeaseHistoryLimit
// events may have lost its oldest ones: then each lease's first event sets
// its starting epoch instead of epoch 1.
func CheckLeaseHistory(hist []LeaseEvent) (map[string]int, error) {
	hist = slices.Clone(hist)
	sort.Slice(hist, func(i, j int) bool { return hist[i].Index < hist[j].Index })
	truncated := len(hist) >= LeaseHistoryLimit
	type key struct {
		job       string
		partition int32
	}
	type lease struct {
		holder   string
		epoch    uint64
		released bool
	}
	leases := map[key]*lease{}
	kinds := map[string]int{}
	var errs []error
	for _, e := range hist {
		kinds[e.Kind]++
		k := key{e.Job, e.Partition}
		l := leases[k]
		if l == nil {
			l = &lease{released: true}
			if truncated && e.Epoch > 0 {
				l.epoch, l.holder, l.released = e.Epoch-1, e.PrevOwner, e.PrevOwner == ""
			}
			leases[k] = l
		}
		at := fmt.Sprintf("lease %s/%d at Raft index %d", e.Job, e.Partition, e.Index)
		switch e.Kind {
		case LeaseGranted, LeaseTakenOver:
			if e.Epoch != l.epoch+1 {
				errs = append(errs, fmt.Errorf("%s: epoch %d after %d", at, e.Epoch, l.epoch))
			}
			if e.Kind == LeaseGranted && !l.released && l.holder != e.Owner {
				errs = append(errs, fmt.Errorf("%s: %s acquired it while %s held it", at, e.Owner, l.holder))
			}
			if e.Kind == LeaseTakenOver && (l.released || e.PrevOwner != l.holder) {
				errs = append(errs, fmt.Errorf("%s: takeover by %s names %q, the holder was %q (released %v)", at, e.Owner, e.PrevOwner, l.holder, l.released))
			}
			l.holder, l.epoch, l.released = e.Owner, e.Epoch, false
		case LeaseReleased:
			if l.released || l.holder != e.Owner || l.epoch != e.Epoch {
				errs = append(errs, fmt.Errorf("%s: release by %s at epoch %d, the holder was %s at %d (released %v)", at, e.Owner, e.Epoch, l.holder, l.epoch, l.released))
			}
			l.released = true
		}
	}
	return kinds, errors.Join(errs...)
}
