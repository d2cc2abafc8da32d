package virtual

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/control"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// movingLeases is a lease table the test moves like eddy's assigner does
// (a joining node takes some partitions, a dead node's partitions go to the
// survivors). It remembers each partition's previous holder and when the
// lease moved, so a read racing a move is not counted as a violation.
type movingLeases struct {
	mu sync.Mutex
	m  map[string]movingLease
}

type movingLease struct {
	node, prev string
	epoch      uint64
	moved      time.Time
}

func (l *movingLeases) set(job string, p int, node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]movingLease{}
	}
	id := Identity(job, p)
	old := l.m[id]
	l.m[id] = movingLease{node: node, prev: old.node, epoch: old.epoch + 1, moved: time.Now()}
}

func (l *movingLeases) Owner(job string, p int) (string, uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.m[Identity(job, p)]
	return o.node, o.epoch, ok
}

func (l *movingLeases) get(id string) movingLease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

// guardedRuntime counts reads of a partition by a node that does not hold
// its lease (allowing 1 s for a read racing a lease move).
type guardedRuntime struct {
	id         string
	leases     *movingLeases
	reads      atomic.Int64
	violations atomic.Int64
}

func (r *guardedRuntime) Progress(job string, p int) (Progress, bool) {
	r.reads.Add(1)
	if l := r.leases.get(Identity(job, p)); l.node != r.id && (l.prev != r.id || time.Since(l.moved) > time.Second) {
		r.violations.Add(1)
	}
	return Progress{Offset: int64(p)}, true
}

type measureNode struct {
	id   string
	m    *cluster.Membership
	n    *Node
	rt   *guardedRuntime
	dead atomic.Bool
}

// activationCounts is what TestMeasureActivations measures for one lookup.
type activationCounts struct {
	nonHolder    int // (node, identity) episodes: an activation on a node not holding the lease
	duplicate    int // identity episodes: active on two or more nodes at once
	maxNodes     int // most nodes one identity was active on at once
	endNonHolder int // activations on a non-holder when the test ends
	holder       int // requests answered by the lease holder
	notOwner     int // requests answered "not owner"
	failed       int // requests that failed (timeout, dead member)
	violations   int // partition reads by a non-holder (must be 0)
}

// TestMeasureActivations measures how protoactor-go places partition
// grains during membership changes (a node joins, a node is stopped without
// leaving), once with protoactor's own identity lookup (disthash: rendezvous
// hash of the member list) and once with eddy's lease lookup. A poller
// samples every node's activations every 10 ms; callers on every node ask
// random partitions all the time. It asserts only what must hold: a
// non-holder never reads a partition, and with the lease lookup every node
// reaches the lease holder after the changes. The counts are printed (and
// summarised in doc.go).
func TestMeasureActivations(t *testing.T) {
	if raceEnabled {
		t.Skip("several protoactor-go clusters in one process race inside protoactor (see race_test.go)")
	}
	if testing.Short() {
		t.Skip("measurement takes about 40 s")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EDDY_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (EDDY_TEST_SEED=%d reproduces the lease moves and requests)", seed, seed)
	for _, mode := range []string{"protoactor-disthash", "eddy-lease"} {
		t.Run(mode, func(t *testing.T) {
			c := measure(t, seed, mode)
			t.Logf("%s: activations on a non-holder: %d episodes (%d left at the end); identities active on >=2 nodes at once: %d episodes (max %d nodes); requests: %d answered by the holder, %d \"not owner\", %d failed; non-holder reads: %d",
				mode, c.nonHolder, c.endNonHolder, c.duplicate, c.maxNodes, c.holder, c.notOwner, c.failed, c.violations)
			if c.violations != 0 {
				t.Fatalf("a node that did not hold a lease read its partition %d times", c.violations)
			}
		})
	}
}

func measure(t *testing.T, seed uint64, mode string) activationCounts {
	const job, parts = "iot-work", 16
	rng := rand.New(rand.NewPCG(seed, 1))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil)) // protoactor logs every refused dial of the stopped node
	leases := &movingLeases{}
	var (
		mu    sync.Mutex
		nodes []*measureNode
	)
	live := func() []*measureNode {
		mu.Lock()
		defer mu.Unlock()
		var out []*measureNode
		for _, n := range nodes {
			if !n.dead.Load() {
				out = append(out, n)
			}
		}
		return out
	}
	start := func(id, seedAddr string) *measureNode {
		cfg := cluster.DefaultConfig()
		act := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg.Meta = control.Meta{ID: id, GossipAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), ActorAddr: act}
		cfg.Logger = logger
		m, err := cluster.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Shutdown() })
		if seedAddr != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := m.Join(ctx, []string{seedAddr})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		tn := &measureNode{id: id, m: m, rt: &guardedRuntime{id: id, leases: leases}}
		vc := Config{NodeID: id, ActorAddr: act, Membership: m, Leases: leases, Local: tn.rt,
			RequestTimeout: 500 * time.Millisecond, Logger: logger}
		if mode == "protoactor-disthash" {
			vc.lookup = disthash.New()
		}
		if tn.n, err = Start(vc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if !tn.dead.Load() {
				tn.n.Stop()
			}
		})
		mu.Lock()
		nodes = append(nodes, tn)
		mu.Unlock()
		return tn
	}
	waitTopology := func(want int) {
		deadline := time.Now().Add(15 * time.Second)
		for _, tn := range live() {
			for len(Topology(tn.m.Alive(), []string{Kind})) != want {
				if time.Now().After(deadline) {
					t.Fatalf("%s knows %d actor endpoints, want %d", tn.id, len(Topology(tn.m.Alive(), []string{Kind})), want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	first := start("n1", "")
	for i := 2; i <= 3; i++ {
		start(fmt.Sprintf("n%d", i), first.m.LocalMeta().GossipAddr)
	}
	waitTopology(3)
	for p := range parts {
		leases.set(job, p, fmt.Sprintf("n%d", p%3+1))
	}

	var c activationCounts
	var cmu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Callers: every live node asks a random partition, one cluster call
	// each (no retry), every 5 ms.
	callerRng := rand.New(rand.NewPCG(seed, 2))
	picks := make(chan int, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(picks)
		for {
			select {
			case <-stop:
				return
			case picks <- callerRng.IntN(parts):
			}
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range picks {
				ns := live()
				tn := ns[p%len(ns)]
				id := Identity(job, p)
				resp, err := tn.n.Cluster().Request(id, Kind, wrapperspb.String(id),
					pcluster.WithTimeout(300*time.Millisecond), pcluster.WithRetryCount(1))
				cmu.Lock()
				if s, ok := resp.(*structpb.Struct); err == nil && ok {
					if decodeStatus(s).NotOwner {
						c.notOwner++
					} else {
						c.holder++
					}
				} else {
					c.failed++
				}
				cmu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// Poller: every node's activations every 10 ms.
	wg.Add(1)
	prevNonHolder := map[string]bool{} // node + " " + identity
	prevDup := map[string]bool{}
	sample := func() (nonHolderNow int) {
		where := map[string][]string{}
		for _, tn := range live() {
			for _, id := range tn.n.Activations() {
				where[id] = append(where[id], tn.id)
			}
		}
		nh, dup := map[string]bool{}, map[string]bool{}
		for id, ns := range where {
			owner := leases.get(id).node
			for _, n := range ns {
				if n != owner {
					nh[n+" "+id] = true
				}
			}
			if len(ns) >= 2 {
				dup[id] = true
			}
			cmu.Lock()
			c.maxNodes = max(c.maxNodes, len(ns))
			cmu.Unlock()
		}
		cmu.Lock()
		for k := range nh {
			if !prevNonHolder[k] {
				c.nonHolder++
			}
		}
		for k := range dup {
			if !prevDup[k] {
				c.duplicate++
			}
		}
		cmu.Unlock()
		prevNonHolder, prevDup = nh, dup
		return len(nh)
	}
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()

	time.Sleep(2 * time.Second) // steady state
	// A node joins; once every node sees it, it takes a quarter of the
	// partitions (new epochs), as the assigner would rebalance.
	start("n4", first.m.LocalMeta().GossipAddr)
	waitTopology(4)
	for _, p := range rng.Perm(parts)[:parts/4] {
		leases.set(job, p, "n4")
	}
	time.Sleep(3 * time.Second)
	// n2 stops without leaving (its gossip goes silent as in a SIGKILL);
	// after a lease TTL its partitions go to random survivors.
	victim := nodes[1]
	victim.dead.Store(true)
	victim.m.Shutdown()
	victim.n.Stop()
	time.Sleep(1500 * time.Millisecond)
	survivors := []string{"n1", "n3", "n4"}
	for p := range parts {
		if o, _, _ := leases.Owner(job, p); o == victim.id {
			leases.set(job, p, survivors[rng.IntN(len(survivors))])
		}
	}
	waitTopology(3)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	c.endNonHolder = sample()
	for _, tn := range nodes {
		c.violations += int(tn.rt.violations.Load())
	}

	if mode == "eddy-lease" {
		// The lease decides: every live node reaches every partition's holder.
		for _, tn := range live() {
			for p := range parts {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				st, err := tn.n.PartitionStatus(ctx, job, p)
				cancel()
				owner, epoch, _ := leases.Owner(job, p)
				if err != nil || st.Node != owner || st.Epoch != epoch || !st.Running {
					t.Fatalf("from %s, %s: %+v %v; want the answer of holder %s (epoch %d)", tn.id, Identity(job, p), st, err, owner, epoch)
				}
			}
		}
	}
	return c
}
