package virtual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/eddy-iot/eddy/control"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Kind is the protoactor cluster kind of partition grains.
const Kind = "partition"

// ClusterName is the protoactor cluster name eddy uses.
const ClusterName = "eddy"

var (
	// ErrNotOwner is returned (wrapped) by PartitionStatus when no node
	// answered as lease holder before ctx ended.
	ErrNotOwner = errors.New("virtual: not owner")
	// ErrNoLease: the partition has no lease holder.
	ErrNoLease = errors.New("virtual: partition not leased")
	// ErrBadIdentity: an identity is not "<job>/<partition>".
	ErrBadIdentity = errors.New("virtual: identity must be <job>/<partition>")
)

// LeaseTable tells who holds a partition's lease. Implementations must be
// safe for concurrent use; control's replicated lease table is the real one.
type LeaseTable interface {
	// Owner returns the node ID holding job/partition's lease and the
	// lease epoch; ok is false when the partition is not leased.
	Owner(job string, partition int) (node string, epoch uint64, ok bool)
}

// Progress is what the local runtime reports about a partition it runs.
type Progress struct {
	Offset    int64     // next offset to read
	Lag       int64     // records behind the log end
	Watermark time.Time // event-time watermark (zero: none yet)
}

// Local reports the progress of partitions this node runs. Safe for
// concurrent use.
type Local interface {
	// Progress returns ok false when the partition does not run here.
	Progress(job string, partition int) (Progress, bool)
}

// Status is a partition grain's answer.
type Status struct {
	Job       string
	Partition int
	Node      string // node whose grain answered
	Owner     string // lease holder as the answering node sees it ("" = none)
	Epoch     uint64 // lease epoch
	NotOwner  bool   // the answering node does not hold the lease
	Running   bool   // the partition runs on the answering node
	Progress         // meaningful when Running
}

// Config configures a Node.
type Config struct {
	// NodeID is eddy's node ID; it is also the protoactor member ID.
	NodeID string
	// ActorAddr is the host:port the protoactor remote listens on and
	// advertises (the same value as this node's Meta.ActorAddr).
	ActorAddr string
	// Membership is this node's memberlist view. Required.
	Membership control.Members
	Leases     LeaseTable // required
	Local      Local      // required
	// RequestTimeout bounds one grain call (default 2 s).
	RequestTimeout time.Duration
	Logger         *slog.Logger // default slog.Default()

	// lookup replaces the lease lookup (tests measure protoactor's own).
	lookup pcluster.IdentityLookup
}

// Validate reports the first configuration error.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("virtual: NodeID is required")
	case c.Membership == nil:
		return errors.New("virtual: Membership is required")
	case c.Leases == nil:
		return errors.New("virtual: Leases is required")
	case c.Local == nil:
		return errors.New("virtual: Local is required")
	}
	if _, _, err := splitAddr(c.ActorAddr); err != nil {
		return fmt.Errorf("virtual: ActorAddr %q: want host:port with a non-zero port: %w", c.ActorAddr, err)
	}
	return nil
}

func splitAddr(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}

// Identity returns "<job>/<partition>".
func Identity(job string, partition int) string { return job + "/" + strconv.Itoa(partition) }

// ParseIdentity splits "<job>/<partition>"; the job may itself contain '/'.
func ParseIdentity(id string) (string, int, error) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, fmt.Errorf("%w: %q", ErrBadIdentity, id)
	}
	p, err := strconv.Atoi(id[i+1:])
	if err != nil || p < 0 {
		return "", 0, fmt.Errorf("%w: %q", ErrBadIdentity, id)
	}
	return id[:i], p, nil
}

var startMu sync.Mutex

// Node is this node's member of the protoactor cluster.
type Node struct {
	cfg      Config
	system   *actor.ActorSystem
	cluster  *pcluster.Cluster
	provider *Provider
	grain    *grain
}

// Start starts the protoactor remote on cfg.ActorAddr and joins the actor
// cluster (this blocks about one second: protoactor's StartMember waits).
// Stop must be called.
func Start(cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, port, _ := splitAddr(cfg.ActorAddr)
	quiet := slog.New(levelFilter{h: cfg.Logger.With("component", "protoactor").Handler(), min: slog.LevelWarn})
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	// protoactor's gossip keys heartbeats by actor system ID, so it must be
	// the member ID the provider publishes: eddy's node ID.
	system.ID = cfg.NodeID

	g := &grain{node: cfg.NodeID, leases: cfg.Leases, local: cfg.Local, log: cfg.Logger}
	kind := pcluster.NewKind(Kind, actor.PropsFromProducer(func() actor.Actor { return g }))
	provider := NewProvider(cfg.Membership)
	var lookup pcluster.IdentityLookup = &leaseLookup{members: cfg.Membership, leases: cfg.Leases, timeout: cfg.RequestTimeout}
	if cfg.lookup != nil {
		lookup = cfg.lookup
	}
	pc := pcluster.Configure(ClusterName, provider, lookup, remote.Configure(host, port),
		pcluster.WithKinds(kind), pcluster.WithRequestTimeout(cfg.RequestTimeout))
	c := pcluster.New(system, pc)
	defer func() {
		if r := recover(); r != nil { // protoactor panics when it cannot start
			system.Shutdown()
			err = fmt.Errorf("virtual: start actor cluster on %s: %v", cfg.ActorAddr, r)
		}
	}()
	// protoactor's remote.Start sets grpc's global logger without a lock:
	// nodes of one process (tests) start one at a time.
	startMu.Lock()
	defer startMu.Unlock()
	c.StartMember()
	return &Node{cfg: cfg, system: system, cluster: c, provider: provider, grain: g}, nil
}

// Activations returns the identities ("<job>/<partition>") that have a live
// partition grain activation on this node now, sorted. An activation is a
// routing target, not ownership: it may be on a node that does not hold
// the lease (see the package manual).
func (n *Node) Activations() []string { return n.grain.active.list() }

// Stop leaves the actor cluster and stops the remote endpoint.
func (n *Node) Stop() {
	_ = n.provider.Shutdown(false)
	n.cluster.Shutdown(false)
}

// Cluster returns the underlying protoactor cluster (for tests and tools).
func (n *Node) Cluster() *pcluster.Cluster { return n.cluster }

// PartitionStatus asks the grain job/partition for its status from
// whichever node holds the lease, retrying (every 50 ms, dropping the
// cached activation) while the answer is "not owner" or the call fails,
// until ctx ends. Errors: ErrNoLease when the lease table has no holder,
// ErrNotOwner (wrapped, with the last answer) or the last call error when
// ctx ends first.
func (n *Node) PartitionStatus(ctx context.Context, job string, partition int) (Status, error) {
	id := Identity(job, partition)
	var last error
	for {
		if _, _, ok := n.cfg.Leases.Owner(job, partition); !ok {
			return Status{}, fmt.Errorf("%w: %s", ErrNoLease, id)
		}
		timeout := n.cfg.RequestTimeout
		if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
			timeout = time.Until(d)
		}
		if timeout > 0 {
			resp, err := n.cluster.Request(id, Kind, wrapperspb.String(id),
				pcluster.WithTimeout(timeout), pcluster.WithRetryCount(1))
			if err == nil {
				if s, ok := resp.(*structpb.Struct); ok {
					st := decodeStatus(s)
					if !st.NotOwner {
						return st, nil
					}
					last = fmt.Errorf("%w: %s answered for %s, lease holder %q", ErrNotOwner, st.Node, id, st.Owner)
				} else {
					last = fmt.Errorf("virtual: %s: unexpected answer %T", id, resp)
				}
			} else {
				last = err
			}
			// The cached activation is stale (or never was the holder's):
			// look the identity up again through the lease table.
			n.cluster.PidCache.Remove(id, Kind)
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return Status{}, fmt.Errorf("virtual: status of %s: %w", id, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func encodeStatus(st Status) *structpb.Struct {
	f := map[string]*structpb.Value{
		"job":       structpb.NewStringValue(st.Job),
		"partition": structpb.NewNumberValue(float64(st.Partition)),
		"node":      structpb.NewStringValue(st.Node),
		"owner":     structpb.NewStringValue(st.Owner),
		"epoch":     structpb.NewStringValue(strconv.FormatUint(st.Epoch, 10)),
		"not_owner": structpb.NewBoolValue(st.NotOwner),
		"running":   structpb.NewBoolValue(st.Running),
		"offset":    structpb.NewStringValue(strconv.FormatInt(st.Offset, 10)),
		"lag":       structpb.NewStringValue(strconv.FormatInt(st.Lag, 10)),
	}
	if !st.Watermark.IsZero() {
		f["watermark"] = structpb.NewStringValue(st.Watermark.UTC().Format(time.RFC3339Nano))
	}
	return &structpb.Struct{Fields: f}
}

func decodeStatus(s *structpb.Struct) Status {
	f := s.GetFields()
	str := func(k string) string { return f[k].GetStringValue() }
	var st Status
	st.Job = str("job")
	st.Partition = int(f["partition"].GetNumberValue())
	st.Node = str("node")
	st.Owner = str("owner")
	st.Epoch, _ = strconv.ParseUint(str("epoch"), 10, 64)
	st.NotOwner = f["not_owner"].GetBoolValue()
	st.Running = f["running"].GetBoolValue()
	st.Offset, _ = strconv.ParseInt(str("offset"), 10, 64)
	st.Lag, _ = strconv.ParseInt(str("lag"), 10, 64)
	if w := str("watermark"); w != "" {
		st.Watermark, _ = time.Parse(time.RFC3339Nano, w)
	}
	return st
}
