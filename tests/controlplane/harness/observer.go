package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
)

// Sample is one node's report of one partition (GET /v1/local/partitions).
type Sample struct {
	Node   string
	Epoch  uint64
	State  string // control.PartitionRunning, ...
	Offset int64  // source offset, -1 when not reported
}

// Observer polls GET /v1/local/partitions of every running node of a
// cluster, each node on its own goroutine every 25 ms (a stopped or cut-off
// node delays only its own polls), and keeps per partition who runs it:
// each node's latest answer, when each node@epoch was first seen running,
// when each node was last seen running, and every running interval a node
// reported. An interval is [PartitionStatus.Since, start of the last request
// that found it still running]: the node ran the partition throughout it.
// All nodes run on this machine, so their clocks and the test's are one.
// Safe for concurrent use.
type Observer struct {
	c          *Cluster
	partitions int32
	hc         *http.Client

	mu    sync.Mutex
	cur   map[string]nodeView               // node → latest answer
	last  map[int32]map[string]time.Time    // partition → node → last request that saw it running
	first map[int32]map[nodeEpoch]time.Time // partition → node@epoch → first request that saw it running
	runs  map[runKey]time.Time              // running interval → start of the last request inside it
	order []runKey                          // runs in order of discovery
	stops map[string][]pause                // node → the times the test had it SIGSTOPped
}

// pause is a time the test had a node stopped; to is zero while it lasts.
type pause struct{ from, to time.Time }

type nodeView struct {
	at   time.Time // request start
	list []control.PartitionStatus
}

type nodeEpoch struct {
	node  string
	epoch uint64
}

type runKey struct {
	p     int32
	node  string
	epoch uint64
	since time.Time
}

// freshness is how old a node's latest answer may be to count in Owners.
const freshness = 400 * time.Millisecond

// NewObserver returns an observer of c's nodes (joined later ones too) for
// a job of partitions partitions; call Run.
func NewObserver(c *Cluster, partitions int32) *Observer {
	return &Observer{c: c, partitions: partitions, hc: &http.Client{Timeout: 300 * time.Millisecond},
		cur: map[string]nodeView{}, last: map[int32]map[string]time.Time{},
		first: map[int32]map[nodeEpoch]time.Time{}, runs: map[runKey]time.Time{}, stops: map[string][]pause{}}
}

// Stopping tells the observer that the test is about to SIGSTOP node, and
// Continued that it has SIGCONTed it. An answer to a request sent while the
// node was stopped is served after SIGCONT from the state the node had
// before the stop, so it says nothing about the moment the request was
// sent: the observer ignores it.
func (o *Observer) Stopping(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stops[node] = append(o.stops[node], pause{from: time.Now()})
}

// Continued: see Stopping.
func (o *Observer) Continued(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ps := o.stops[node]; len(ps) > 0 && ps[len(ps)-1].to.IsZero() {
		ps[len(ps)-1].to = time.Now()
	}
}

// sentWhileStopped reports whether a request sent to node at at was sent
// while the test had it stopped. o.mu held.
func (o *Observer) sentWhileStopped(node string, at time.Time) bool {
	for _, p := range o.stops[node] {
		if !at.Before(p.from) && (p.to.IsZero() || at.Before(p.to)) {
			return true
		}
	}
	return false
}

// StartObserver starts an observer of c in the background; it stops when
// t ends (t.Cleanup).
func StartObserver(t testing.TB, c *Cluster, partitions int32) *Observer {
	o := NewObserver(c, partitions)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return o
}

// Run polls until ctx ends and returns when every poller has returned.
func (o *Observer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	polled := map[*Node]bool{}
	for ctx.Err() == nil {
		o.c.mu.Lock()
		nodes := slices.Clone(o.c.Nodes)
		o.c.mu.Unlock()
		for _, n := range nodes {
			if !polled[n] {
				polled[n] = true
				wg.Add(1)
				go func() { defer wg.Done(); o.poll(ctx, n) }()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	wg.Wait()
}

func (o *Observer) poll(ctx context.Context, n *Node) {
	for ctx.Err() == nil {
		if n.Running() {
			at := time.Now()
			list, err := o.get(ctx, n)
			o.record(n.ID, at, list, err)
		} else {
			o.record(n.ID, time.Now(), nil, fmt.Errorf("not running"))
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (o *Observer) get(ctx context.Context, n *Node) ([]control.PartitionStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/local/partitions", nil)
	if err != nil {
		return nil, err
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []control.PartitionStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	return list, nil
}

func (o *Observer) record(node string, at time.Time, list []control.PartitionStatus, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil || o.sentWhileStopped(node, at) {
		delete(o.cur, node)
		return
	}
	o.cur[node] = nodeView{at: at, list: list}
	for _, s := range list {
		if s.State != control.PartitionRunning {
			continue
		}
		p := s.Partition
		if o.last[p] == nil {
			o.last[p], o.first[p] = map[string]time.Time{}, map[nodeEpoch]time.Time{}
		}
		o.last[p][node] = at
		k := nodeEpoch{node, s.Epoch}
		if _, ok := o.first[p][k]; !ok {
			o.first[p][k] = at
		}
		rk := runKey{p: p, node: node, epoch: s.Epoch, since: s.Since}
		if _, ok := o.runs[rk]; !ok {
			o.order = append(o.order, rk)
		}
		if at.After(o.runs[rk]) {
			o.runs[rk] = at
		}
	}
}

// Owners returns, per partition, the nodes that run it by their latest
// answers (answers older than 400 ms do not count).
func (o *Observer) Owners() map[int32][]Sample {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int32][]Sample{}
	now := time.Now()
	for node, v := range o.cur {
		if now.Sub(v.at) > freshness {
			continue
		}
		for _, s := range v.list {
			if s.State != control.PartitionRunning {
				continue
			}
			sm := Sample{Node: node, Epoch: s.Epoch, State: s.State, Offset: -1}
			if s.Progress != nil {
				sm.Offset = s.Progress.Offset
			}
			out[s.Partition] = append(out[s.Partition], sm)
		}
	}
	for _, ss := range out {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Node < ss[j].Node })
	}
	return out
}

// OwnedBy returns the partitions node runs (latest answer), with epochs.
func (o *Observer) OwnedBy(node string) map[int32]uint64 {
	out := map[int32]uint64{}
	for p, ss := range o.Owners() {
		for _, s := range ss {
			if s.Node == node {
				out[p] = s.Epoch
			}
		}
	}
	return out
}

// Snapshot returns the owner of every partition that has one.
func (o *Observer) Snapshot() map[int32]Sample {
	out := map[int32]Sample{}
	for p, ss := range o.Owners() {
		out[p] = ss[0]
	}
	return out
}

// AllRunning returns nil when every partition runs on exactly one node and
// none on skip ("" = any node).
func (o *Observer) AllRunning(skip string) error {
	own := o.Owners()
	for p := int32(0); p < o.partitions; p++ {
		ss := own[p]
		if len(ss) != 1 {
			return fmt.Errorf("partition %d runs on %d nodes: %v", p, len(ss), ss)
		}
		if ss[0].Node == skip {
			return fmt.Errorf("partition %d still on %s", p, skip)
		}
	}
	return nil
}

// AtOffsets returns nil when every partition runs on exactly one node at the
// offset ends[p].
func (o *Observer) AtOffsets(ends []int64) error {
	own := o.Owners()
	for p := int32(0); p < o.partitions; p++ {
		if ss := own[p]; len(ss) != 1 || ss[0].Offset != ends[p] {
			return fmt.Errorf("partition %d not at its end offset %d: %v", p, ends[p], ss)
		}
	}
	return nil
}

// FirstRunningAfter returns when partition p was first seen running on a
// node other than not, with an epoch above epoch, and on which node.
func (o *Observer) FirstRunningAfter(p int32, not string, epoch uint64) (time.Time, string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best time.Time
	var who string
	for k, at := range o.first[p] {
		if k.node != not && k.epoch > epoch && (best.IsZero() || at.Before(best)) {
			best, who = at, k.node
		}
	}
	return best, who, !best.IsZero()
}

// LastRunning returns when node was last seen running partition p.
func (o *Observer) LastRunning(p int32, node string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[p][node]
}

// Recovery waits until every partition of orphans (partition → epoch, as
// OwnedBy returned for victim before the fault) was seen running on another
// node at a higher epoch, and returns the longest time from at to that.
// It fails t after timeout.
func (o *Observer) Recovery(t testing.TB, victim string, orphans map[int32]uint64, at time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	Eventually(t, timeout, func() error {
		for p, e := range orphans {
			if _, _, ok := o.FirstRunningAfter(p, victim, e); !ok {
				return fmt.Errorf("partition %d of %s not running elsewhere", p, victim)
			}
		}
		return nil
	})
	var worst time.Duration
	for p, e := range orphans {
		first, _, _ := o.FirstRunningAfter(p, victim, e)
		worst = max(worst, first.Sub(at))
	}
	return worst
}

// Violations returns every observed breach of "one writer per partition":
//
//   - two nodes whose running intervals of one partition overlap in time,
//     at the same epoch or at different epochs (a zombie still running an
//     old epoch while the new owner runs the next one);
//   - a node seen running a partition at epoch e after Raft granted a
//     higher epoch of it (hist, the lease history from GET
//     /v1/leases/history; LeaseEvent.TimeMs is the leader's clock, the
//     same machine's).
func (o *Observer) Violations(hist []control.LeaseEvent) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	byP := map[int32][]runKey{}
	for _, k := range o.order {
		byP[k.p] = append(byP[k.p], k)
	}
	ms := func(t time.Time) string { return t.Format("15:04:05.000") }
	for p, ks := range byP {
		for i, a := range ks {
			for _, b := range ks[i+1:] {
				if a.node == b.node {
					continue
				}
				lo, hi := maxTime(a.since, b.since), minTime(o.runs[a], o.runs[b])
				if lo.Before(hi) {
					out = append(out, fmt.Sprintf("partition %d: %s ran epoch %d over [%s, %s] and %s ran epoch %d over [%s, %s]: both for %s",
						p, a.node, a.epoch, ms(a.since), ms(o.runs[a]), b.node, b.epoch, ms(b.since), ms(o.runs[b]), hi.Sub(lo).Round(time.Millisecond)))
				}
			}
		}
	}
	grants := slices.Clone(hist)
	sort.Slice(grants, func(i, j int) bool { return grants[i].Index < grants[j].Index })
	for _, k := range o.order {
		until := o.runs[k]
		for _, e := range grants {
			if e.Partition != k.p || e.Epoch <= k.epoch || e.Kind == control.LeaseReleased || e.TimeMs == 0 {
				continue
			}
			if g := time.UnixMilli(e.TimeMs); until.After(g) {
				out = append(out, fmt.Sprintf("partition %d: %s still ran epoch %d at %s, %s after Raft granted epoch %d to %s (index %d, %s)",
					k.p, k.node, k.epoch, ms(until), until.Sub(g).Round(time.Millisecond), e.Epoch, e.Owner, e.Index, e.Kind))
			}
			break
		}
	}
	sort.Strings(out)
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
