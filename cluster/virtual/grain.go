package virtual

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
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
}

func (g *grain) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(*wrapperspb.StringValue)
	if !ok {
		return // lifecycle messages and cluster plumbing
	}
	job, p, err := ParseIdentity(req.GetValue())
	if err != nil {
		ctx.Respond(encodeStatus(Status{Node: g.node, NotOwner: true}))
		return
	}
	ctx.Respond(encodeStatus(g.status(job, p)))
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
