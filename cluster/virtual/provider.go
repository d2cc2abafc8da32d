package virtual

import (
	"fmt"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/eddy-iot/eddy/control"
)

// Provider is a protoactor-go cluster.ClusterProvider backed by eddy's
// memberlist Membership. The topology it publishes is the alive members
// (not Leaving or Stopping) whose Meta.ActorAddr is set, each with member
// ID = node ID and every kind of this node (all eddy nodes host the same
// kinds). It looks again on every membership event and every second, and
// publishes when the topology changed.
type Provider struct {
	m control.Members

	mu      sync.Mutex
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped bool

	last      string // publisher goroutine only: signature of the last topology published
	published bool
}

var _ pcluster.ClusterProvider = (*Provider)(nil)

// NewProvider returns a Provider over m.
func NewProvider(m control.Members) *Provider { return &Provider{m: m, stop: make(chan struct{})} }

// StartMember starts feeding c's member list. It returns at once.
func (p *Provider) StartMember(c *pcluster.Cluster) error {
	kinds := c.GetClusterKinds()
	p.start(c, kinds)
	return nil
}

// StartClient is like StartMember (a client hosts no kinds).
func (p *Provider) StartClient(c *pcluster.Cluster) error {
	p.start(c, c.GetClusterKinds())
	return nil
}

func (p *Provider) start(c *pcluster.Cluster, kinds []string) {
	events, cancel := p.m.Subscribe(64)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		p.publish(c, kinds)
		for {
			select {
			case <-p.stop:
				return
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-tick.C:
			}
			p.publish(c, kinds)
		}
	}()
}

// publish hands the topology to protoactor when it changed since the last
// call (called from the publisher goroutine only). protoactor's
// UpdateClusterTopology reads its block list without a lock, racing with its
// gossip actor; publishing only changes keeps that window to membership
// changes.
func (p *Provider) publish(c *pcluster.Cluster, kinds []string) {
	top := Topology(p.m.Alive(), kinds)
	var sig strings.Builder
	for _, m := range top {
		fmt.Fprintf(&sig, "%s@%s:%d;", m.Id, m.Host, m.Port)
	}
	if p.published && sig.String() == p.last {
		return
	}
	p.published, p.last = true, sig.String()
	c.MemberList.UpdateClusterTopology(top)
}

// Topology converts eddy members to protoactor members: alive, neither
// leaving nor stopping, with a valid ActorAddr.
func Topology(members []control.Member, kinds []string) pcluster.Members {
	out := make(pcluster.Members, 0, len(members))
	for _, m := range members {
		if m.Status != control.StatusAlive || m.Leaving || m.Stopping || m.ActorAddr == "" {
			continue
		}
		host, port, err := splitAddr(m.ActorAddr)
		if err != nil {
			continue
		}
		out = append(out, &pcluster.Member{Id: m.ID, Host: host, Port: int32(port), Kinds: append([]string(nil), kinds...)})
	}
	return out
}

// Shutdown stops publishing and waits for the publisher. Idempotent.
func (p *Provider) Shutdown(bool) error {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
