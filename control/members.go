package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Members is the port through which a Node sees the cluster's membership:
// which nodes exist, how to reach them and which are alive, with events
// when that changes. Package cluster implements it over hashicorp/memberlist
// gossip (cluster.Membership); a Node gets one from Config.Members. The
// methods must be safe for concurrent use; after Shutdown they return an
// error wrapping ErrMembersShutdown.
type Members interface {
	// Join contacts the given addresses of existing members (this node's
	// own address is ignored), retrying until one answers; it returns nil
	// at once for an empty list, else ctx's error when it ends first.
	Join(ctx context.Context, addrs []string) error
	// LocalMeta returns what this node advertises.
	LocalMeta() Meta
	// UpdateMeta changes what this node advertises by applying fn to a
	// copy (the ID cannot change) and waits up to timeout for the change
	// to be announced.
	UpdateMeta(fn func(*Meta), timeout time.Duration) error
	// Members returns every known member (this node included), alive,
	// failed or left, sorted by ID; failed and left members stay for a
	// while so that callers can apply their own timeouts.
	Members() []Member
	// Alive returns the alive members, sorted by ID.
	Alive() []Member
	// Member returns the member of that ID, if known.
	Member(id string) (Member, bool)
	// Subscribe returns a channel of membership events with the given
	// buffer, and a cancel func that closes it. Events are hints: when the
	// buffer is full further events are dropped, so a subscriber re-reads
	// Members after each event.
	Subscribe(buffer int) (<-chan Event, func())
	// Leave announces that this node leaves (peers see it as left, not
	// failed) and waits up to timeout for the announcement.
	Leave(timeout time.Duration) error
	// Shutdown stops the membership without announcing anything (peers
	// declare this node failed). Idempotent.
	Shutdown() error
}

// MembersFunc starts a node's membership. StartNode calls it once, after
// it opened the Raft state and before the HTTP API serves, with the Meta
// the node advertises (ID, HTTP, Raft and gossip addresses,
// BootstrapExpect, RaftState), the node's logger and its metrics
// registerer. The node calls Join in the background, and Leave then
// Shutdown in Close. eddy node wires cluster.StartNode, which uses
// memberlist gossip on Meta.GossipAddr.
type MembersFunc func(meta Meta, logger *slog.Logger, reg prometheus.Registerer) (Members, error)

// ErrMembersShutdown is wrapped by the errors a Members returns after its
// Shutdown (ErrMembersShutdown wraps it).
var ErrMembersShutdown = errors.New("membership shut down")

// Meta is the record a node advertises to the cluster (cluster.Membership
// gossips it JSON-encoded as memberlist node metadata). Addresses are
// host:port.
type Meta struct {
	ID         string `json:"id"`
	HTTPAddr   string `json:"http,omitempty"`
	RaftAddr   string `json:"raft,omitempty"`
	GossipAddr string `json:"gossip,omitempty"`
	// ActorAddr is the host:port of the node's protoactor-go remote
	// endpoint (virtual actors, package cluster/virtual); empty when the
	// node does not serve virtual actors.
	ActorAddr string `json:"actor,omitempty"`
	// Voter reports whether the node is currently a Raft voter (as last seen
	// by the node itself). It changes when autopilot promotes or removes it.
	Voter bool `json:"voter,omitempty"`
	// BootstrapExpect is the node's --bootstrap-expect (0 = it never takes
	// part in bootstrapping).
	BootstrapExpect int `json:"expect,omitempty"`
	// RaftState reports that the node has Raft state (a log, a snapshot or
	// a configuration); such a node never bootstraps a new cluster.
	RaftState bool `json:"state,omitempty"`
	// Leaving is set by a node that leaves the cluster for good, so that the
	// Raft leader does not add it back.
	Leaving bool `json:"leaving,omitempty"`
	// Stopping is set by Members.Leave just before the leave is announced,
	// so that peers report the node as left rather than failed (memberlist
	// itself does not tell them apart in its events).
	Stopping bool `json:"stopping,omitempty"`
	// Assignable is set while the node runs device partitions and may be
	// given some: its partition assigner runs, it has joined the cluster,
	// it is in contact with the Raft majority and it is not draining.
	// Placement (cluster/assign) only considers alive members with
	// Assignable set (and neither Leaving nor Stopping).
	Assignable bool `json:"assignable,omitempty"`
}

// Placeable reports whether placement may give partitions to the member:
// it is alive, Assignable, and neither leaving nor stopping.
func (m Member) Placeable() bool {
	return m.Status == StatusAlive && m.Assignable && !m.Leaving && !m.Stopping
}

// Status is a member's state as seen by this node.
type Status int

const (
	// StatusAlive: the member answers probes (or is only suspected).
	StatusAlive Status = iota
	// StatusFailed: the member stopped answering and was declared dead.
	StatusFailed
	// StatusLeft: the member announced that it leaves (graceful shutdown).
	StatusLeft
)

// String returns "alive", "failed" or "left".
func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusFailed:
		return "failed"
	case StatusLeft:
		return "left"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Member is one node as seen by this node.
type Member struct {
	Meta
	Status Status
	// Since is when Status last changed (local clock).
	Since time.Time
	// Addr is the gossip address the membership sees for the node
	// (host:port).
	Addr string
}

// EventType is the kind of a membership Event.
type EventType int

const (
	// EventJoin: a member became alive (new, or back after failing/leaving).
	EventJoin EventType = iota
	// EventUpdate: an alive member changed its Meta.
	EventUpdate
	// EventFail: a member was declared failed.
	EventFail
	// EventLeave: a member left gracefully.
	EventLeave
)

// String returns "join", "update", "fail" or "leave".
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventFail:
		return "fail"
	case EventLeave:
		return "leave"
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// Event is a change of one member.
type Event struct {
	Type   EventType
	Member Member
}
