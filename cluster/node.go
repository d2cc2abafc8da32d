package cluster

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
)

var _ control.Members = (*Membership)(nil)

// MembersFunc returns the control.MembersFunc that starts a Membership
// tuned by gossip (start from DefaultConfig), advertising the node's Meta
// and logging and registering its metrics where the node does: gossip's
// Meta, Logger and Registerer are replaced by the node's.
func MembersFunc(gossip Config) control.MembersFunc {
	return func(meta control.Meta, logger *slog.Logger, reg prometheus.Registerer) (control.Members, error) {
		g := gossip
		g.Meta, g.Logger, g.Registerer = meta, logger, reg
		return New(g)
	}
}

// StartNode starts a control-plane node (control.StartNode) whose
// membership is memberlist gossip tuned by gossip (start from
// DefaultConfig) on cfg.GossipAddr; cfg.Members is replaced. cfg and then
// the gossip settings (with the node's identity and addresses as Meta) are
// checked before anything starts: an error wraps control.ErrInvalidConfig
// and names the field.
func StartNode(cfg control.Config, gossip Config) (*control.Node, error) {
	cfg.Members = MembersFunc(gossip)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := gossip
	g.Meta = control.Meta{ID: cfg.ID, GossipAddr: cfg.GossipAddr, HTTPAddr: cfg.HTTPAddr, RaftAddr: cfg.RaftAddr}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("%w: gossip: %v", control.ErrInvalidConfig, err)
	}
	return control.StartNode(cfg)
}
