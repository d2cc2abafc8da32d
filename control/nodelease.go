package control

import iradix "github.com/hashicorp/go-immutable-radix"

// nodeTxn returns the batch's transaction on the node leases.
func (t *txn) nodeTxn() *iradix.Txn {
	if t.nodes == nil {
		t.nodes = t.st.nodeLeases.Txn()
	}
	return t.nodes
}

// nodeLease returns node's lease record (zero if it never renewed).
func (t *txn) nodeLease(node string) NodeLease {
	if v, ok := t.nodeTxn().Get([]byte(node)); ok {
		return *v.(*NodeLease)
	}
	return NodeLease{Node: node}
}

// renew records a renewal of node's lease at the current index. Zero timing
// (an older proposer) keeps the timing recorded before.
func (t *txn) renew(node string, ttlMs, safetyMs int64) {
	l := t.nodeLease(node)
	l.RenewIndex = t.index
	if ttlMs > 0 {
		l.TTLMs, l.SafetyMs = ttlMs, safetyMs
	}
	if !t.appendedAt.IsZero() {
		l.RenewedMs = t.appendedAt.UnixMilli()
	}
	t.nodeTxn().Insert([]byte(node), &l)
}

// leaseRenew applies LeaseRenew: the renewal, and every lease the owner
// holds.
func (t *txn) leaseRenew(c LeaseRenew) Result {
	t.renew(c.Owner, c.TTLMs, c.SafetyMs)
	res := Result{Leases: []Lease{}}
	t.leaseTxn().Root().Walk(func(_ []byte, v interface{}) bool {
		if l := v.(*Lease); l.Owner == c.Owner && !l.Released {
			res.Leases = append(res.Leases, *l)
		}
		return false
	})
	return res
}

// NodeLease returns the node lease of node (ok false if it never renewed).
func (v View) NodeLease(node string) (NodeLease, bool) {
	l, ok := v.st.nodeLeases.Get([]byte(node))
	if !ok {
		return NodeLease{}, false
	}
	return *l.(*NodeLease), true
}

// NodeLeases returns every node lease, sorted by node id.
func (v View) NodeLeases() []NodeLease {
	out := []NodeLease{}
	v.st.nodeLeases.Root().Walk(func(_ []byte, l interface{}) bool {
		out = append(out, *l.(*NodeLease))
		return false
	})
	return out
}
