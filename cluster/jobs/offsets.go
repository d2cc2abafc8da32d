package jobs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/internal/promreg"
)

// groupOffsets is the offset committer of one job on the leader.
type groupOffsets struct {
	modify uint64 // the job revision c was made for
	c      *actors.OffsetCommitter
	// sent is the CompleteIndex of the newest checkpoint handed to c (Raft
	// indexes only grow, also across a deletion and re-creation of the
	// job, when checkpoint ids start again).
	sent uint64
}

// commitOffsets, on the Raft leader, commits the source offsets of every
// job's newest complete checkpoint to the job's Kafka consumer group
// (actors.OffsetCommitter; informational, for lag tools).
//
// The leader commits, not the partition holders: the FSM's complete
// checkpoint holds every partition's acked resume offset, so one
// OffsetCommit request per completed checkpoint carries all partitions,
// exactly the offsets a restore from it would use, and the group never
// mixes partitions of different checkpoints (or a holder's offset that no
// checkpoint covers yet). A holder-side commit would need one request per
// partition and would race with handoffs. A leader change may commit the
// newest checkpoint a second time, or briefly let an old leader's late
// commit overwrite a newer one; the next checkpoint corrects either, and
// nothing reads these offsets back.
func (s *Service) commitOffsets(view control.View) {
	for _, j := range view.Jobs() {
		cp, ok := view.LastCompleteCheckpoint(j.Name)
		if !ok {
			continue
		}
		g := s.offsets[j.Name]
		if g == nil || g.modify != j.ModifyIndex {
			cfg, _, err := s.runner.jobConfig(j)
			if err != nil {
				continue
			}
			c, err := actors.NewOffsetCommitter(cfg, s.metrics.offsetCommits.MustCurryWith(prometheus.Labels{promreg.JobLabel: j.Name}), s.log.With("job", j.Name))
			if err != nil {
				continue // Validate refused the spec already; nothing to commit with
			}
			sent := uint64(0)
			if g != nil {
				s.closeOffsetsLater(g.c)
				sent = g.sent
			}
			g = &groupOffsets{modify: j.ModifyIndex, c: c, sent: sent}
			s.offsets[j.Name] = g
		}
		if cp.CompleteIndex <= g.sent {
			continue
		}
		g.sent = cp.CompleteIndex
		offsets := make(map[int32]int64, len(cp.Acks))
		for _, a := range cp.Acks {
			offsets[a.Partition] = a.Offset
		}
		g.c.Submit(cp.ID, offsets) // nil c (group_id "-"): no-op
	}
	for name, g := range s.offsets {
		if _, ok := view.Job(name); !ok {
			s.closeOffsetsLater(g.c)
			delete(s.offsets, name)
		}
	}
}

// closeOffsets closes every offset committer (their last commits go out).
func (s *Service) closeOffsets() {
	for name, g := range s.offsets {
		g.c.Close()
		delete(s.offsets, name)
	}
}

// closeOffsetsLater closes c without holding up the coordinator loop (its
// last commit may wait for an unreachable broker).
func (s *Service) closeOffsetsLater(c *actors.OffsetCommitter) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.Close()
	}()
}
