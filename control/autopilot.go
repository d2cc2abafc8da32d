package control

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Autopilot: the leader's membership reconciliation, modelled on Consul's
// autopilot and hashicorp/raft-autopilot.
//
// # Why not hashicorp/raft-autopilot
//
// raft-autopilot was considered and not adopted. Its dead-server cleanup
// decides failure from the application's own membership view alone
// (Server.NodeStatus, which Consul fills from serf gossip) and only caps
// how many voters one round removes ((voters-1)/2, and MinQuorum): a
// leader cut off from gossip but not from Raft would still remove up to
// half of the healthy voters. Using it safely here would need a delegate
// that re-implements the Raft evidence below (FilterFailedServerRemovals),
// an RPC per server for its stats (FetchServerStats) and its own promoter,
// which is the whole of this file again plus a dependency. Its safety rules
// are kept instead: remove voters only while a quorum of healthy voters
// remains (min quorum = a majority of the voter target), at most (n-1)/2
// in one round, promote before removing, and the stabilisation time of
// non-voters.
//
// # The rule
//
// Gossip is a hint, Raft is the evidence. A server is dead only when both
// say so for Autopilot.DeadServerTimeout: its member is failed, left or
// unknown in this node's memberlist view, and the leader's heartbeats to
// it have failed (raft FailedHeartbeatObservation, nothing since its last
// contact) for as long. A server the leader heard from over Raft within
// that time is never removed, whatever gossip says. A dead voter is
// removed only if the voters left, counting only those healthy by Raft's
// evidence (heartbeats reaching them now), still form a majority of the
// voter target (Settings.VoterTarget; the current voter count when unset)
// and of the new configuration — so a leader that lost gossip, or that
// lost Raft contact with a minority, never shrinks the voter set below a
// quorum it can prove. A removal on request (Leave, eddy ctl raft remove)
// must leave a majority of the new configuration healthy, or the change
// could never commit; it is not held to the voter target, since the node
// leaves anyway and a smaller configuration stays available where the
// old one, with the node gone, would not.

// raftHealth is the leader's Raft evidence about its peers: for every
// server whose heartbeats fail, the last time the leader heard from it.
// It is fed by a raft observer; a leader change resets it (a new leader's
// replication starts with fresh contact times).
type raftHealth struct {
	once    sync.Once
	mu      sync.Mutex
	failing map[string]time.Time // server id → last contact, while heartbeats fail
}

// silentSince returns the last contact of id while the leader's
// heartbeats to it fail; ok is false when they reach it.
func (h *raftHealth) silentSince(id string) (last time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	last, ok = h.failing[id]
	return last, ok
}

// watchHeartbeats feeds n.health from raft observations until n closes.
func (n *Node) watchHeartbeats() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 1024)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	h := &n.health
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			h.mu.Lock()
			if h.failing == nil {
				h.failing = map[string]time.Time{}
			}
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				id := string(d.PeerID)
				last := d.LastContact
				if prev, ok := h.failing[id]; !ok || last.After(prev) {
					if last.IsZero() {
						last = time.Now()
					}
					h.failing[id] = last
				}
			case raft.ResumedHeartbeatObservation:
				delete(h.failing, string(d.PeerID))
			case raft.LeaderObservation:
				clear(h.failing)
			case raft.PeerObservation:
				if d.Removed {
					delete(h.failing, string(d.Peer.ID))
				}
			}
			h.mu.Unlock()
		}
	}
}

// raftHealthy reports whether the leader's heartbeats reach id (or failed
// only within the last two heartbeat timeouts: a few missed heartbeats
// are not evidence of failure). The leader itself is healthy.
func (n *Node) raftHealthy(id string, now time.Time) bool {
	if id == n.cfg.ID {
		return true
	}
	last, failing := n.health.silentSince(id)
	return !failing || now.Sub(last) < 2*n.cfg.Raft.HeartbeatTimeout
}

// raftSilentFor reports whether the leader has not heard from id over Raft
// for at least d (its heartbeats fail since).
func (n *Node) raftSilentFor(id string, d time.Duration, now time.Time) bool {
	if id == n.cfg.ID {
		return false
	}
	last, failing := n.health.silentSince(id)
	return failing && now.Sub(last) >= d
}

// quorum is the majority of n voters.
func quorum(n int) int { return n/2 + 1 }

// safeVoterRemovals returns the voters of dead (in order) that may be
// removed from the voter set voters now, at most maxRemovals of them:
// while the voters left that are healthy by Raft's evidence number at
// least minHealthy and a majority of the voters left.
func safeVoterRemovals(voters []string, dead []string, minHealthy, maxRemovals int, healthy func(id string) bool) []string {
	removed := map[string]bool{}
	healthyLeft := func() int {
		c := 0
		for _, v := range voters {
			if !removed[v] && healthy(v) {
				c++
			}
		}
		return c
	}
	var out []string
	budget := maxRemovals
	for _, id := range dead {
		if budget <= 0 {
			break
		}
		removed[id] = true
		if h := healthyLeft(); h < minHealthy || h < quorum(len(voters)-len(removed)) {
			delete(removed, id)
			continue
		}
		out = append(out, id)
		budget--
	}
	return out
}

// autopilotRemovals is safeVoterRemovals for autopilot's dead voters: a
// majority of the voter target (the voter count when unset) must stay
// healthy, and at most (voters-1)/2 go in one round (raft-autopilot's cap).
func autopilotRemovals(voters, dead []string, target int, healthy func(id string) bool) []string {
	if target <= 0 {
		target = len(voters)
	}
	return safeVoterRemovals(voters, dead, quorum(target), (len(voters)-1)/2, healthy)
}

// canRemoveVoter reports, on the leader, whether voter id may be removed on
// request: the healthy voters left must be a majority of the voters left
// (see safeVoterRemovals); non-voters can always go.
func (n *Node) canRemoveVoter(id string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	var voters []string
	isVoter := false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
			isVoter = isVoter || string(s.ID) == id
		}
	}
	if !isVoter {
		return true
	}
	now := time.Now()
	ok := safeVoterRemovals(voters, []string{id}, 0, 1, func(v string) bool { return n.raftHealthy(v, now) })
	return len(ok) == 1
}

// reconcile runs on the leader (from the control loop):
//
//  1. every alive member that is not in the Raft configuration is added as a
//     non-voter (members flagged Leaving, or removed on request in the last
//     minute, are not); a member whose Raft address changed is re-added with
//     the new address;
//  2. a server is dead when gossip (failed, left or unknown) and Raft (the
//     leader's heartbeats fail, no contact since) both say so for
//     DeadServerTimeout; a dead voter is replaced by a healthy non-voter
//     when one exists and then removed if safeVoterRemovals allows it; a
//     dead non-voter is removed;
//  3. while there are fewer voters than Settings.VoterTarget, healthy
//     non-voters are promoted.
//
// A non-voter is healthy when it has been alive for StabilizationTime and its
// applied index is within MaxTrailingLogs of the leader's last index.
func (n *Node) reconcile() {
	n.health.once.Do(func() {
		n.wg.Add(1)
		go n.watchHeartbeats()
	})
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	servers := f.Configuration().Servers
	target := n.fsm.View().Settings().VoterTarget
	if target == 0 && n.cfg.BootstrapExpect > 0 {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
		_, err := n.Apply(ctx, SetVoterTarget{Voters: n.cfg.BootstrapExpect})
		cancel()
		if err != nil {
			n.log.Warn("autopilot: set voter target", "err", err)
		} else {
			target = n.cfg.BootstrapExpect
		}
	}
	timeout := n.cfg.ApplyTimeout
	now := time.Now()
	members := n.members.Members()
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		byID[m.ID] = m
	}
	inCfg := make(map[string]raft.Server, len(servers))
	for _, s := range servers {
		inCfg[string(s.ID)] = s
	}

	// 1. Add new members as non-voters; follow address changes.
	for _, m := range members {
		if m.Status != StatusAlive || m.Leaving || m.RaftAddr == "" || m.ID == n.cfg.ID || n.isSuppressed(m) {
			continue
		}
		s, ok := inCfg[m.ID]
		var err error
		switch {
		case !ok:
			err = n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, timeout).Error()
			if err == nil {
				n.metrics.autopilot.WithLabelValues("added_nonvoter").Inc()
				n.log.Info("autopilot: added non-voter", "id", m.ID, "raft", m.RaftAddr)
			}
		case string(s.Address) != m.RaftAddr:
			if s.Suffrage == raft.Voter {
				err = n.raft.AddVoter(s.ID, raft.ServerAddress(m.RaftAddr), 0, timeout).Error()
			} else {
				err = n.raft.AddNonvoter(s.ID, raft.ServerAddress(m.RaftAddr), 0, timeout).Error()
			}
			if err == nil {
				n.log.Info("autopilot: updated raft address", "id", m.ID, "from", s.Address, "to", m.RaftAddr)
			}
		}
		if err != nil {
			n.log.Warn("autopilot: add server", "id", m.ID, "err", err)
			return
		}
	}

	// 2. Track dead servers.
	var deadVoters, deadNonvoters []string
	var candidates []Member
	voters := 0
	for _, s := range servers {
		id := string(s.ID)
		if s.Suffrage == raft.Voter {
			voters++
		}
		if id == n.cfg.ID {
			continue
		}
		m, known := byID[id]
		if known && m.Status == StatusAlive && !m.Leaving {
			delete(n.deadSince, id)
			if s.Suffrage != raft.Voter && now.Sub(m.Since) >= n.cfg.Autopilot.StabilizationTime {
				candidates = append(candidates, m)
			}
			continue
		}
		since, tracked := n.deadSince[id]
		if !tracked {
			since = now
			if known && m.Status != StatusAlive && m.Since.Before(now) {
				since = m.Since
			}
			n.deadSince[id] = since
		}
		if now.Sub(since) >= n.cfg.Autopilot.DeadServerTimeout && n.raftSilentFor(id, n.cfg.Autopilot.DeadServerTimeout, now) {
			if s.Suffrage == raft.Voter {
				deadVoters = append(deadVoters, id)
			} else {
				deadNonvoters = append(deadNonvoters, id)
			}
		}
	}
	for id := range n.deadSince {
		if _, ok := inCfg[id]; !ok {
			delete(n.deadSince, id)
		}
	}

	// 3. Replace dead voters (promote first), remove them while a quorum
	// of healthy voters stays, remove dead non-voters.
	if len(deadVoters) > 0 {
		sort.Strings(deadVoters)
		for range deadVoters {
			if c, ok := n.pickHealthy(&candidates); ok && n.promote(c) {
				voters++
			}
		}
		var current []string
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter {
					current = append(current, string(s.ID))
				}
			}
		}
		safe := autopilotRemovals(current, deadVoters, target, func(id string) bool { return n.raftHealthy(id, now) })
		if len(safe) < len(deadVoters) && !n.warnedQuorum {
			n.log.Warn("autopilot: not removing dead voters: the healthy voters left would not be a quorum of the voter target",
				"dead", deadVoters, "removable", safe, "voters", current, "voter_target", target)
			n.warnedQuorum = true
		}
		deadVoters = safe
	} else {
		n.warnedQuorum = false
	}
	for _, id := range deadVoters {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
			n.log.Warn("autopilot: remove dead voter", "id", id, "err", err)
			return
		}
		voters--
		delete(n.deadSince, id)
		n.metrics.autopilot.WithLabelValues("removed").Inc()
		n.log.Warn("autopilot: removed dead voter", "id", id, "dead_for", n.cfg.Autopilot.DeadServerTimeout)
	}
	for _, id := range deadNonvoters {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
			n.log.Warn("autopilot: remove dead non-voter", "id", id, "err", err)
			return
		}
		delete(n.deadSince, id)
		n.metrics.autopilot.WithLabelValues("removed").Inc()
		n.log.Info("autopilot: removed dead non-voter", "id", id)
	}

	// 4. Keep the voter target.
	for target > 0 && voters < target {
		c, ok := n.pickHealthy(&candidates)
		if !ok {
			break
		}
		if n.promote(c) {
			voters++
		}
	}
}

// pickHealthy removes and returns the first healthy candidate.
func (n *Node) pickHealthy(candidates *[]Member) (Member, bool) {
	last := n.raft.LastIndex()
	for len(*candidates) > 0 {
		c := (*candidates)[0]
		*candidates = (*candidates)[1:]
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		st, err := n.peerRaftStatus(ctx, c.HTTPAddr)
		cancel()
		if err != nil {
			n.log.Debug("autopilot: non-voter unreachable", "id", c.ID, "err", err)
			continue
		}
		if st.AppliedIndex+n.cfg.Autopilot.MaxTrailingLogs < last {
			n.log.Debug("autopilot: non-voter lags", "id", c.ID, "applied", st.AppliedIndex, "leader_last", last)
			continue
		}
		return c, true
	}
	return Member{}, false
}

func (n *Node) promote(m Member) bool {
	if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("autopilot: promote", "id", m.ID, "err", err)
		return false
	}
	n.metrics.autopilot.WithLabelValues("promoted").Inc()
	n.log.Info("autopilot: promoted non-voter", "id", m.ID)
	return true
}
