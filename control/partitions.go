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
	if a := n.assigner.Load(); a != nil {
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

	out := []PartitionInfo{}
	for _, j := range v.Jobs() {
		if job != "" && j.Name != job {
			continue
		}
		count := j.Partitions
		if a := n.assigner.Load(); a != nil && count == 0 {
			count = a.PartitionCount(j)
		}
		for _, l := range v.Leases(j.Name) {
			count = max(count, l.Partition+1)
		}
		for p := int32(0); p < count; p++ {
			info := PartitionInfo{Job: j.Name, Partition: p, Desired: Owner(PartitionKey(j.Name, p), eligible)}
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
					if st, ok := rep[pkey{j.Name, p}]; ok {
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

// gatherPartitions asks every alive member for its local partitions; the
// map has an entry for each member that answered.
func (n *Node) gatherPartitions(ctx context.Context, alive map[string]Member) map[string]map[pkey]PartitionStatus {
	var mu sync.Mutex
	out := map[string]map[pkey]PartitionStatus{}
	add := func(id string, list []PartitionStatus) {
		m := make(map[pkey]PartitionStatus, len(list))
		for _, s := range list {
			m[pkey{s.Job, s.Partition}] = s
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
