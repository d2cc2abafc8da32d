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

// Option adds to what StartNode wires into a node.
type Option func(*nodeOptions)

type nodeOptions struct {
	bridge BridgeConfig
}

// WithBridge runs the Kafka broadcast bridge configured by b on the node
// while it is the Raft leader (see BridgeConfig; b.Brokers empty: no
// bridge).
func WithBridge(b BridgeConfig) Option {
	return func(o *nodeOptions) { o.bridge = b }
}

// StartNode starts a control-plane node (control.StartNode) whose
// membership is memberlist gossip tuned by gossip (start from
// DefaultConfig) on cfg.GossipAddr; cfg.Members is replaced. With
// WithBridge it also runs the broadcast bridge on the leader. cfg, the
// gossip settings (with the node's identity and addresses as Meta) and the
// bridge's are checked before anything starts: an error wraps
// control.ErrInvalidConfig and names the field.
func StartNode(cfg control.Config, gossip Config, opts ...Option) (*control.Node, error) {
	var o nodeOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg.Members = MembersFunc(gossip)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := gossip
	g.Meta = control.Meta{ID: cfg.ID, GossipAddr: cfg.GossipAddr, HTTPAddr: cfg.HTTPAddr, RaftAddr: cfg.RaftAddr}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("%w: gossip: %v", control.ErrInvalidConfig, err)
	}
	bridge := o.bridge.withDefaults()
	if len(bridge.Brokers) > 0 {
		if err := bridge.validate(); err != nil {
			return nil, err
		}
	}
	n, err := control.StartNode(cfg)
	if err != nil {
		return nil, err
	}
	if len(bridge.Brokers) > 0 {
		if err := startBridge(n, bridge); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}
