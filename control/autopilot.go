package control

import (
	"context"
	"time"

	"github.com/eddy-iot/eddy/cluster"
	"github.com/hashicorp/raft"
)

// reconcile runs on the leader (from the control loop). Modelled on Consul's
// leader reconciliation and autopilot:
//
//  1. every alive member that is not in the Raft configuration is added as a
//     non-voter (members flagged Leaving, or removed on request in the last
//     minute, are not); a member whose Raft address changed is re-added with
//     the new address;
//  2. a server that has been failed or left (or unknown) in the membership
//     view for DeadServerTimeout is dead: a dead voter is replaced by a
//     healthy non-voter when one exists and then removed; a dead non-voter
//     is removed;
//  3. while there are fewer voters than Settings.VoterTarget, healthy
//     non-voters are promoted.
//
// A non-voter is healthy when it has been alive for StabilizationTime and its
// applied index is within MaxTrailingLogs of the leader's last index.
func (n *Node) reconcile() {
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
	byID := make(map[string]cluster.Member, len(members))
	for _, m := range members {
		byID[m.ID] = m
	}
	inCfg := make(map[string]raft.Server, len(servers))
	for _, s := range servers {
		inCfg[string(s.ID)] = s
	}

	// 1. Add new members as non-voters; follow address changes.
	for _, m := range members {
		if m.Status != cluster.StatusAlive || m.Leaving || m.RaftAddr == "" || m.ID == n.cfg.ID || n.isSuppressed(m.ID) {
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
	var candidates []cluster.Member
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
		if known && m.Status == cluster.StatusAlive && !m.Leaving {
			delete(n.deadSince, id)
			if s.Suffrage != raft.Voter && now.Sub(m.Since) >= n.cfg.Autopilot.StabilizationTime {
				candidates = append(candidates, m)
			}
			continue
		}
		since, tracked := n.deadSince[id]
		if !tracked {
			since = now
			if known && m.Status != cluster.StatusAlive && m.Since.Before(now) {
				since = m.Since
			}
			n.deadSince[id] = since
		}
		if now.Sub(since) >= n.cfg.Autopilot.DeadServerTimeout {
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

	// 3. Replace dead voters, remove dead non-voters.
	for _, id := range deadVoters {
		if c, ok := n.pickHealthy(&candidates); ok {
			if n.promote(c) {
				voters++
			}
		}
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
func (n *Node) pickHealthy(candidates *[]cluster.Member) (cluster.Member, bool) {
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
	return cluster.Member{}, false
}

func (n *Node) promote(m cluster.Member) bool {
	if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("autopilot: promote", "id", m.ID, "err", err)
		return false
	}
	n.metrics.autopilot.WithLabelValues("promoted").Inc()
	n.log.Info("autopilot: promoted non-voter", "id", m.ID)
	return true
}
