package actors

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
)

// newActorSystem returns a protoactor-go actor system that logs through log
// at warning level and above (protoactor's own logger is colourful and loud).
func newActorSystem(log *slog.Logger) *actor.ActorSystem {
	quiet := slog.New(levelFilter{h: log.Handler(), min: slog.LevelWarn})
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return quiet
	}))
}

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

// reportingRestart is the supervisor strategy of partition actors: report the
// failure, then restart the child, always. Giving up is the partition task's
// decision (a record that keeps panicking becomes a dead letter), not the
// supervisor's, so the restart count is not bounded here.
type reportingRestart struct {
	log      *slog.Logger
	restarts prometheus.Counter
}

func (s *reportingRestart) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID,
	_ *actor.RestartStatistics, reason any, _ any) {
	s.restarts.Inc()
	s.log.Warn("restarting partition actor", "actor", child.Id, "reason", reason)
	sup.RestartChildren(child)
}
