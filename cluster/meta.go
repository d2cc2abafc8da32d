package cluster

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxMetaBytes is the largest encoded Meta memberlist accepts (its
// MetaMaxSize).
const MaxMetaBytes = 512

// Meta is the record a node advertises to the cluster through memberlist's
// node metadata, JSON-encoded. Addresses are host:port.
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
	// Stopping is set by Membership.Leave just before the leave is
	// announced, so that peers report the node as left rather than failed
	// (memberlist itself does not tell them apart in its events).
	Stopping bool `json:"stopping,omitempty"`
	// Assignable is set while the node runs device partitions and may be
	// given some: its partition assigner runs, it has joined the cluster,
	// it is in contact with the Raft majority and it is not draining.
	// Placement (Assign) only considers alive members with Assignable set
	// (and neither Leaving nor Stopping).
	Assignable bool `json:"assignable,omitempty"`
}

// Placeable reports whether placement may give partitions to the member:
// it is alive, Assignable, and neither leaving nor stopping.
func (m Member) Placeable() bool {
	return m.Status == StatusAlive && m.Assignable && !m.Leaving && !m.Stopping
}

func (m Meta) encode() ([]byte, error) { return json.Marshal(m) }

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("cluster: empty node metadata")
	}
	err := json.Unmarshal(b, &m)
	return m, err
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
	// Addr is the gossip address memberlist sees for the node (host:port).
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
