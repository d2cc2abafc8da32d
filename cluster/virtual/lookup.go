package virtual

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/eddy-iot/eddy/control"
)

// activatorName is the name of the actor every node runs to activate
// partition grains on request.
const activatorName = "eddy-activator"

// leaseLookup is a protoactor IdentityLookup that activates an identity on
// the node holding its lease (not on a hash of the member list). Activation
// is only a routing hint: the grain checks the lease on every request.
type leaseLookup struct {
	members control.Members // node addresses (protoactor's member list is read without its lock)
	leases  LeaseTable
	timeout time.Duration
	c       *pcluster.Cluster
}

var _ pcluster.IdentityLookup = (*leaseLookup)(nil)

func (l *leaseLookup) Setup(c *pcluster.Cluster, _ []string, isClient bool) {
	l.c = c
	if isClient {
		return
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &activator{c: c, grains: make(map[string]grainRef)}
	})
	if _, err := c.ActorSystem.Root.SpawnNamed(props, activatorName); err != nil {
		c.Logger().Error("cannot start the partition activator", "err", err)
	}
}

// Get returns the PID of the identity's activation on its lease holder,
// activating it there if needed; nil when the identity is malformed, not
// leased, its holder is not (yet) in the actor topology, or the activation
// request fails (the caller retries).
func (l *leaseLookup) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	job, p, err := ParseIdentity(ci.Identity)
	if err != nil {
		return nil
	}
	owner, _, ok := l.leases.Owner(job, p)
	if !ok {
		return nil
	}
	mem, ok := l.members.Member(owner)
	if !ok || mem.Status != control.StatusAlive || mem.ActorAddr == "" {
		return nil
	}
	return activate(l.c, mem.ActorAddr, ci, l.timeout)
}

// activate asks the activator at addr (a node's ActorAddr) for ci's
// activation.
func activate(c *pcluster.Cluster, addr string, ci *pcluster.ClusterIdentity, timeout time.Duration) *actor.PID {
	res, err := c.ActorSystem.Root.RequestFuture(actor.NewPID(addr, activatorName),
		&pcluster.ActivationRequest{ClusterIdentity: ci}, timeout).Result()
	if err != nil {
		return nil
	}
	if r, ok := res.(*pcluster.ActivationResponse); ok && !r.Failed {
		return r.Pid
	}
	return nil
}

func (l *leaseLookup) RemovePid(ci *pcluster.ClusterIdentity, _ *actor.PID) {
	l.c.PidCache.Remove(ci.Identity, ci.Kind)
}

func (l *leaseLookup) Shutdown() {}

// activator spawns grains of its node on request and remembers them until
// they stop. It does not look at leases: a grain may be activated on a node
// that does not hold the lease (a stale view, a duplicate), and it then
// answers "not owner".
type activator struct {
	c      *pcluster.Cluster
	grains map[string]grainRef // key: ClusterIdentity.AsKey()
}

func (a *activator) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pcluster.ActivationRequest:
		key := m.ClusterIdentity.AsKey()
		if g, ok := a.grains[key]; ok {
			ctx.Respond(&pcluster.ActivationResponse{Pid: g.pid})
			return
		}
		kind, ok := a.c.TryGetClusterKind(m.ClusterIdentity.Kind)
		if !ok {
			ctx.Respond(&pcluster.ActivationResponse{Failed: true})
			return
		}
		pid := ctx.SpawnPrefix(pcluster.WithClusterIdentity(kind.Props, m.ClusterIdentity), m.ClusterIdentity.Identity)
		ctx.Watch(pid)
		kind.Inc()
		a.grains[key] = grainRef{pid: pid, kind: kind}
		ctx.Respond(&pcluster.ActivationResponse{Pid: pid})
	case *actor.Terminated:
		for k, g := range a.grains {
			if g.pid.Equal(m.Who) {
				delete(a.grains, k)
				g.kind.Dec()
			}
		}
	}
}

type grainRef struct {
	pid  *actor.PID
	kind *pcluster.ActivatedKind
}
