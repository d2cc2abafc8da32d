package control

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// States of PartitionInfo.State besides the owner's own report
// (PartitionRunning and the other PartitionStatus states).
const (
	PartitionUnowned     = "unowned"     // no lease was ever granted
	PartitionReleased    = "released"    // the lease is released; the next owner has not acquired it yet
	PartitionOwnerDown   = "owner_down"  // the holder is failed or left in the answering node's view
	PartitionUnreachable = "unreachable" // the holder did not answer GET /v1/local/partitions
	PartitionUnreported  = "unreported"  // the holder answered but does not run the partition
)

// PartitionProgress is what a running partition reports about itself.
type PartitionProgress struct {
	// Offset is the next source offset the partition will read.
	Offset int64 `json:"offset"`
	// Lag is the number of records between Offset and the end of the
	// source partition (-1 = unknown).
	Lag int64 `json:"lag"`
	// WatermarkMs is the partition's watermark, Unix ms (0 = none yet).
	WatermarkMs int64 `json:"watermark_ms"`
}

// Partition states a node reports for the partitions it runs
// (PartitionStatus.State, from PartitionSource.Partitions).
const (
	PartitionStarting   = "starting"    // acquiring the lease, then Runner.Start
	PartitionRunning    = "running"     // started under PartitionStatus.Epoch
	PartitionHandingOff = "handing_off" // Runner.Handoff, then the release
	PartitionStopping   = "stopping"    // Runner.Stop (fenced, lease lost, closing)
	PartitionReleasing  = "releasing"   // giving back a lease nothing runs under
)

// PartitionStatus is one partition as seen by the node that runs it (GET
// /v1/local/partitions).
type PartitionStatus struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Node      string `json:"node"`
	// Epoch of the lease the partition runs under (0 while starting).
	Epoch uint64    `json:"epoch"`
	State string    `json:"state"`
	Since time.Time `json:"since"` // when State began (node's clock)
	// Progress, when the node's partition runner reports it.
	Progress *PartitionProgress `json:"progress,omitempty"`
}

// PartitionSource is the port through which the HTTP API reads the device
// partitions of this node and their placement: the partition assigner
// (cluster/assign.Assigner) implements it and attaches itself with
// Node.AttachPartitions. A node with none attached reports no local
// partitions, knows no partition count besides the declared ones and no
// desired owner. Methods must be fast and safe for concurrent use.
type PartitionSource interface {
	// Partitions returns the partitions this node runs or is starting,
	// handing off or stopping, sorted by job and partition.
	Partitions() []PartitionStatus
	// PartitionCount returns the partition count of job as this node knows
	// it (declared in the record, or asked from the source), or 0.
	PartitionCount(job Job) int32
	// Desired returns the member placement gives partition p of job among
	// the placeable member ids ("" when placeable is empty).
	Desired(job string, p int32, placeable []string) string
}

// PartitionAssigner is a PartitionSource that also runs the partitions:
// Node.Leave calls Shutdown first, to hand them off while the node can
// still release their leases through Raft; Node.Close calls Close, the
// hard stop.
type PartitionAssigner interface {
	PartitionSource
	// Shutdown hands every partition of this node over; it returns nil
	// once nothing runs, or ctx's error.
	Shutdown(ctx context.Context) error
	// Close stops every partition at once, keeping the leases.
	Close() error
}

// assignerHolder boxes the attached PartitionAssigner for atomic.Pointer.
type assignerHolder struct{ a PartitionAssigner }

// AttachPartitions attaches a (the node's partition assigner) to the node:
// the HTTP API reads partitions through it, Leave hands them off and Close
// stops them through it. At most one is attached at a time: ErrConflict
// otherwise. Detach it with DetachPartitions.
func (n *Node) AttachPartitions(a PartitionAssigner) error {
	if !n.assigner.CompareAndSwap(nil, &assignerHolder{a}) {
		return fmt.Errorf("%w: node %s already has a partition assigner", ErrConflict, n.cfg.ID)
	}
	return nil
}

// DetachPartitions detaches a if it is the attached one; else it does
// nothing.
func (n *Node) DetachPartitions(a PartitionAssigner) {
	if h := n.assigner.Load(); h != nil && h.a == a {
		n.assigner.CompareAndSwap(h, nil)
	}
}

// attached returns the attached PartitionAssigner, or nil.
func (n *Node) attached() PartitionAssigner {
	if h := n.assigner.Load(); h != nil {
		return h.a
	}
	return nil
}

// PartitionInfo is one entry of GET /v1/partitions: a partition's lease (from
// the answering node's replica), its desired owner (placement in the
// answering node's view) and its holder's own report.
type PartitionInfo struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"` // lease holder, "" if never granted
	Epoch     uint64 `json:"epoch"`
	Released  bool   `json:"released,omitempty"`
	// Desired is the owner placement wants ("" when no node may take it).
	Desired string `json:"desired"`
	// State is the holder's report (running, starting, handing_off, ...)
	// or one of unowned, released, owner_down, unreachable, unreported;
	// finished or failed when the holder reported so in Raft (JobReport).
	State    string             `json:"state"`
	Progress *PartitionProgress `json:"progress,omitempty"`
}

func (n *Node) handleLocalPartitions(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.localPartitions())
}

func (n *Node) localPartitions() []PartitionStatus {
	if a := n.attached(); a != nil {
		return a.Partitions()
	}
	return []PartitionStatus{}
}

func (n *Node) handleLeaseHistory(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "job", "partition", "limit")
	if err != nil {
		writeError(w, err)
		return
	}
	limit, _, err := uintParam(q, "limit")
	if err != nil {
		writeError(w, err)
		return
	}
	p := int64(-1)
	if s := q.Get("partition"); s != "" {
		if p, err = strconv.ParseInt(s, 10, 32); err != nil || p < 0 {
			writeError(w, fmt.Errorf("%w: ?partition=%q must be a partition number >= 0", ErrInvalid, s))
			return
		}
	}
	n.syncLocal(r.Context())
	hist := n.fsm.View().LeaseHistory(q.Get("job"), int32(p))
	if limit > 0 && uint64(len(hist)) > limit {
		hist = hist[uint64(len(hist))-limit:] // the newest limit events
	}
	writeJSON(w, http.StatusOK, hist)
}

func (n *Node) handlePartitions(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "job")
	if err != nil {
		writeError(w, err)
		return
	}
	n.syncLocal(r.Context())
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, n.Partitions(ctx, q.Get("job")))
}

// Partitions returns every partition of job (every job if ""), sorted by
// job and partition: leases from this node's replica, desired owners in
// this node's view, and the holders' reports gathered over HTTP from every
// alive member (GET /v1/local/partitions; ctx bounds the gathering).
func (n *Node) Partitions(ctx context.Context, job string) []PartitionInfo {
	v := n.fsm.View()
	members := n.members.Members()
	alive := map[string]Member{}
	var eligible []string
	for _, m := range members {
		if m.Status == StatusAlive {
			alive[m.ID] = m
		}
		if m.ID == n.cfg.ID {
			continue
		}
		if m.Placeable() {
			eligible = append(eligible, m.ID)
		}
	}
	if lm := n.members.LocalMeta(); lm.Assignable && !lm.Leaving && !lm.Stopping {
		eligible = append(eligible, n.cfg.ID)
	}
	reports := n.gatherPartitions(ctx, alive)
	a := n.attached()

	out := []PartitionInfo{}
	for _, j := range v.Jobs() {
		if job != "" && j.Name != job {
			continue
		}
		count := j.Partitions
		if a != nil && count == 0 {
			count = a.PartitionCount(j)
		}
		for _, l := range v.Leases(j.Name) {
			count = max(count, l.Partition+1)
		}
		for p := int32(0); p < count; p++ {
			info := PartitionInfo{Job: j.Name, Partition: p}
			if a != nil {
				info.Desired = a.Desired(j.Name, p, eligible)
			}
			l, ok := v.Lease(j.Name, p)
			switch {
			case !ok:
				info.State = PartitionUnowned
			case l.Released:
				info.Owner, info.Epoch, info.Released, info.State = l.Owner, l.Epoch, true, PartitionReleased
			default:
				info.Owner, info.Epoch = l.Owner, l.Epoch
				rep, answered := reports[l.Owner]
				switch {
				case alive[l.Owner].ID == "":
					info.State = PartitionOwnerDown
				case !answered:
					info.State = PartitionUnreachable
				default:
					info.State = PartitionUnreported
					if st, ok := rep[partitionKey{j.Name, p}]; ok {
						info.State, info.Progress = st.State, st.Progress
					}
				}
			}
			// The holder's report in Raft says more than a dead or
			// silent holder: a bounded partition that reached its end,
			// or one that stopped on an error.
			if ps, ok := v.PartitionState(j.Name, p); ok && ps.Epoch == info.Epoch && ps.Owner == info.Owner && ps.Revision == j.ModifyIndex &&
				(ps.State == PartitionFinished || ps.State == PartitionFailed) {
				info.State = ps.State
			}
			out = append(out, info)
		}
	}
	return out
}

// partitionKey is a job's partition.
type partitionKey struct {
	job string
	p   int32
}

// gatherPartitions asks every alive member for its local partitions; the
// map has an entry for each member that answered.
func (n *Node) gatherPartitions(ctx context.Context, alive map[string]Member) map[string]map[partitionKey]PartitionStatus {
	var mu sync.Mutex
	out := map[string]map[partitionKey]PartitionStatus{}
	add := func(id string, list []PartitionStatus) {
		m := make(map[partitionKey]PartitionStatus, len(list))
		for _, s := range list {
			m[partitionKey{s.Job, s.Partition}] = s
		}
		mu.Lock()
		out[id] = m
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for id, m := range alive {
		if id == n.cfg.ID {
			add(id, n.localPartitions())
			continue
		}
		if m.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.peerRequest(ctx, http.MethodGet, m.HTTPAddr, "/v1/local/partitions", nil)
			if err != nil {
				return
			}
			var list []PartitionStatus
			if decodeResponse(resp, &list) == nil {
				add(id, list)
			}
		}()
	}
	wg.Wait()
	return out
}
