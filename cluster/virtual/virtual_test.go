package virtual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/control"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// leaseTable is a lease table shared by the test nodes (in eddy it is the
// Raft-replicated one; here the test moves leases by hand).
type leaseTable struct {
	mu     sync.Mutex
	owners map[string]struct {
		node  string
		epoch uint64
	}
}

func (l *leaseTable) set(job string, p int, node string, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owners == nil {
		l.owners = map[string]struct {
			node  string
			epoch uint64
		}{}
	}
	l.owners[Identity(job, p)] = struct {
		node  string
		epoch uint64
	}{node, epoch}
}

func (l *leaseTable) Owner(job string, p int) (string, uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.owners[Identity(job, p)]
	return o.node, o.epoch, ok
}

// runtime is a node's local partition runtime: it reports an offset unique
// to the node and counts the reads.
type runtime struct {
	base  int64
	reads atomic.Int64
}

func (r *runtime) Progress(job string, p int) (Progress, bool) {
	r.reads.Add(1)
	return Progress{Offset: r.base + int64(p), Lag: 5, Watermark: time.Unix(1700000000, 0).UTC()}, true
}

func freePort(t *testing.T) int { return freeport.Port(t) }

type testNode struct {
	id  string
	m   *cluster.Membership
	rt  *runtime
	n   *Node
	act string
}

func startNodes(t *testing.T, count int, leases LeaseTable) []*testNode {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var nodes []*testNode
	var seed string
	for i := range count {
		id := fmt.Sprintf("n%d", i+1)
		cfg := cluster.DefaultConfig()
		act := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg.Meta = control.Meta{ID: id, GossipAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), ActorAddr: act}
		cfg.Logger = logger
		m, err := cluster.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Shutdown() })
		if seed == "" {
			seed = cfg.Meta.GossipAddr
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := m.Join(ctx, []string{seed})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, &testNode{id: id, m: m, rt: &runtime{base: int64(1000 * (i + 1))}, act: act})
	}
	var wg sync.WaitGroup
	errs := make([]error, count)
	for i, tn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn.n, errs[i] = Start(Config{NodeID: tn.id, ActorAddr: tn.act, Membership: tn.m,
				Leases: leases, Local: tn.rt, RequestTimeout: time.Second, Logger: logger})
		}()
	}
	wg.Wait()
	for i, tn := range nodes {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(tn.n.Stop)
	}
	// Wait until every node knows every node's actor address.
	deadline := time.Now().Add(15 * time.Second)
	for _, tn := range nodes {
		for len(Topology(tn.m.Alive(), []string{Kind})) != count {
			if time.Now().After(deadline) {
				t.Fatalf("%s knows %d actor endpoints, want %d", tn.id, len(Topology(tn.m.Alive(), []string{Kind})), count)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

func askAll(t *testing.T, nodes []*testNode, job string, p int, wantNode string, wantEpoch uint64, wantOffset int64) {
	t.Helper()
	for _, tn := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := tn.n.PartitionStatus(ctx, job, p)
		cancel()
		if err != nil {
			t.Fatalf("from %s: %v", tn.id, err)
		}
		if st.Node != wantNode || st.Owner != wantNode || st.Epoch != wantEpoch || st.NotOwner || !st.Running ||
			st.Offset != wantOffset || st.Lag != 5 || !st.Watermark.Equal(time.Unix(1700000000, 0)) ||
			st.Job != job || st.Partition != p {
			t.Fatalf("from %s: status %+v, want the answer of %s (epoch %d, offset %d)", tn.id, st, wantNode, wantEpoch, wantOffset)
		}
	}
}

func TestPartitionGrainFollowsTheLease(t *testing.T) {
	if raceEnabled {
		t.Skip("several protoactor-go clusters in one process race inside protoactor (see race_test.go)")
	}
	leases := &leaseTable{}
	nodes := startNodes(t, 3, leases)
	const job, p = "iot-work", 7

	// Unleased: an error, not an answer from whoever activates it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := nodes[0].n.PartitionStatus(ctx, job, p)
	cancel()
	if !errors.Is(err, ErrNoLease) {
		t.Fatalf("unleased partition: err %v, want ErrNoLease", err)
	}

	leases.set(job, p, "n2", 3)
	askAll(t, nodes, job, p, "n2", 3, 2000+p)

	// The lease moves: the old activation on n2 stays cached on every
	// node, answers "not owner", and the request ends at n3.
	leases.set(job, p, "n3", 4)
	askAll(t, nodes, job, p, "n3", 4, 3000+p)
	if r := nodes[0].rt.reads.Load(); r != 0 {
		t.Fatalf("n1 never held the lease but read its runtime %d times", r)
	}

	// A duplicate activation on a non-holder (what protoactor does during
	// membership changes): it answers "not owner" and never reads.
	for _, dup := range []*testNode{nodes[0], nodes[1]} {
		c := nodes[2].n.Cluster()
		pid := activate(c, dup.act, &pcluster.ClusterIdentity{Identity: Identity(job, p), Kind: Kind}, time.Second)
		if pid == nil {
			t.Fatalf("cannot activate %s on %s", Identity(job, p), dup.id)
		}
		if pid.Address != dup.act {
			t.Fatalf("activation on %s has address %s, want %s", dup.id, pid.Address, dup.act)
		}
		before := dup.rt.reads.Load()
		res, err := c.ActorSystem.Root.RequestFuture(pid, wrapperspb.String(Identity(job, p)), time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		st := decodeStatus(res.(*structpb.Struct))
		if !st.NotOwner || st.Node != dup.id || st.Owner != "n3" || st.Epoch != 4 || st.Running {
			t.Fatalf("duplicate on %s answered %+v, want not owner (holder n3, epoch 4)", dup.id, st)
		}
		if r := dup.rt.reads.Load(); r != before {
			t.Fatalf("duplicate on %s read its runtime", dup.id)
		}
	}
	// And the cluster path still reaches the holder.
	askAll(t, nodes, job, p, "n3", 4, 3000+p)

	// Another partition lives on another node at the same time.
	leases.set(job, 2, "n1", 1)
	askAll(t, nodes, job, 2, "n1", 1, 1000+2)
}

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		job  string
		p    int
		fail bool
	}{
		{"iot-work/7", "iot-work", 7, false},
		{"a/b/0", "a/b", 0, false},
		{"iot-work", "", 0, true},
		{"/7", "", 0, true},
		{"iot-work/-1", "", 0, true},
		{"iot-work/x", "", 0, true},
	} {
		job, p, err := ParseIdentity(tc.in)
		if tc.fail {
			if !errors.Is(err, ErrBadIdentity) {
				t.Errorf("%q: err %v, want ErrBadIdentity", tc.in, err)
			}
			continue
		}
		if err != nil || job != tc.job || p != tc.p {
			t.Errorf("%q: %q %d %v", tc.in, job, p, err)
		}
		if tc.in != Identity(job, p) {
			t.Errorf("Identity(%q, %d) = %q", job, p, Identity(job, p))
		}
	}
}

func TestTopology(t *testing.T) {
	ms := []control.Member{
		{Meta: control.Meta{ID: "a", ActorAddr: "10.0.0.1:7001"}, Status: control.StatusAlive},
		{Meta: control.Meta{ID: "b"}, Status: control.StatusAlive},                                             // no actor endpoint
		{Meta: control.Meta{ID: "c", ActorAddr: "10.0.0.3:7001"}, Status: control.StatusFailed},                // failed
		{Meta: control.Meta{ID: "d", ActorAddr: "10.0.0.4:7001", Stopping: true}, Status: control.StatusAlive}, // stopping
		{Meta: control.Meta{ID: "e", ActorAddr: "bad"}, Status: control.StatusAlive},
	}
	got := Topology(ms, []string{Kind})
	if len(got) != 1 || got[0].Id != "a" || got[0].Host != "10.0.0.1" || got[0].Port != 7001 || len(got[0].Kinds) != 1 {
		t.Fatalf("topology %v, want only a at 10.0.0.1:7001", got)
	}
}
