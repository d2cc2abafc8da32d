package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

// Node is one member of the control plane: a Raft server (voter or
// non-voter) with its FSM replica, a memberlist member, and the HTTP API.
// Its methods are safe for concurrent use.
type Node struct {
	// partitionLookup serves GET /v1/partitions/{job}/{partition}; nil = off.
	partitionLookup atomic.Pointer[lookupHolder]

	cfg     Config
	log     *slog.Logger
	fsm     *FSM
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	store   *raftboltdb.BoltStore
	logs    raft.LogStore // store behind a cache
	members Members
	metrics *metrics
	httpSrv *http.Server
	peer    *http.Client // node-to-node HTTP (forwarding, health checks)
	scheme  string       // of node-to-node URLs: "https" with Config.TLS, else "http"

	joined   atomic.Bool                    // set once the memberlist join succeeded
	assigner atomic.Pointer[assignerHolder] // the attached partition assigner (AttachPartitions), if any

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the control loop

	// readyTerm is the term in which this node, as leader, completed its
	// barrier: consistent reads are served only when it equals the
	// current term.
	readyTerm atomic.Uint64
	// writtenIndex is the highest index of a write acknowledged through
	// this node; local reads wait for the replica to reach it.
	writtenIndex atomic.Uint64

	leaveCh   chan struct{} // closed when the API asked the node to leave
	leaveOnce sync.Once
	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	suppressed map[string]suppression // ids removed on request: not re-added until then
	leaderSvcs []*leaderService       // RunWhileLeader; guarded by mu

	// Owned by the control loop goroutine.
	bootstrapped bool
	deadSince    map[string]time.Time
	warnedExpect bool
	warnedQuorum bool

	health raftHealth // the leader's Raft evidence about its peers (autopilot.go)
}

// StartNode opens the node's data dir, starts Raft, memberlist and the HTTP
// API, and returns at once; joining, bootstrapping and leader election go on
// in the background (see Ready). A node whose DataDir holds Raft state
// recovers it and never bootstraps. Close stops it.
func StartNode(cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("node", cfg.ID)
	if cfg.Registerer == nil || cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = &Node{
		cfg:        cfg,
		log:        logger,
		fsm:        NewFSM(logger),
		ctx:        ctx,
		cancel:     cancel,
		kick:       make(chan struct{}, 1),
		leaveCh:    make(chan struct{}),
		suppressed: make(map[string]suppression),
		deadSince:  make(map[string]time.Time),
		scheme:     "http",
		peer: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	// The cleanups run after a failing `return nil, err` has set n to nil:
	// they use node.
	node := n
	var cleanup []func()
	defer func() {
		if err != nil {
			cancel()
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// HTTP first: fail fast on a busy port.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("control: listen on HTTP address: %w", err)
	}
	var ntls *nodeTLS
	if cfg.TLS.On() {
		if ntls, err = cfg.TLS.load(); err != nil {
			ln.Close()
			return nil, err
		}
		ln = tls.NewListener(ln, ntls.http)
		n.peer.Transport.(*http.Transport).TLSClientConfig = ntls.client
		n.scheme = "https"
	}
	cleanup = append(cleanup, func() { ln.Close() })

	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o755); err != nil {
		return nil, fmt.Errorf("control: create data dir: %w", err)
	}
	n.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(raftDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("control: open raft log %s (is another node using this data dir?): %w", filepath.Join(raftDir, "raft.db"), err)
	}
	cleanup = append(cleanup, func() { node.store.Close() })
	logs, err := raft.NewLogCache(512, n.store)
	if err != nil {
		return nil, err
	}
	n.logs = logs
	hlog := newHCLogger(logger, cfg.Raft.LogLevel)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, cfg.Raft.SnapshotRetain, hlog)
	if err != nil {
		return nil, fmt.Errorf("control: open snapshot store: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("control: raft address: %w", err)
	}
	if cfg.WrapRaftStream != nil || ntls != nil {
		var stream raft.StreamLayer
		var tcp *tcpStream
		if tcp, err = newTCPStream(cfg.RaftAddr, adv); err == nil {
			stream = tcp
			if ntls != nil {
				stream = &tlsStream{tcpStream: tcp, server: ntls.raft, client: ntls.client}
			}
			if cfg.WrapRaftStream != nil {
				stream = cfg.WrapRaftStream(stream)
			}
			n.trans = raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, hlog)
		}
	} else {
		n.trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, adv, 3, 10*time.Second, hlog)
	}
	if err != nil {
		return nil, fmt.Errorf("control: raft transport on %s: %w", cfg.RaftAddr, err)
	}
	cleanup = append(cleanup, func() { node.trans.Close() })

	hasState, err := raft.HasExistingState(logs, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("control: read raft state: %w", err)
	}
	n.bootstrapped = hasState

	notify := make(chan bool, 8)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Raft.CommitTimeout
	rc.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	rc.SnapshotInterval = cfg.Raft.SnapshotInterval
	rc.TrailingLogs = cfg.Raft.TrailingLogs
	rc.ShutdownOnRemove = false // a removed node stays up so it can be added back
	rc.BatchApplyCh = true
	rc.NoLegacyTelemetry = true
	rc.NotifyCh = notify
	rc.Logger = hlog
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("control: start raft: %w", err)
	}
	cleanup = append(cleanup, func() { node.raft.Shutdown().Error() })

	n.members, err = cfg.Members(Meta{
		ID: cfg.ID, HTTPAddr: cfg.HTTPAddr, RaftAddr: cfg.RaftAddr, GossipAddr: cfg.GossipAddr,
		BootstrapExpect: cfg.BootstrapExpect, RaftState: hasState,
	}, logger, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { node.members.Shutdown() })

	if n.metrics, err = newMetrics(cfg.Registerer, n); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { node.metrics.unregister() })

	n.httpSrv = &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		if err := n.members.Join(n.ctx, cfg.Join); err != nil {
			if n.ctx.Err() == nil {
				n.log.Error("join failed", "err", err)
			}
			return
		}
		n.joined.Store(true)
	}()
	go n.observe()
	go n.run(notify)
	n.log.Info("node started", "http", cfg.HTTPAddr, "raft", cfg.RaftAddr, "gossip", cfg.GossipAddr,
		"bootstrap_expect", cfg.BootstrapExpect, "existing_state", hasState)
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.ID }

// FSM returns the node's local replica of the state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// Devices returns the operators.DeviceLookup of the local replica.
func (n *Node) Devices() *DeviceLookup { return n.fsm.Devices() }

// Logger returns the node's logger (Config.Logger with the node id, or
// slog.Default's).
func (n *Node) Logger() *slog.Logger { return n.log }

// Registerer returns where the node registers its metrics
// (Config.Registerer, or the node's own registry when none was given).
func (n *Node) Registerer() prometheus.Registerer { return n.cfg.Registerer }

// Membership returns the node's membership view (what Config.Members
// started).
func (n *Node) Membership() Members { return n.members }

// Raft returns the underlying Raft instance (for status and tests; do not
// Apply to it directly, use Node.Apply).
func (n *Node) Raft() *raft.Raft { return n.raft }

// Done is closed when the node was asked to leave through the API (POST
// /v1/cluster/leave) and the process should call Close and exit.
func (n *Node) Done() <-chan struct{} { return n.leaveCh }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Ready reports whether the node has a known leader and has applied what it
// knows to be committed (within a small slack).
func (n *Node) Ready() bool {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return false
	}
	return n.fsm.View().Index()+64 >= n.raft.CommitIndex()
}

// Joined reports whether the node has joined the cluster (its first
// memberlist join succeeded; always true for a node started without
// Config.Join), so that its member list is complete.
func (n *Node) Joined() bool { return n.joined.Load() }

// Close stops the node: it announces a memberlist leave (peers see it as
// left at once; its Raft membership is kept, so a restart resumes its
// place), stops the HTTP API (in-flight requests get up to 2 s), shuts Raft
// down and closes the stores. Idempotent; blocks until every goroutine the
// node started has returned.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if a := n.attached(); a != nil {
			a.Close() // hard stop of the partitions; Leave first hands them off (Shutdown)
		}
		n.cancel()
		if err := n.members.Leave(time.Second); err != nil && !errors.Is(err, ErrMembersShutdown) {
			n.log.Warn("memberlist leave", "err", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			n.httpSrv.Close()
		}
		cancel()
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		if err := n.members.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("memberlist shutdown: %w", err))
		}
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft transport: %w", err))
		}
		n.wg.Wait()
		n.mu.Lock()
		services := n.leaderSvcs
		n.leaderSvcs = nil
		n.mu.Unlock()
		for _, s := range services {
			s.s.Close()
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft store: %w", err))
		}
		n.peer.CloseIdleConnections()
		n.metrics.unregister()
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// Apply validates cmd, proposes it to the leader (locally, or forwarded over
// HTTP from a follower) and waits until it is applied, for at most
// Config.ApplyTimeout. Local reads through this node's HTTP API afterwards
// wait until its replica has applied the command (read-your-writes).
// Errors: ErrInvalid and ErrTooLarge before anything is
// sent; ErrConflict or ErrNotFound from the FSM (nothing changed); ErrNoLeader
// when no leader accepted it within Config.LeaderWait (not applied);
// ErrUnknownOutcome when the leader was lost after the command was sent.
func (n *Node) Apply(ctx context.Context, cmd Command) (Result, error) {
	if err := cmd.Validate(); err != nil {
		return Result{}, err
	}
	if err := n.checkSize(cmd); err != nil {
		return Result{}, err
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	res, err := n.applyEncoded(ctx, data, false)
	if err == nil {
		// Remember the write so that local reads on this node wait for it
		// (read-your-writes through the node that took the write).
		for {
			cur := n.writtenIndex.Load()
			if res.Index <= cur || n.writtenIndex.CompareAndSwap(cur, res.Index) {
				break
			}
		}
	}
	return res, err
}

// syncLocal waits (at most 1 s) until the local replica has applied every
// write this node has acknowledged, so that a local read never misses a
// write made through the same node.
func (n *Node) syncLocal(ctx context.Context) {
	idx := n.writtenIndex.Load()
	if n.fsm.View().Index() >= idx {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = n.fsm.WaitApplied(ctx, idx)
}

func (n *Node) checkSize(cmd Command) error {
	var size int
	switch c := cmd.(type) {
	case KVSet:
		size = len(c.Value)
	case JobPut:
		size = len(c.Spec)
	}
	if size > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", ErrTooLarge, size, n.cfg.MaxValueBytes)
	}
	return nil
}

// applyEncoded applies data on the leader, forwarding it if this node is
// not the leader (unless the request was itself forwarded: then it answers
// ErrNotLeader and the forwarder retries). Errors meaning "not applied" are
// retried (5 ms doubling to 20 ms, ±20 % jitter) until a leader accepts or
// LeaderWait passes.
func (n *Node) applyEncoded(ctx context.Context, data []byte, forwarded bool) (Result, error) {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	b := backoff.ExponentialBackOff{InitialInterval: 5 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 20 * time.Millisecond}
	for {
		var err error
		var res Result
		switch {
		case n.raft.State() == raft.Leader:
			res, err = n.applyLocal(ctx, data)
		case forwarded:
			return Result{}, ErrNotLeader
		default:
			if addr, ok := n.leaderHTTP(); ok {
				res, err = n.forwardApply(ctx, addr, data)
			} else {
				err = ErrNoLeader
			}
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return res, err
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return Result{}, fmt.Errorf("%w: no leader accepted the write within %v (last: %v)", ErrNoLeader, n.cfg.LeaderWait, err)
		}
		select {
		case <-ctx.Done():
		case <-n.ctx.Done():
			return Result{}, ErrClosed
		case <-time.After(b.NextBackOff()):
		}
	}
}

// applyLocal applies data through this node's Raft, which must be leader.
func (n *Node) applyLocal(ctx context.Context, data []byte) (Result, error) {
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return Result{}, fmt.Errorf("%w: deadline passed before the write was proposed", ErrNoLeader)
	}
	start := time.Now()
	f := n.raft.Apply(data, timeout)
	// Raft resolves every future: on commit, on loss of leadership (the
	// leader steps down after LeaderLeaseTimeout without a quorum), or on
	// shutdown. So this wait is bounded.
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return Result{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return Result{}, fmt.Errorf("%w: %v", ErrNoLeader, err)
		default: // ErrLeadershipLost, ErrRaftShutdown
			return Result{}, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		}
	}
	n.metrics.applySeconds.Observe(time.Since(start).Seconds())
	resp, ok := f.Response().(*applyResponse)
	if !ok {
		return Result{}, fmt.Errorf("control: unexpected apply response %T", f.Response())
	}
	return resp.Result, resp.Err
}

// leaderHTTP returns the HTTP address of the current leader, from the
// memberlist metadata of the Raft leader id.
func (n *Node) leaderHTTP() (string, bool) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", false
	}
	if string(id) == n.cfg.ID {
		return n.cfg.HTTPAddr, true
	}
	m, ok := n.members.Member(string(id))
	if !ok || m.HTTPAddr == "" {
		return "", false
	}
	return m.HTTPAddr, true
}

// readBarrier makes a read on this node linearizable: this node must be the
// leader and have committed an entry of its term (its barrier); it then
// takes the commit index, confirms leadership with a quorum (VerifyLeader)
// and waits until the FSM has applied up to that index — the ReadIndex
// protocol of the Raft thesis (§6.4).
func (n *Node) readBarrier(ctx context.Context) error {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	for {
		if n.raft.State() != raft.Leader {
			return ErrNotLeader
		}
		if n.readyTerm.Load() == n.raft.CurrentTerm() {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: leader has not committed an entry of its term yet", ErrNoLeader)
		}
		n.kickLoop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return n.fsm.WaitApplied(ctx, n.lastStateIndex(idx))
}

// lastStateIndex returns the highest index <= idx of an entry the FSM sees
// (a command or configuration). Raft never hands no-op and barrier entries
// to the FSM, so the FSM's index stops below them; they change nothing.
func (n *Node) lastStateIndex(idx uint64) uint64 {
	applied := n.fsm.View().Index()
	var l raft.Log
	for i := idx; i > applied; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			// Compacted: covered by a snapshot, hence already applied.
			return applied
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return applied
}

func (n *Node) kickLoop() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// observe counts leader changes seen by this node.
func (n *Node) observe() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			n.metrics.leaderChanges.Inc()
			n.log.Info("leader changed", "leader", string(lo.LeaderID))
			n.kickLoop()
		}
	}
}

// run is the node's control loop: bootstrap, metadata sync and, on the
// leader, the barrier for consistent reads and autopilot.
func (n *Node) run(notify <-chan bool) {
	defer n.wg.Done()
	events, cancel := n.members.Subscribe(64)
	defer cancel()
	interval := n.cfg.Autopilot.ReconcileInterval
	if interval > 200*time.Millisecond {
		interval = 200 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	defer n.setLeaderServices(false)
	lastReconcile := time.Time{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-events:
			lastReconcile = time.Time{} // membership changed: reconcile now
		case isLeader := <-notify:
			if !isLeader {
				n.readyTerm.Store(0)
			}
			lastReconcile = time.Time{}
		case <-n.kick:
		}
		if !n.bootstrapped {
			n.maybeBootstrap()
		}
		if n.raft.State() != raft.Leader {
			n.readyTerm.Store(0)
			clear(n.deadSince)
			n.setLeaderServices(false)
			n.syncMeta()
			continue
		}
		term := n.raft.CurrentTerm()
		if n.readyTerm.Load() != term {
			// A new leader commits an entry of its term before serving
			// consistent reads, so that its commit index covers every
			// entry committed by earlier leaders.
			if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("leader barrier failed", "err", err)
				continue
			}
			n.readyTerm.Store(term)
			n.log.Info("leader ready", "term", term)
			lastReconcile = time.Time{}
		}
		n.setLeaderServices(true)
		if time.Since(lastReconcile) >= n.cfg.Autopilot.ReconcileInterval {
			n.syncMeta()
			n.reconcile()
			lastReconcile = time.Now()
		}
	}
}

// LeaderService is work a node does only while it is the Raft leader,
// such as package cluster's broadcast bridge (RunWhileLeader).
type LeaderService interface {
	// SetLeader is called from the node's control loop: with true once this
	// node, as leader, has committed an entry of its term (it serves
	// consistent reads from then on), with false when it is no longer the
	// leader and when the node closes; only on a change. The loop waits
	// for it: start or stop work and return promptly.
	SetLeader(ready bool)
	// Close is called once by Node.Close, after the last SetLeader(false)
	// (release what the service registered, e.g. metrics).
	Close()
}

type leaderService struct {
	s    LeaderService
	sent bool // the last state SetLeader was called with
}

// RunWhileLeader makes the node call s.SetLeader on every change of its
// leadership (the current state at the next turn of its control loop, at
// most 200 ms later) and s.Close when it closes. A node that is closed
// already calls s.Close at once.
func (n *Node) RunWhileLeader(s LeaderService) {
	n.mu.Lock()
	if n.ctx.Err() == nil {
		n.leaderSvcs = append(n.leaderSvcs, &leaderService{s: s})
		n.mu.Unlock()
		n.kickLoop()
		return
	}
	n.mu.Unlock()
	s.Close()
}

// setLeaderServices tells the leader services whose last state differs
// that the node is the ready leader or not. Called from the control loop.
func (n *Node) setLeaderServices(ready bool) {
	n.mu.Lock()
	services := append([]*leaderService(nil), n.leaderSvcs...)
	n.mu.Unlock()
	for _, s := range services {
		if s.sent != ready {
			s.sent = ready
			s.s.SetLeader(ready)
		}
	}
}

// hasRaftState reports whether this node has a log or configuration.
func (n *Node) hasRaftState() bool {
	if n.raft.LastIndex() > 0 {
		return true
	}
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// maybeBootstrap implements --bootstrap-expect (see Config.BootstrapExpect).
func (n *Node) maybeBootstrap() {
	if n.hasRaftState() {
		n.bootstrapped = true
		return
	}
	expect := n.cfg.BootstrapExpect
	if expect == 0 {
		return
	}
	var cands []Member
	for _, m := range n.members.Alive() {
		if m.RaftState {
			return // a cluster exists: its leader will add this node
		}
		if m.BootstrapExpect == 0 {
			continue
		}
		if m.BootstrapExpect != expect {
			if !n.warnedExpect {
				n.log.Warn("not bootstrapping: members disagree on --bootstrap-expect", "member", m.ID, "theirs", m.BootstrapExpect, "ours", expect)
				n.warnedExpect = true
			}
			return
		}
		cands = append(cands, m)
	}
	if len(cands) < expect {
		return
	}
	chosen := cands[:expect] // Alive is sorted by ID
	if chosen[0].ID != n.cfg.ID {
		return // the lowest id bootstraps; the others are replicated to
	}
	// Gossip may lag: confirm over HTTP that none of the others has state.
	for _, m := range chosen[1:] {
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		st, err := n.peerRaftStatus(ctx, m.HTTPAddr)
		cancel()
		if err != nil || st.LastIndex > 0 || st.LeaderID != "" {
			n.log.Debug("bootstrap: peer not confirmed fresh", "peer", m.ID, "err", err)
			return
		}
	}
	var servers []raft.Server
	ids := make([]string, 0, expect)
	for _, m := range chosen {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
		ids = append(ids, m.ID)
	}
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			n.bootstrapped = true
			return
		}
		n.log.Error("bootstrap failed", "err", err)
		return
	}
	n.bootstrapped = true
	n.log.Info("bootstrapped raft cluster", "voters", strings.Join(ids, ","))
}

// syncMeta keeps this node's advertised Voter and RaftState flags current.
func (n *Node) syncMeta() {
	raftState := n.bootstrapped || n.hasRaftState()
	voter := false
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == n.cfg.ID && s.Suffrage == raft.Voter {
				voter = true
			}
		}
	}
	if meta := n.members.LocalMeta(); meta.RaftState == raftState && meta.Voter == voter {
		return
	}
	err := n.members.UpdateMeta(func(m *Meta) { m.RaftState, m.Voter = raftState, voter }, time.Second)
	if err != nil && !errors.Is(err, ErrMembersShutdown) {
		n.log.Warn("update node metadata", "err", err)
	}
}

// suppress keeps id from being re-added by autopilot for d, or until its
// member comes back alive after this call (a node that left and was
// restarted joins again at once).
func (n *Node) suppress(id string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	n.suppressed[id] = suppression{at: now, until: now.Add(d)}
}

func (n *Node) isSuppressed(m Member) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.suppressed[m.ID]
	if ok && (time.Now().After(s.until) || m.Status == StatusAlive && m.Since.After(s.at)) {
		delete(n.suppressed, m.ID)
		return false
	}
	return ok
}

// suppression is a server removed on request: not re-added until.
type suppression struct{ at, until time.Time }

// Leave removes this node from the cluster for good: it hands its device
// partitions over (PartitionAssigner.Shutdown, if one is attached), flags
// itself as leaving, hands leadership over if it is the leader, asks the
// leader to remove it from the Raft configuration (voter or non-voter;
// autopilot then promotes a healthy non-voter if the voter target is no
// longer met), then closes Done. The caller (the node process) then calls
// Close, which announces the memberlist leave. A node restarted later with
// its data dir rejoins as a non-voter. Fails with ErrConflict if this node
// is the only voter, or if the voters left that the leader hears from over
// Raft would not be a majority of the voters left (the configuration change
// could not commit; the node then stays in the configuration).
func (n *Node) Leave(ctx context.Context) error {
	if a := n.attached(); a != nil {
		// Hand the partitions over while this node can still release
		// their leases through Raft.
		if err := a.Shutdown(ctx); err != nil {
			n.log.Warn("leave: partitions not all handed off", "err", err)
		}
	}
	if err := n.members.UpdateMeta(func(m *Meta) { m.Leaving = true }, time.Second); err != nil {
		n.log.Warn("flag leaving in metadata", "err", err)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	inConfig, voters := false, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == n.cfg.ID {
			inConfig = true
		}
	}
	if inConfig {
		if n.IsLeader() {
			if voters <= 1 {
				_ = n.members.UpdateMeta(func(m *Meta) { m.Leaving = false }, time.Second)
				return fmt.Errorf("%w: this node is the only voter; the cluster would be lost", ErrConflict)
			}
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				return fmt.Errorf("control: hand leadership over before leaving: %w", err)
			}
		}
		if err := n.removeServer(ctx, n.cfg.ID); err != nil {
			return fmt.Errorf("control: leave: %w", err)
		}
	}
	n.log.Info("left the raft cluster")
	n.leaveOnce.Do(func() { close(n.leaveCh) })
	return nil
}

// removeServer removes id from the Raft configuration, on the leader
// (forwarding the request if needed).
func (n *Node) removeServer(ctx context.Context, id string) error {
	return n.onLeader(ctx, "/v1/cluster/raft/remove", id, func() error {
		if id == n.cfg.ID {
			return fmt.Errorf("%w: the leader cannot remove itself; transfer leadership first (eddy ctl leave does)", ErrConflict)
		}
		if !n.canRemoveVoter(id) {
			return fmt.Errorf("%w: removing voter %s would leave the healthy voters a minority of the new configuration, which could not commit it; repair the other voters first", ErrConflict, id)
		}
		n.suppress(id, time.Minute)
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			return raftErr(err)
		}
		n.metrics.autopilot.WithLabelValues("removed").Inc()
		n.log.Info("removed server on request", "id", id)
		return nil
	})
}

// promoteServer makes the non-voter id a voter, on the leader.
func (n *Node) promoteServer(ctx context.Context, id string) error {
	return n.onLeader(ctx, "/v1/cluster/raft/promote", id, func() error {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return raftErr(err)
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != id {
				continue
			}
			if s.Suffrage == raft.Voter {
				return nil
			}
			if err := n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout).Error(); err != nil {
				return raftErr(err)
			}
			n.metrics.autopilot.WithLabelValues("promoted").Inc()
			n.log.Info("promoted server on request", "id", id)
			return nil
		}
		return fmt.Errorf("%w: server %q is not in the raft configuration (it joins as a non-voter once it is a live member)", ErrNotFound, id)
	})
}

// onLeader runs fn if this node is the leader, else POSTs {"id": id} to
// path on the leader.
func (n *Node) onLeader(ctx context.Context, path, id string, fn func() error) error {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	for {
		var err error
		if n.IsLeader() {
			err = fn()
		} else if addr, ok := n.leaderHTTP(); ok {
			err = n.forwardJSON(ctx, addr, path, serverRequest{ID: id}, nil)
		} else {
			err = ErrNoLeader
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
}

// Status returns this node's view of Raft.
func (n *Node) Status() RaftStatus {
	st := RaftStatus{
		ID:           n.cfg.ID,
		State:        strings.ToLower(n.raft.State().String()),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		Voters:       []RaftServer{},
		NonVoters:    []RaftServer{},
	}
	addr, id := n.raft.LeaderWithID()
	st.LeaderID, st.LeaderAddr = string(id), string(addr)
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			rs := RaftServer{ID: string(s.ID), Address: string(s.Address)}
			if s.Suffrage == raft.Voter {
				st.Voters = append(st.Voters, rs)
			} else {
				st.NonVoters = append(st.NonVoters, rs)
			}
		}
	}
	if fi, err := n.store.FirstIndex(); err == nil {
		st.FirstIndex = fi
	}
	stats := n.raft.Stats()
	st.LastSnapshotIndex, _ = strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
	switch lc := n.raft.LastContact(); {
	case n.raft.State() == raft.Leader:
		st.LastContactMs = 0
	case lc.IsZero():
		st.LastContactMs = -1
	default:
		st.LastContactMs = time.Since(lc).Milliseconds()
	}
	v := n.fsm.View()
	st.VoterTarget = v.Settings().VoterTarget
	st.FSMKeys = v.Len()
	st.FSMRestores = n.fsm.Restores()
	return st
}

// hcLogWriter routes hclog lines into slog at their level.
type hcLogWriter struct{ log *slog.Logger }

func newHCLogger(l *slog.Logger, level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.LevelFromString(level),
		Output:      &hcLogWriter{log: l.With("component", "raft")},
		DisableTime: true,
	})
}

func (w *hcLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		level := slog.LevelInfo
		for _, t := range []struct {
			tag string
			l   slog.Level
		}{{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERROR]", slog.LevelError}} {
			if i := strings.Index(line, t.tag); i >= 0 {
				level = t.l
				line = strings.TrimSpace(line[i+len(t.tag):])
				break
			}
		}
		line = strings.TrimPrefix(line, "raft: ")
		w.log.Log(context.Background(), level, line)
	}
	return len(p), nil
}
