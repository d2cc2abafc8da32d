package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
)

// ErrShutdown is returned by the methods of a Membership after Shutdown; it
// wraps control.ErrMembersShutdown.
var ErrShutdown = fmt.Errorf("cluster: %w", control.ErrMembersShutdown)

// Membership is this node's view of the cluster. All methods are safe for
// concurrent use.
type Membership struct {
	cfg     Config
	log     *slog.Logger
	list    *memberlist.Memberlist
	metrics *metrics

	// updateMu serializes metadata updates: memberlist's UpdateNode reads
	// the metadata before it takes a new incarnation number, so two
	// concurrent calls could gossip the older metadata under the newer
	// incarnation, and it would stick.
	updateMu sync.Mutex

	mu      sync.Mutex
	meta    control.Meta // local meta, guarded by mu
	members map[string]*control.Member
	subs    map[int]chan control.Event
	nextSub int
	closed  bool

	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	leftOnce sync.Once
}

// New starts memberlist on cfg.Meta.GossipAddr (or cfg.BindAddr) and
// returns the Membership. The node is alone until Join succeeds. Shutdown
// must be called to release the sockets.
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "memberlist")
	m := &Membership{
		cfg:     cfg,
		log:     logger,
		meta:    cfg.Meta,
		members: make(map[string]*control.Member),
		subs:    make(map[int]chan control.Event),
		stop:    make(chan struct{}),
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if m.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}

	advHost, advPort, err := splitHostPort(cfg.Meta.GossipAddr)
	if err != nil {
		return nil, err
	}
	advIP, err := resolveIP(advHost)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address %q: %w", cfg.Meta.GossipAddr, err)
	}
	bindIP, bindPort := advIP, advPort
	if cfg.BindAddr != "" {
		h, p, _ := splitHostPort(cfg.BindAddr)
		if bindIP, err = resolveIP(h); err != nil {
			return nil, fmt.Errorf("cluster: bind address %q: %w", cfg.BindAddr, err)
		}
		bindPort = p
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	mc.BindAddr = bindIP.String()
	mc.BindPort = bindPort
	mc.AdvertiseAddr = advIP.String()
	mc.AdvertisePort = advPort
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	// A restarted node comes back under the same name; let it reclaim its
	// name quickly even if its address changed.
	mc.DeadNodeReclaimTime = 5 * time.Second
	mc.Delegate = (*delegate)(m)
	mc.Events = (*eventDelegate)(m)
	mc.Logger = log.New(&levelWriter{log: logger}, "", 0)
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = cfg.SecretKey // memberlist builds a one-key keyring from it
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}

	list, err := memberlist.Create(mc)
	if err != nil {
		m.metrics.unregister()
		return nil, fmt.Errorf("cluster: start memberlist on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	m.list = list
	m.wg.Add(1)
	go m.reapLoop()
	return m, nil
}

func resolveIP(host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip, nil
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %q", host)
	}
	return ips[0], nil
}

// Join contacts the given gossip addresses (host:port) and retries, with
// exponential backoff (100 ms doubling to 2 s, ±20 % jitter so that nodes
// started together do not retry in step), until at least one contact
// succeeds or ctx ends. An
// empty list returns nil at once (the node starts a new cluster). Returns
// ctx's error when it ends first, or ErrShutdown.
func (m *Membership) Join(ctx context.Context, addrs []string) error {
	addrs = m.withoutSelf(addrs)
	if len(addrs) == 0 {
		return nil // nothing but this node to join: it is the seed
	}
	b := backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		select {
		case <-m.stop:
			return ErrShutdown
		default:
		}
		n, err := m.list.Join(addrs)
		if n > 0 {
			m.log.Info("joined cluster", "contacted", n)
			return nil
		}
		delay := b.NextBackOff()
		m.log.Warn("join failed, retrying", "peers", addrs, "attempt", attempt, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: join %v: %w (last error: %v)", addrs, ctx.Err(), err)
		case <-m.stop:
			return ErrShutdown
		case <-time.After(delay):
		}
	}
}

// withoutSelf drops the addresses that resolve to this node's own gossip
// address: identical --join lists on every node (a Kubernetes StatefulSet)
// name the node itself, and contacting yourself is not joining a cluster.
// Addresses that do not resolve (yet) are kept.
func (m *Membership) withoutSelf(addrs []string) []string {
	self := m.list.LocalNode()
	var out []string
	for _, a := range addrs {
		if ta, err := net.ResolveTCPAddr("tcp", a); err == nil && ta.IP.Equal(self.Addr) && ta.Port == int(self.Port) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// LocalMeta returns the Meta this node advertises.
func (m *Membership) LocalMeta() control.Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}

// SetMeta replaces the local Meta (its ID must not change) and gossips it,
// waiting up to timeout for the update to be broadcast.
func (m *Membership) SetMeta(meta control.Meta, timeout time.Duration) error {
	b, err := encodeMeta(meta)
	if err != nil {
		return err
	}
	if len(b) > MaxMetaBytes {
		return fmt.Errorf("cluster: meta encodes to %d bytes, more than %d", len(b), MaxMetaBytes)
	}
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrShutdown
	}
	if meta.ID != m.meta.ID {
		m.mu.Unlock()
		return fmt.Errorf("cluster: SetMeta cannot change the node id from %q to %q", m.meta.ID, meta.ID)
	}
	m.meta = meta
	m.mu.Unlock()
	return m.list.UpdateNode(timeout)
}

// UpdateMeta changes the local Meta with fn (which must not change the ID)
// and gossips it, waiting up to timeout for the broadcast. Unlike
// LocalMeta+SetMeta, concurrent UpdateMeta calls never undo each other's
// changes.
func (m *Membership) UpdateMeta(fn func(*control.Meta), timeout time.Duration) error {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrShutdown
	}
	meta := m.meta
	fn(&meta)
	if meta == m.meta {
		m.mu.Unlock()
		return nil
	}
	if meta.ID != m.meta.ID {
		m.mu.Unlock()
		return fmt.Errorf("cluster: UpdateMeta cannot change the node id from %q to %q", m.meta.ID, meta.ID)
	}
	b, err := encodeMeta(meta)
	if err == nil && len(b) > MaxMetaBytes {
		err = fmt.Errorf("cluster: meta encodes to %d bytes, more than %d", len(b), MaxMetaBytes)
	}
	if err != nil {
		m.mu.Unlock()
		return err
	}
	m.meta = meta
	m.mu.Unlock()
	return m.list.UpdateNode(timeout)
}

// Members returns every known member, alive, failed or left (the latter two
// until Config.ReapAfter), sorted by ID. The slice is a copy.
func (m *Membership) Members() []control.Member {
	m.mu.Lock()
	out := make([]control.Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Alive returns the alive members (including this node), sorted by ID.
func (m *Membership) Alive() []control.Member {
	all := m.Members()
	out := all[:0]
	for _, mem := range all {
		if mem.Status == control.StatusAlive {
			out = append(out, mem)
		}
	}
	return out
}

// Member returns the member with the given ID.
func (m *Membership) Member(id string) (control.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	if !ok {
		return control.Member{}, false
	}
	return *mem, true
}

// Subscribe returns a channel of membership events with the given buffer
// (minimum 1) and a cancel function that closes it. Events that do not fit
// in the buffer are dropped (see the package doc). The channel is closed by
// cancel or Shutdown.
func (m *Membership) Subscribe(buffer int) (<-chan control.Event, func()) {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan control.Event, buffer)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		close(ch)
		return ch, func() {}
	}
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if c, ok := m.subs[id]; ok {
			delete(m.subs, id)
			close(c)
		}
	}
}

// Leave announces that this node leaves the cluster and waits up to timeout
// (twice: once for the Stopping flag, once for the leave) for the
// announcement to be gossiped. Other nodes then report it as left. Call
// Shutdown afterwards. Calling Leave twice is harmless.
func (m *Membership) Leave(timeout time.Duration) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrShutdown
	}
	m.meta.Stopping = true
	m.mu.Unlock()
	var err error
	m.leftOnce.Do(func() {
		m.updateMu.Lock()
		uerr := m.list.UpdateNode(timeout)
		m.updateMu.Unlock()
		if uerr != nil {
			m.log.Debug("announce stopping", "err", uerr)
		}
		err = m.list.Leave(timeout)
	})
	return err
}

// Shutdown stops gossip without announcing a leave (peers will detect the
// node as failed unless Leave was called first), closes the subscriber
// channels and waits for the Membership's goroutines. Idempotent.
func (m *Membership) Shutdown() error {
	var err error
	m.shutOnce.Do(func() {
		err = m.list.Shutdown()
		close(m.stop)
		m.wg.Wait()
		m.mu.Lock()
		m.closed = true
		for id, c := range m.subs {
			delete(m.subs, id)
			close(c)
		}
		m.mu.Unlock()
		m.metrics.update(nil)
	})
	return err
}

// reapLoop forgets failed and left members after ReapAfter.
func (m *Membership) reapLoop() {
	defer m.wg.Done()
	every := m.cfg.ReapAfter / 10
	if every > time.Minute {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.mu.Lock()
			for id, mem := range m.members {
				if mem.Status != control.StatusAlive && now.Sub(mem.Since) > m.cfg.ReapAfter {
					delete(m.members, id)
				}
			}
			m.metrics.update(m.members)
			m.mu.Unlock()
		}
	}
}

// observe records a memberlist notification and fans it out. Called by
// memberlist with its internal locks held: must not call into memberlist.
func (m *Membership) observe(n *memberlist.Node, kind control.EventType) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("ignoring member with bad metadata", "node", n.Name, "err", err)
		return
	}
	if meta.ID == "" {
		meta.ID = n.Name
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, known := m.members[meta.ID]
	if kind == control.EventFail && meta.Stopping {
		kind = control.EventLeave // it announced its stop before going away
	}
	status := control.StatusAlive
	switch kind {
	case control.EventFail:
		status = control.StatusFailed
	case control.EventLeave:
		status = control.StatusLeft
	}
	mem := &control.Member{Meta: meta, Status: status, Since: now, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))}
	if known && prev.Status == status {
		mem.Since = prev.Since
	}
	m.members[meta.ID] = mem
	m.metrics.update(m.members)
	if kind == control.EventJoin && known && prev.Status == control.StatusAlive {
		kind = control.EventUpdate
	}
	m.log.Debug("member event", "event", kind.String(), "id", meta.ID, "addr", mem.Addr)
	ev := control.Event{Type: kind, Member: *mem}
	for _, c := range m.subs {
		select {
		case c <- ev:
		default:
			m.metrics.dropped.Inc()
		}
	}
}

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	m := (*Membership)(d)
	m.mu.Lock()
	b, err := encodeMeta(m.meta)
	m.mu.Unlock()
	if err != nil || len(b) > limit {
		m.log.Error("node metadata too large or unencodable", "bytes", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

type eventDelegate Membership

func (e *eventDelegate) NotifyJoin(n *memberlist.Node) {
	(*Membership)(e).observe(n, control.EventJoin)
}
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) {
	(*Membership)(e).observe(n, control.EventUpdate)
}

// NotifyLeave is called for failed and left nodes alike (memberlist's
// Node.State is not set in this callback); observe tells them apart by the
// Stopping flag.
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	(*Membership)(e).observe(n, control.EventFail)
}

// levelWriter turns memberlist's "[LEVEL] memberlist: msg" lines into slog
// records at the matching level.
type levelWriter struct{ log *slog.Logger }

func (w *levelWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		line := sc.Text()
		level := slog.LevelInfo
		for _, l := range []struct {
			tag   string
			level slog.Level
		}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
			if len(line) >= len(l.tag) && line[:len(l.tag)] == l.tag {
				level = l.level
				line = line[len(l.tag):]
				break
			}
		}
		line = trimPrefix(trimPrefix(line, " "), "memberlist: ")
		w.log.Log(context.Background(), level, line)
	}
	return len(p), nil
}

var _ io.Writer = (*levelWriter)(nil)

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
