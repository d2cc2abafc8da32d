package actors

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

// ClusterSnapshotPrefix is the checkpoint-storage prefix under which the
// cluster Runtime of job writes its snapshots (Runtime.snapshotKey):
//
//	<job>/cluster/chk-<id, 20 digits>/p<partition, 5 digits>-e<epoch>.snap   checkpoint id
//	<job>/cluster/handoff/p<partition, 5 digits>-e<epoch>.snap              handoff of lease epoch
func ClusterSnapshotPrefix(job string) string { return job + "/cluster/" }

// ClusterSnapshotKey is one parsed key below ClusterSnapshotPrefix.
type ClusterSnapshotKey struct {
	// Checkpoint is the checkpoint id, or 0 for a handoff snapshot.
	Checkpoint uint64
	Partition  int32
	Epoch      uint64
}

// ParseClusterSnapshotKey parses a key written by the cluster Runtime of
// job; ok is false for any other key.
func ParseClusterSnapshotKey(job, key string) (k ClusterSnapshotKey, ok bool) {
	rest, found := strings.CutPrefix(key, ClusterSnapshotPrefix(job))
	if !found {
		return k, false
	}
	dir, file, found := strings.Cut(rest, "/")
	if !found {
		return k, false
	}
	if dir != "handoff" {
		if _, err := fmt.Sscanf(dir, "chk-%d", &k.Checkpoint); err != nil || k.Checkpoint == 0 {
			return k, false
		}
	}
	var tail string
	if n, _ := fmt.Sscanf(file, "p%d-e%d%s", &k.Partition, &k.Epoch, &tail); n != 3 || tail != ".snap" {
		return k, false
	}
	return k, true
}

// DeleteClusterSnapshots deletes from st the snapshots of job's cluster
// Runtimes that are no longer needed: a checkpoint snapshot when
// keepCheckpoint(id) is false, a handoff snapshot when keepHandoff(partition,
// epoch) is false. Other keys are left alone. It returns how many objects it
// deleted; errors of single deletes are joined and the rest goes on.
// The caller decides what is needed from the control plane's records (the
// retained checkpoints, the lease handoff points) and must keep what may be
// in flight: the newest checkpoint's uploads, the handoff of the current
// lease epoch.
func DeleteClusterSnapshots(ctx context.Context, st *checkpoint.Storage, job string, keepCheckpoint func(id uint64) bool, keepHandoff func(p int32, epoch uint64) bool) (int, error) {
	keys, err := st.List(ctx, ClusterSnapshotPrefix(job))
	if err != nil {
		return 0, err
	}
	deleted := 0
	var errs []error
	for _, key := range keys {
		k, ok := ParseClusterSnapshotKey(job, key)
		if !ok {
			continue
		}
		if k.Checkpoint > 0 && keepCheckpoint(k.Checkpoint) || k.Checkpoint == 0 && keepHandoff(k.Partition, k.Epoch) {
			continue
		}
		if err := st.Delete(ctx, key); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
	}
	return deleted, errors.Join(errs...)
}
