package virtual

import (
	"time"

	"github.com/eddy-iot/eddy/cluster/assign"
	"github.com/eddy-iot/eddy/control"
)

// ViewLeases is the LeaseTable of a control node: the lease table of the
// latest local Raft view (View is usually node.FSM().View). A released
// lease (handed off, not yet acquired again) has no holder.
type ViewLeases struct {
	View func() control.View
}

// Owner implements LeaseTable.
func (l ViewLeases) Owner(job string, partition int) (string, uint64, bool) {
	ls, ok := l.View().Lease(job, int32(partition))
	if !ok || ls.Released || ls.Owner == "" {
		return "", 0, false
	}
	return ls.Owner, ls.Epoch, true
}

// ProgressLocal is the Local of an assign.ProgressSource (the partition
// runner of cluster/jobs).
type ProgressLocal struct {
	Source assign.ProgressSource
}

// Progress implements Local.
func (l ProgressLocal) Progress(job string, partition int) (Progress, bool) {
	p, ok := l.Source.PartitionProgress(job, int32(partition))
	if !ok {
		return Progress{}, false
	}
	out := Progress{Offset: p.Offset, Lag: p.Lag}
	if p.WatermarkMs != 0 {
		out.Watermark = time.UnixMilli(p.WatermarkMs).UTC()
	}
	return out, true
}

// AssignerLocal is the Local of a control node's partition assigner
// (Partitions is usually svc.Assigner().Partitions, svc a cluster/jobs
// Service): a partition runs here when the assigner reports it running
// with progress.
type AssignerLocal struct {
	Partitions func() []control.PartitionStatus
}

// Progress implements Local.
func (l AssignerLocal) Progress(job string, partition int) (Progress, bool) {
	for _, ps := range l.Partitions() {
		if ps.Job != job || int(ps.Partition) != partition {
			continue
		}
		if ps.State != control.PartitionRunning || ps.Progress == nil {
			return Progress{}, false
		}
		return ProgressLocal{Source: progressOf{*ps.Progress}}.Progress(job, partition)
	}
	return Progress{}, false
}

type progressOf struct{ p control.PartitionProgress }

func (s progressOf) PartitionProgress(string, int32) (control.PartitionProgress, bool) {
	return s.p, true
}
