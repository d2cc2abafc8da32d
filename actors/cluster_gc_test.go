package actors

import (
	"context"
	"reflect"
	"testing"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

func TestParseClusterSnapshotKey(t *testing.T) {
	for _, c := range []struct {
		key  string
		want ClusterSnapshotKey
		ok   bool
	}{
		{"j/cluster/chk-00000000000000000012/p00003-e7.snap", ClusterSnapshotKey{Checkpoint: 12, Partition: 3, Epoch: 7}, true},
		{"j/cluster/handoff/p00011-e2.snap", ClusterSnapshotKey{Partition: 11, Epoch: 2}, true},
		{"j/cluster/handoff/p00011-e2.snap.tmp", ClusterSnapshotKey{}, false},
		{"j/cluster/other/p00011-e2.snap", ClusterSnapshotKey{}, false},
		{"j2/cluster/handoff/p00011-e2.snap", ClusterSnapshotKey{}, false},
		{"j/chk-00000000000000000012/p00003-e7.snap", ClusterSnapshotKey{}, false},
	} {
		got, ok := ParseClusterSnapshotKey("j", c.key)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("ParseClusterSnapshotKey(%q) = %+v, %v; want %+v, %v", c.key, got, ok, c.want, c.ok)
		}
	}
	// The keys the cluster Runtime writes parse back.
	r := &Runtime{j: &Job{cfg: Config{Name: "j"}}}
	if k, ok := ParseClusterSnapshotKey("j", r.snapshotKey(4, 9, 17, false)); !ok || k != (ClusterSnapshotKey{Checkpoint: 17, Partition: 4, Epoch: 9}) {
		t.Errorf("checkpoint key %q parsed as %+v %v", r.snapshotKey(4, 9, 17, false), k, ok)
	}
	if k, ok := ParseClusterSnapshotKey("j", r.snapshotKey(4, 9, 0, true)); !ok || k != (ClusterSnapshotKey{Partition: 4, Epoch: 9}) {
		t.Errorf("handoff key %q parsed as %+v %v", r.snapshotKey(4, 9, 0, true), k, ok)
	}
}

func TestDeleteClusterSnapshots(t *testing.T) {
	ctx := context.Background()
	st, err := checkpoint.OpenStorage(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := []string{
		"j/cluster/chk-00000000000000000001/p00000-e1.snap",
		"j/cluster/chk-00000000000000000002/p00000-e1.snap",
		"j/cluster/chk-00000000000000000003/p00000-e1.snap",
		"j/cluster/handoff/p00000-e1.snap",
		"j/cluster/handoff/p00000-e2.snap",
		"j/cluster/handoff/p00001-e5.snap",
		"j/cluster/notes.txt",
		"other/cluster/chk-00000000000000000001/p00000-e1.snap",
	}
	for _, k := range keys {
		if err := st.WriteAll(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	n, err := DeleteClusterSnapshots(ctx, st, "j",
		func(id uint64) bool { return id != 2 },
		func(p int32, epoch uint64) bool { return p == 1 || epoch == 2 })
	if err != nil || n != 2 {
		t.Fatalf("deleted %d, %v; want 2", n, err)
	}
	left, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{keys[0], keys[2], keys[4], keys[5], keys[6], keys[7]}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left %v\nwant %v", left, want)
	}
}
