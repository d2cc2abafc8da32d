package control

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Node. Start from DefaultConfig, set the identity and
// addresses, then call Validate (StartNode does).
type Config struct {
	// ID is the node id: unique in the cluster and stable across restarts
	// (it is the Raft server id and the memberlist name). Required.
	ID string
	// DataDir holds the Raft log (raft/raft.db) and snapshots
	// (raft/snapshots). Required. A node restarted with the same DataDir
	// recovers its state from it.
	DataDir string
	// HTTPAddr (host:port) serves the HTTP API; it is also advertised to
	// other nodes, so it must be reachable by them (not 0.0.0.0). Required.
	HTTPAddr string
	// RaftAddr (host:port) is the Raft TCP transport's bind and advertised
	// address. Required.
	RaftAddr string
	// GossipAddr (host:port) is the membership's (memberlist's) bind and
	// advertised address, TCP and UDP; it reaches Members in Meta.
	// Required.
	GossipAddr string
	// Join lists gossip addresses of existing members to contact at start;
	// retried in the background until one answers. Empty for the first
	// node(s) of a cluster.
	Join []string
	// BootstrapExpect is the number of voters of a new cluster (1, 3, 5, 7
	// or 9). When this node, without Raft state, sees that many members
	// without Raft state that were started with the same BootstrapExpect,
	// the one with the lowest ID among the first BootstrapExpect IDs
	// (sorted) bootstraps Raft with them as voters (the Consul way). 0: the
	// node never bootstraps; the leader adds it as a non-voter.
	BootstrapExpect int

	// APIToken is required as "Authorization: Bearer <token>" on every
	// write (PUT, DELETE, POST) of the HTTP API. Nodes forward writes to
	// the leader with it, so all nodes must share it. Empty (the default):
	// HTTP writes are refused with 401 unless the client presents a
	// certificate signed by TLS.CAFile; Node.Apply (Go) is unaffected.
	APIToken string
	// MaxValueBytes is the largest value (or job spec) accepted; larger
	// ones get 413. Default 512 KiB.
	MaxValueBytes int
	// ApplyTimeout bounds how long a write waits to be committed and
	// applied, including forwarding and waiting for a leader; default 10 s.
	ApplyTimeout time.Duration
	// LeaderWait is how long a request waits for a leader to appear before
	// answering 503 ErrNoLeader; default 5 s.
	LeaderWait time.Duration

	Raft      RaftConfig
	Autopilot AutopilotConfig
	// Members starts the node's membership (see MembersFunc); required.
	// eddy node and cluster.StartNode set it to memberlist gossip on
	// GossipAddr (cluster.MembersFunc).
	Members MembersFunc
	// TLS, when set, serves the HTTP API as HTTPS and runs Raft over
	// mutual TLS (see TLSConfig); default plaintext.
	TLS TLSConfig

	// ValidateJob, when set, checks a job spec before PUT /v1/jobs/{name}
	// stores it; prev is the stored job of that name (nil if none), so an
	// update can be checked against it. eddy node wires jobs.ValidateSpec
	// (spec.Load, and the keyed-state compatibility of an update).
	// An error wrapping ErrConflict is answered 409, any other 400, with
	// its message; nothing reaches Raft. nil: specs are stored unchecked.
	ValidateJob func(put JobPut, prev *Job) error
	// CheckSavepoint, when set, checks that job can take a savepoint before
	// POST /v1/jobs/{name}/savepoints starts one; its error is answered
	// 409. eddy node wires jobs.CheckSavepoint (the spec must enable
	// checkpoints). nil: not checked (a savepoint of a job without
	// checkpoints then times out).
	CheckSavepoint func(j Job) error

	// Logger for the node; Raft's own logs are at Raft.LogLevel.
	// Default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's metrics and Gatherer serves them at
	// /metrics. Default: a private registry for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// WrapRaftStream, when set, wraps the Raft TCP stream layer (after
	// TLS), e.g. to cut the node off from Raft in a test (fault injection:
	// the tests of cluster/assign). nil (the default) in production.
	WrapRaftStream func(raft.StreamLayer) raft.StreamLayer
}

// RaftConfig tunes hashicorp/raft. The defaults suit a LAN or loopback.
type RaftConfig struct {
	// HeartbeatTimeout: a follower without contact from the leader for
	// this long starts an election; default 500 ms.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate without a result for this long starts a
	// new election; default 500 ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader without contact with a quorum for this
	// long steps down; default 250 ms. Must be <= HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: the leader sends an (empty) append at least every
	// CommitTimeout..2·CommitTimeout, which is how followers learn new
	// commit indexes (so it bounds how stale a follower's local reads are
	// when writes stop); default 20 ms.
	CommitTimeout time.Duration
	// SnapshotThreshold: take a snapshot when this many log entries were
	// applied since the last one (checked every SnapshotInterval); default
	// 8192.
	SnapshotThreshold uint64
	// SnapshotInterval: how often to check SnapshotThreshold (randomised
	// between 1x and 2x); default 30 s.
	SnapshotInterval time.Duration
	// TrailingLogs: log entries kept after a snapshot, so that slightly
	// lagging followers catch up from the log rather than a snapshot;
	// default 10240.
	TrailingLogs uint64
	// SnapshotRetain: snapshots kept on disk; default 2.
	SnapshotRetain int
	// LogLevel of Raft's own (hclog) logger: trace, debug, info, warn,
	// error or off; default "warn".
	LogLevel string
}

// AutopilotConfig tunes the leader's membership reconciliation (modelled on
// Consul's autopilot): adding new members as non-voters, removing dead
// servers and promoting healthy non-voters to keep Settings.VoterTarget
// voters.
type AutopilotConfig struct {
	// DeadServerTimeout: a voter or non-voter that is failed or left in
	// the leader's membership view for this long, and that the leader's
	// Raft heartbeats have not reached for as long, is removed from the
	// Raft configuration (after a healthy non-voter was promoted in its
	// place when one exists); a voter only while the voters left that Raft
	// reaches are a majority of the voter target (see autopilot.go).
	// Default 30 s: a killed node that is restarted within that time keeps
	// its place.
	DeadServerTimeout time.Duration
	// StabilizationTime: a non-voter must be alive this long before it can
	// be promoted; default 5 s.
	StabilizationTime time.Duration
	// MaxTrailingLogs: a non-voter whose applied index lags the leader's
	// last index by more than this is not healthy; default 1000.
	MaxTrailingLogs uint64
	// ReconcileInterval: how often the leader reconciles (also on every
	// membership event); default 500 ms.
	ReconcileInterval time.Duration
}

// DefaultConfig returns a Config with every default set; ID, DataDir and the
// addresses must still be filled in.
func DefaultConfig() Config {
	return Config{
		MaxValueBytes: 512 << 10,
		ApplyTimeout:  10 * time.Second,
		LeaderWait:    5 * time.Second,
		Raft: RaftConfig{
			HeartbeatTimeout:   500 * time.Millisecond,
			ElectionTimeout:    500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond,
			CommitTimeout:      20 * time.Millisecond,
			SnapshotThreshold:  8192,
			SnapshotInterval:   30 * time.Second,
			TrailingLogs:       10240,
			SnapshotRetain:     2,
			LogLevel:           "warn",
		},
		Autopilot: AutopilotConfig{
			DeadServerTimeout: 30 * time.Second,
			StabilizationTime: 5 * time.Second,
			MaxTrailingLogs:   1000,
			ReconcileInterval: 500 * time.Millisecond,
		},
	}
}

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("control: invalid config")

// Validate checks the configuration; errors wrap ErrInvalidConfig and name
// the field (or flag) to fix.
func (c *Config) Validate() error {
	if err := c.TLS.validate(); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := ValidateName("node", c.ID); err != nil {
		return bad("ID (--id): %v", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	}
	if c.DataDir == "" {
		return bad("DataDir (--data-dir) must be set")
	}
	for _, a := range []struct{ name, flag, addr string }{
		{"HTTPAddr", "--http-addr", c.HTTPAddr}, {"RaftAddr", "--raft-addr", c.RaftAddr}, {"GossipAddr", "--gossip-addr", c.GossipAddr},
	} {
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil || port == "" || port == "0" {
			return bad("%s (%s) %q must be host:port with a fixed port, e.g. 127.0.0.1:8080", a.name, a.flag, a.addr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return bad("%s (%s) %q must be an address other nodes can reach, not %q", a.name, a.flag, a.addr, host)
		}
	}
	if c.HTTPAddr == c.RaftAddr || c.HTTPAddr == c.GossipAddr || c.RaftAddr == c.GossipAddr {
		return bad("HTTPAddr, RaftAddr and GossipAddr must differ (got %s, %s, %s)", c.HTTPAddr, c.RaftAddr, c.GossipAddr)
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return bad("Join (--join) address %q must be host:port of a gossip address", j)
		}
	}
	switch c.BootstrapExpect {
	case 0, 1, 3, 5, 7, 9:
	default:
		return bad("BootstrapExpect (--bootstrap-expect) must be 0 (join an existing cluster) or an odd voter count 1, 3, 5, 7, 9; got %d", c.BootstrapExpect)
	}
	if c.MaxValueBytes < 1 || c.MaxValueBytes > 64<<20 {
		return bad("MaxValueBytes (--max-value-bytes) must be in 1..64 MiB, got %d", c.MaxValueBytes)
	}
	if c.ApplyTimeout <= 0 || c.LeaderWait <= 0 {
		return bad("ApplyTimeout (%v) and LeaderWait (%v) must be > 0", c.ApplyTimeout, c.LeaderWait)
	}
	r := c.Raft
	if r.HeartbeatTimeout < 5*time.Millisecond || r.ElectionTimeout < 5*time.Millisecond {
		return bad("Raft HeartbeatTimeout (%v) and ElectionTimeout (%v) must be >= 5ms", r.HeartbeatTimeout, r.ElectionTimeout)
	}
	if r.LeaderLeaseTimeout < 5*time.Millisecond || r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		return bad("Raft LeaderLeaseTimeout (%v) must be >= 5ms and <= HeartbeatTimeout (%v)", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	if r.CommitTimeout < time.Millisecond {
		return bad("Raft CommitTimeout (%v) must be >= 1ms", r.CommitTimeout)
	}
	if r.SnapshotThreshold < 1 || r.SnapshotInterval < 5*time.Millisecond || r.SnapshotRetain < 1 {
		return bad("Raft SnapshotThreshold (%d), SnapshotInterval (%v) and SnapshotRetain (%d) must be >= 1, >= 5ms, >= 1", r.SnapshotThreshold, r.SnapshotInterval, r.SnapshotRetain)
	}
	switch strings.ToLower(r.LogLevel) {
	case "trace", "debug", "info", "warn", "error", "off":
	default:
		return bad("Raft LogLevel %q must be trace, debug, info, warn, error or off", r.LogLevel)
	}
	a := c.Autopilot
	if a.DeadServerTimeout <= 0 || a.StabilizationTime < 0 || a.ReconcileInterval <= 0 {
		return bad("Autopilot DeadServerTimeout (%v) and ReconcileInterval (%v) must be > 0, StabilizationTime (%v) >= 0", a.DeadServerTimeout, a.ReconcileInterval, a.StabilizationTime)
	}
	if c.Members == nil {
		return bad("Members (the membership, e.g. cluster.MembersFunc) must be set")
	}
	return nil
}
