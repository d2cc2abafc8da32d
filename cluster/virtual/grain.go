package virtual

import (
	"context"
	"log/slog"
	"sort"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grain is the partition virtual actor. It is stateless: every activation
// (there may be more than one, on several nodes) shares it, and ownership is
// decided per request by the lease table, never by activation.
type grain struct {
	node   string
	leases LeaseTable
	local  Local
	log    *slog.Logger
	active activations
}

func (g *grain) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		g.active.add(identityOf(ctx), 1)
		return
	case *actor.Stopped:
		g.active.add(identityOf(ctx), -1)
		return
	}
	req, ok := ctx.Message().(*wrapperspb.StringValue)
	if !ok {
		return // cluster plumbing
	}
	job, p, err := ParseIdentity(req.GetValue())
	if err != nil {
		ctx.Respond(encodeStatus(Status{Node: g.node, NotOwner: true}))
		return
	}
	st := g.status(job, p)
	ctx.Respond(encodeStatus(st))
	if st.NotOwner {
		// A stale activation (the lease moved, or protoactor placed it
		// here): stop it, so that it does not linger; the caller retries
		// and the identity is activated again where the lookup says.
		ctx.Poison(ctx.Self())
	}
}

// status answers for job/p: "not owner" unless this node holds the lease;
// only the holder reads the local runtime.
func (g *grain) status(job string, p int) Status {
	owner, epoch, leased := g.leases.Owner(job, p)
	st := Status{Job: job, Partition: p, Node: g.node, Owner: owner, Epoch: epoch}
	if !leased || owner != g.node {
		st.NotOwner = true
		g.log.Debug("partition grain is not the lease holder", "partition", Identity(job, p), "owner", owner)
		return st
	}
	st.Progress, st.Running = g.local.Progress(job, p)
	return st
}

func identityOf(ctx actor.Context) string {
	if ci, ok := ctx.Get(pcluster.NewClusterIdentity("", "").ExtensionID()).(*pcluster.ClusterIdentity); ok {
		return ci.Identity
	}
	return ""
}

// activations counts the live grain activations of one node per identity.
type activations struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *activations) add(id string, d int) {
	if id == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	if a.n[id] += d; a.n[id] <= 0 {
		delete(a.n, id)
	}
}

func (a *activations) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.n))
	for id := range a.n {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// levelFilter drops records below min (protoactor logs a lot at info).
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}
