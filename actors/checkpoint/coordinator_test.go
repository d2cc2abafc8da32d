package checkpoint_test

import (
	"context"
	"testing"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/checkpoint/checkpointtest"
)

// TestCoordinatorOnStorage runs the coordinator's table over the ports of
// eddy run: ids from and manifests in checkpoint storage (the cluster runs
// the same table over its Raft ports, in package control).
func TestCoordinatorOnStorage(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) func() checkpointtest.Ports {
		ctx := context.Background()
		st, err := checkpoint.OpenStorage(ctx, "mem://")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cat := checkpoint.NewCatalog(st, checkpointtest.Job)
		return func() checkpointtest.Ports {
			ids, err := checkpoint.NewStorageIDCounter(ctx, cat)
			if err != nil {
				t.Fatal(err)
			}
			return checkpointtest.Ports{
				IDs:   ids,
				Store: checkpoint.NewStorageCheckpointStore(cat, []int32{0, 1, 2}),
				Upload: func(t *testing.T, kind checkpoint.Kind, id uint64, part int32) string {
					key := cat.SnapshotKey(kind, id, part)
					if err := st.WriteAll(ctx, key, []byte("snap")); err != nil {
						t.Fatal(err)
					}
					return key
				},
			}
		}
	})
}
