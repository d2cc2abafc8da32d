package assign

import (
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// TestLeaseClock: the holder's side of the lease timing — valid until the
// send time of the last confirmed renewal that listed the lease + TTL −
// safety, extended only for the leases Raft listed, and expiry is final.
func TestLeaseClock(t *testing.T) {
	ttl, safety := 3*time.Second, 500*time.Millisecond
	c := newLeaseClock(ttl, safety)
	t0 := time.Now()
	a := control.Lease{Job: "j", Partition: 1, Epoch: 4}
	b := control.Lease{Job: "j", Partition: 2, Epoch: 7}
	c.granted(a, t0)
	c.granted(b, t0)
	if !c.valid("j", 1, 4, t0.Add(ttl-safety-time.Millisecond)) {
		t.Fatal("lease invalid before send + TTL − safety")
	}
	if c.valid("j", 1, 3, t0) || c.valid("j", 9, 4, t0) {
		t.Fatal("an unknown epoch or partition is valid")
	}
	// A renewal sent at t0+1s lists only a: b is not extended.
	c.renewed([]control.Lease{a}, t0.Add(time.Second))
	if !c.valid("j", 1, 4, t0.Add(ttl-safety+500*time.Millisecond)) {
		t.Error("renewed lease not extended")
	}
	if c.valid("j", 2, 7, t0.Add(ttl-safety)) {
		t.Error("a lease the renewal did not list was extended")
	}
	// Expiry is sticky: a renewal confirmed after b expired does not
	// revive it.
	c.renewed([]control.Lease{a, b}, t0.Add(2*time.Second))
	if c.valid("j", 2, 7, t0.Add(2*time.Second)) {
		t.Error("an expired lease came back after a late renewal")
	}
	if !c.nodeValid(t0.Add(2*time.Second+ttl-safety-time.Millisecond)) || c.nodeValid(t0.Add(2*time.Second+ttl-safety)) {
		t.Error("node validity is not the last renewal's send time + TTL − safety")
	}
	c.forget("j", 1, 4)
	if c.valid("j", 1, 4, t0) {
		t.Error("a forgotten lease is valid")
	}
}

// TestRenewWatch: the taker's side — a node's lease has expired once its
// renew index stayed the same for its TTL + safety on the taker's clock; a
// new renewal restarts the wait; a node never seen is watched from its
// first sight.
func TestRenewWatch(t *testing.T) {
	ttl, safety := 3*time.Second, 500*time.Millisecond
	w := renewWatch{}
	t0 := time.Now()
	w.see("n1", 10, 2*time.Second, 200*time.Millisecond, ttl, safety, t0) // n1's own timing wins
	w.watch("n2", ttl, safety, t0)
	if _, _, exp := w.expired("n1", t0.Add(2199*time.Millisecond)); exp {
		t.Error("n1 expired before its TTL + safety")
	}
	if idx, since, exp := w.expired("n1", t0.Add(2200*time.Millisecond)); !exp || idx != 10 || !since.Equal(t0) {
		t.Errorf("n1 at its TTL + safety: expired %v at index %d since %v", exp, idx, since)
	}
	w.see("n1", 11, 2*time.Second, 200*time.Millisecond, ttl, safety, t0.Add(2*time.Second))
	if _, _, exp := w.expired("n1", t0.Add(3*time.Second)); exp {
		t.Error("a new renewal did not restart the wait")
	}
	w.see("n1", 11, 2*time.Second, 200*time.Millisecond, ttl, safety, t0.Add(3*time.Second)) // same index: no restart
	if _, _, exp := w.expired("n1", t0.Add(4200*time.Millisecond)); !exp {
		t.Error("seeing the same index again restarted the wait")
	}
	if idx, _, exp := w.expired("n2", t0.Add(ttl+safety)); !exp || idx != 0 {
		t.Errorf("never-renewed n2: expired %v at index %d, want expired at 0", exp, idx)
	}
	if _, _, exp := w.expired("n3", t0.Add(time.Hour)); exp {
		t.Error("an unwatched node counts as expired")
	}
}
