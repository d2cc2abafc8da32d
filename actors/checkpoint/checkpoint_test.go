package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"
)

type rec struct {
	kind      byte
	id, value string
}

func writeSnapshot(t testing.TB, h SnapshotHeader, recs []rec) ([]byte, SnapshotInfo) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r.kind, []byte(r.id), []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != int64(buf.Len()) {
		t.Fatalf("info says %d bytes, wrote %d", info.Bytes, buf.Len())
	}
	return buf.Bytes(), info
}

func readAll(b []byte) (SnapshotHeader, []rec, SnapshotInfo, error) {
	var h SnapshotHeader
	var recs []rec
	info, err := ReadSnapshot(bytes.NewReader(b),
		func(hh SnapshotHeader) error { h = hh; return nil },
		func(kind byte, id, value []byte) error {
			recs = append(recs, rec{kind, string(id), string(value)})
			return nil
		})
	return h, recs, info, err
}

func randomRecords(rng *rand.Rand) []rec {
	recs := make([]rec, rng.IntN(200))
	for i := range recs {
		id := make([]byte, rng.IntN(20))
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		val := make([]byte, rng.IntN(300))
		for j := range val {
			val[j] = byte(rng.IntN(256))
		}
		recs[i] = rec{byte(1 + rng.IntN(255)), string(id), string(val)}
	}
	return recs
}

func TestSnapshotRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed.For(t), 1))
	for it := 0; it < 50; it++ {
		h := SnapshotHeader{Job: "iot-work", Partition: rng.Int32N(100), Checkpoint: rng.Uint64N(1e9), Offset: rng.Int64(),
			End: -1, State: []byte{1, 2, 3}, Operators: "tumbling 1m", CreatedMs: 1}
		if it%2 == 1 { // a handoff snapshot
			h.Checkpoint, h.HandoffEpoch = 0, 1+rng.Uint64N(1e9)
		}
		recs := randomRecords(rng)
		b, info := writeSnapshot(t, h, recs)
		gh, got, rinfo, err := readAll(b)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(gh) != fmt.Sprint(h) || !slices.Equal(got, recs) {
			t.Fatalf("round trip differs: header %+v, %d records, want %+v, %d", gh, len(got), h, len(recs))
		}
		if rinfo != info || info.Records != int64(len(recs)) {
			t.Fatalf("read info %+v, write info %+v", rinfo, info)
		}
	}
}

// TestSnapshotHeaderOnDisk: the header keeps the one int64 "checkpoint"
// field eddy always wrote (the id, or minus the epoch of a handoff), so
// snapshots written before the id became a uint64 load, and ids or epochs
// of 2^63 and above are refused rather than written negative.
func TestSnapshotHeaderOnDisk(t *testing.T) {
	for _, tc := range []struct {
		disk string
		h    SnapshotHeader
	}{
		{`{"job":"j","partition":1,"checkpoint":42,"offset":7,"end":-1,"state":null,"operators":"x","created_ms":0}`, SnapshotHeader{Job: "j", Partition: 1, Checkpoint: 42, Offset: 7, End: -1, Operators: "x"}},
		{`{"job":"j","partition":1,"checkpoint":-3,"offset":7,"end":-1,"state":null,"operators":"x","created_ms":0}`, SnapshotHeader{Job: "j", Partition: 1, HandoffEpoch: 3, Offset: 7, End: -1, Operators: "x"}},
	} {
		var h SnapshotHeader
		if err := json.Unmarshal([]byte(tc.disk), &h); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(h) != fmt.Sprint(tc.h) {
			t.Errorf("%s loads as %+v, want %+v", tc.disk, h, tc.h)
		}
		b, err := json.Marshal(tc.h)
		if err != nil {
			t.Fatal(err)
		}
		var want, got map[string]any
		if err := json.Unmarshal([]byte(tc.disk), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%+v is written as %s, want %s", tc.h, b, tc.disk)
		}
	}
	for _, h := range []SnapshotHeader{{Checkpoint: 1 << 63}, {HandoffEpoch: 1 << 63}, {Checkpoint: 1, HandoffEpoch: 1}} {
		if b, err := json.Marshal(h); err == nil {
			t.Errorf("%+v is written as %s, want an error", h, b)
		}
	}
}

// TestSnapshotCorruptionDetected truncates a snapshot at every length and
// flips every bit of it: each read must fail with ErrCorrupt.
func TestSnapshotCorruptionDetected(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed.For(t), 2))
	h := SnapshotHeader{Job: "j", Partition: 3, Checkpoint: 7, Offset: 100, End: 200, State: []byte{1}, Operators: "x"}
	recs := []rec{{'d', "dev1", "state-1"}, {'d', "dev2", strings.Repeat("s", 200)}, {'m', "", "meta"}}
	b, _ := writeSnapshot(t, h, recs)
	for n := 0; n < len(b); n++ {
		if _, _, _, err := readAll(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: err %v, want ErrCorrupt", n, len(b), err)
		}
	}
	if _, _, _, err := readAll(append(slices.Clone(b), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("extra byte: %v", err)
	}
	for i := 0; i < len(b); i++ {
		for bit := 0; bit < 8; bit++ {
			c := slices.Clone(b)
			c[i] ^= 1 << bit
			if _, _, _, err := readAll(c); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: err %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	// Random multi-byte damage too.
	for it := 0; it < 500; it++ {
		c := slices.Clone(b)
		for k := 0; k < 1+rng.IntN(8); k++ {
			c[rng.IntN(len(c))] = byte(rng.IntN(256))
		}
		if bytes.Equal(c, b) {
			continue
		}
		if _, _, _, err := readAll(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("damaged snapshot read without ErrCorrupt: %v", err)
		}
	}
}

func TestSnapshotCallbackErrorsPassThrough(t *testing.T) {
	b, _ := writeSnapshot(t, SnapshotHeader{Job: "j"}, []rec{{'d', "a", "b"}})
	stop := errors.New("wrong job")
	if _, err := ReadSnapshot(bytes.NewReader(b), func(SnapshotHeader) error { return stop }, nil); err != stop {
		t.Fatalf("header error: %v", err)
	}
	if _, err := ReadSnapshot(bytes.NewReader(b), func(SnapshotHeader) error { return nil },
		func(byte, []byte, []byte) error { return stop }); err != stop {
		t.Fatalf("record error: %v", err)
	}
	var buf bytes.Buffer
	w, _ := NewSnapshotWriter(&buf, SnapshotHeader{})
	if err := w.Add(0, nil, nil); err == nil {
		t.Fatal("kind 0 accepted")
	}
}

func TestManifestRoundTripAndCorruption(t *testing.T) {
	m := &Manifest{Version: 1, Job: "iot-work", ID: 42, Kind: KindCheckpoint, StartedMs: 5, CompletedMs: 6, Transactional: true,
		Partitions: []PartitionAck{{Partition: 0, Offset: 10, End: -1, Snapshot: "iot-work/chk-00000000000000000042/p-00000.snap", Bytes: 99, CRC32C: 0xdeadbeef}}}
	b, err := MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalManifest(b)
	if err != nil || fmt.Sprint(*got) != fmt.Sprint(*m) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if m.Name() != "chk-00000000000000000042" || m.Bytes() != 99 {
		t.Fatalf("name %s bytes %d", m.Name(), m.Bytes())
	}
	for n := 0; n < len(b); n++ {
		if _, err := UnmarshalManifest(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("manifest truncated to %d: %v", n, err)
		}
	}
	for i := 0; i < len(b); i++ {
		c := slices.Clone(b)
		c[i] ^= 0x10
		if m2, err := UnmarshalManifest(c); !errors.Is(err, ErrCorrupt) {
			// A flip in the header line's padding can leave it valid only
			// if it changes nothing the manifest means.
			if err != nil || fmt.Sprint(*m2) != fmt.Sprint(*m) {
				t.Fatalf("byte %d flipped: %v", i, err)
			}
		}
	}
}

func TestParseDirName(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		id   uint64
		ok   bool
	}{
		{"chk-00000000000000000001", KindCheckpoint, 1, true},
		{"sp-00000000000000000042", KindSavepoint, 42, true},
		{"chk-1", "", 0, false},
		{"chk-00000000000000000000", "", 0, false},
		{"chk-0000000000000000001x", "", 0, false},
		{"p-00001.snap", "", 0, false},
	} {
		k, id, ok := parseDirName(tc.name)
		if k != tc.kind || id != tc.id || ok != tc.ok {
			t.Errorf("parseDirName(%q) = %q %d %v", tc.name, k, id, ok)
		}
		if ok && dirName(k, id) != tc.name {
			t.Errorf("dirName(%q, %d) = %q", k, id, dirName(k, id))
		}
	}
}

func TestOpenStorageURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		url  string
		want string // error substring; "" = ok
	}{
		{"file://" + dir + "/ckpt", ""},
		{filepath.Join(dir, "plain"), ""},
		{"mem://", ""},
		{"s3://my-bucket/eddy/checkpoints?region=eu-west-1", ""},
		{"s3://my-bucket?region=eu-west-1&endpoint=http://127.0.0.1:9000&use_path_style=true", ""},
		{"", "empty"},
		{"s3:///prefix", "need a bucket"},
		{"file://relative/dir", "absolute path"},
		{"gs://bucket", "unknown scheme"},
		{"s3://b?ssetype=bogus", "ssetype"},
	} {
		st, err := OpenStorage(ctx, tc.url)
		if tc.want == "" {
			if err != nil {
				t.Errorf("OpenStorage(%q): %v", tc.url, err)
				continue
			}
			st.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenStorage(%q) = %v, want an error with %q", tc.url, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ckpt")); err != nil {
		t.Errorf("file storage directory not created: %v", err)
	}
}

func TestStorageFile(t *testing.T) {
	ctx := context.Background()
	st, err := OpenStorage(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.WriteAll(ctx, "job/chk-1/a", []byte("A")); err != nil {
		t.Fatal(err)
	}
	w, err := st.NewWriter(ctx, "job/chk-1/b")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	// Not visible before Close.
	if ok, _ := st.Exists(ctx, "job/chk-1/b"); ok {
		t.Fatal("object visible before its writer closed")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Size(ctx, "job/chk-1/b"); err != nil || n != 7 {
		t.Fatalf("size %d %v", n, err)
	}
	if _, err := st.ReadAll(ctx, "job/none"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing object: %v", err)
	}
	if err := st.Delete(ctx, "job/none"); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
	dirs, err := st.ListDirs(ctx, "job/")
	if err != nil || !slices.Equal(dirs, []string{"chk-1"}) {
		t.Fatalf("dirs %v %v", dirs, err)
	}
	if err := st.Copy(ctx, "job/chk-2/a", "job/chk-1/a"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeletePrefix(ctx, "job/chk-1/"); err != nil {
		t.Fatal(err)
	}
	keys, _ := st.List(ctx, "job/")
	if !slices.Equal(keys, []string{"job/chk-2/a"}) {
		t.Fatalf("keys after DeletePrefix: %v", keys)
	}
}

// newLocal returns the coordinator of eddy run over cat.
func newLocal(t *testing.T, cat *Catalog, parts []int32, retain int, transactional bool) *CheckpointCoordinator {
	t.Helper()
	ids, err := NewStorageIDCounter(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCheckpointCoordinator(CoordinatorConfig{
		Job: cat.Job(), Partitions: parts, Interval: time.Second, AckTimeout: time.Minute, Retain: retain, Transactional: transactional,
	}, ids, NewStorageCheckpointStore(cat, parts), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func begin(t *testing.T, c *CheckpointCoordinator, kind Kind) uint64 {
	t.Helper()
	id, err := c.Trigger(context.Background(), kind, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ackAll writes and acks the snapshots of pending checkpoint id for
// partitions ps and returns the manifest the last ack completed.
func ackAll(t *testing.T, c *CheckpointCoordinator, cat *Catalog, id uint64, ps []int32) *Manifest {
	t.Helper()
	ctx := context.Background()
	kind := c.Pending().Kind
	var m *Manifest
	for i, p := range ps {
		key := cat.SnapshotKey(kind, id, p)
		if err := cat.st.WriteAll(ctx, key, []byte("snap")); err != nil {
			t.Fatal(err)
		}
		got, err := c.Ack(ctx, id, PartitionAck{Partition: p, Offset: int64(id) * 10, Snapshot: key, Bytes: 4}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != (i == len(ps)-1) {
			t.Fatalf("ack %d of %d returned manifest %v", i+1, len(ps), got)
		}
		m = got
	}
	return m
}

// TestStorageRetentionAndAdopt: the storage side of eddy run's
// coordinator: retention of manifests and of incomplete directories, id
// continuation, DeleteIncomplete and Adopt (the protocol itself is the
// checkpointtest table).
func TestStorageRetentionAndAdopt(t *testing.T) {
	ctx := context.Background()
	st, _ := OpenStorage(ctx, "mem://")
	cat := NewCatalog(st, "iot work") // escaped in keys
	parts := []int32{2, 0, 1}
	l := newLocal(t, cat, parts, 2, false)
	sorted := []int32{0, 1, 2}

	id1 := begin(t, l, KindCheckpoint)
	m1 := ackAll(t, l, cat, id1, sorted)
	if m1.ID != id1 || len(m1.Partitions) != 3 || m1.Partitions[0].Partition != 0 {
		t.Fatalf("manifest %+v", m1)
	}
	// An aborted checkpoint's directory is deleted by Catalog.Delete.
	id2 := begin(t, l, KindCheckpoint)
	key := cat.SnapshotKey(KindCheckpoint, id2, 1)
	st.WriteAll(ctx, key, []byte("x"))
	if l.Abort(id2, false) == nil {
		t.Fatalf("Abort(%d) found nothing pending", id2)
	}
	if err := cat.Delete(ctx, KindCheckpoint, id2); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.Exists(ctx, key); ok {
		t.Fatal("aborted checkpoint's snapshot left behind")
	}

	sp := begin(t, l, KindSavepoint)
	msp := ackAll(t, l, cat, sp, sorted)
	var ids []uint64
	for range 3 {
		id := begin(t, l, KindCheckpoint)
		ackAll(t, l, cat, id, sorted)
		ids = append(ids, id)
	}
	// An incomplete newer one (in progress) and an incomplete older one.
	inProgress := begin(t, l, KindCheckpoint)
	st.WriteAll(ctx, cat.SnapshotKey(KindCheckpoint, inProgress, 0), []byte("x"))
	st.WriteAll(ctx, cat.SnapshotKey(KindCheckpoint, id1+1, 0), []byte("abandoned")) // id2 again: incomplete, older

	deleted, err := l.Subsume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{dirName(KindCheckpoint, id1), dirName(KindCheckpoint, id2), dirName(KindCheckpoint, ids[0])}
	if !slices.Equal(deleted, want) {
		t.Fatalf("Subsume deleted %v, want %v (keep 2 newest, the savepoint and the in-progress one)", deleted, want)
	}
	complete, _ := cat.Complete(ctx)
	var got []uint64
	for _, m := range complete {
		got = append(got, m.ID)
	}
	if !slices.Equal(got, []uint64{ids[2], ids[1], sp}) {
		t.Fatalf("complete after Subsume: %v", got)
	}

	// A new coordinator continues the id sequence; DeleteIncomplete
	// removes the in-progress one a crash left.
	ids2, _ := NewStorageIDCounter(ctx, cat)
	if d, err := cat.DeleteIncomplete(ctx); err != nil || !slices.Equal(d, []string{dirName(KindCheckpoint, inProgress)}) {
		t.Fatalf("DeleteIncomplete: %v %v", d, err)
	}
	if id, _ := ids2.Next(ctx); id != inProgress+1 {
		t.Fatalf("next id %d, want %d", id, inProgress+1)
	}
	ids2.Reserve(inProgress + 5) // a transactional sink committed it
	nid, _ := ids2.Next(ctx)
	if nid != inProgress+6 {
		t.Fatalf("next id after Reserve(%d): %d", inProgress+5, nid)
	}

	// Adopt copies the savepoint into a new checkpoint.
	am, err := cat.Adopt(ctx, msp, nid)
	if err != nil {
		t.Fatal(err)
	}
	if am.RestoredFrom != msp.Name() || am.Kind != KindCheckpoint || am.ID != nid {
		t.Fatalf("adopted %+v", am)
	}
	if b, err := st.ReadAll(ctx, am.Partitions[2].Snapshot); err != nil || string(b) != "snap" {
		t.Fatalf("adopted snapshot: %q %v", b, err)
	}
	if newest, _ := cat.Complete(ctx); newest[0].ID != nid {
		t.Fatalf("newest complete is %d, want the adopted %d", newest[0].ID, nid)
	}
	if sp2, err := cat.Savepoint(ctx, sp); err != nil || sp2.ID != sp {
		t.Fatalf("Savepoint(%d): %v", sp, err)
	}
	if _, err := cat.Savepoint(ctx, 999); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing savepoint: %v", err)
	}
}

// TestTransactionalRestorePoints: with transactional sinks a partition may
// restore only from checkpoints whose commit it recorded, and retention
// keeps each partition's newest such checkpoint.
func TestTransactionalRestorePoints(t *testing.T) {
	ctx := context.Background()
	st, _ := OpenStorage(ctx, "mem://")
	cat := NewCatalog(st, "j")
	parts := []int32{0, 1}
	l := newLocal(t, cat, parts, 1, true)
	a := begin(t, l, KindCheckpoint)
	ma := ackAll(t, l, cat, a, parts)
	if !ma.Transactional {
		t.Fatalf("manifest %+v of a transactional job", ma)
	}
	cat.MarkCommitted(ctx, KindCheckpoint, a, 0)
	cat.MarkCommitted(ctx, KindCheckpoint, a, 1)
	b := begin(t, l, KindCheckpoint)
	mb := ackAll(t, l, cat, b, parts)
	cat.MarkCommitted(ctx, KindCheckpoint, b, 0) // partition 1 died before committing b
	for _, tc := range []struct {
		m    *Manifest
		p    int32
		want bool
	}{{ma, 0, true}, {ma, 1, true}, {mb, 0, true}, {mb, 1, false}} {
		if ok, err := cat.Committed(ctx, tc.m, tc.p); err != nil || ok != tc.want {
			t.Errorf("Committed(%d, %d) = %v %v, want %v", tc.m.ID, tc.p, ok, err, tc.want)
		}
	}
	deleted, err := l.Subsume(ctx)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("Subsume deleted %v (%v); checkpoint %d is partition 1's restore point", deleted, err, a)
	}
	cat.MarkCommitted(ctx, KindCheckpoint, b, 1)
	deleted, _ = l.Subsume(ctx)
	if !slices.Equal(deleted, []string{dirName(KindCheckpoint, a)}) {
		t.Fatalf("Subsume deleted %v, want %d once both committed %d", deleted, a, b)
	}
}

func TestCatalogSkipsCorruptManifest(t *testing.T) {
	ctx := context.Background()
	st, _ := OpenStorage(ctx, "mem://")
	cat := NewCatalog(st, "j")
	l := newLocal(t, cat, []int32{0}, 0, false)
	a := begin(t, l, KindCheckpoint)
	ackAll(t, l, cat, a, []int32{0})
	b := begin(t, l, KindCheckpoint)
	ackAll(t, l, cat, b, []int32{0})
	key := cat.manifestKey(KindCheckpoint, b)
	raw, _ := st.ReadAll(ctx, key)
	raw[len(raw)-3] ^= 1
	st.WriteAll(ctx, key, raw)
	es, _ := cat.List(ctx)
	if len(es) != 2 || es[1].Manifest != nil || !errors.Is(es[1].Err, ErrCorrupt) {
		t.Fatalf("entries %+v", es)
	}
	complete, _ := cat.Complete(ctx)
	if len(complete) != 1 || complete[0].ID != a {
		t.Fatalf("complete %v, want only %d", complete, a)
	}
}

// TestManifestWrittenBeforeLoads decodes a manifest as eddy wrote it when
// PartitionAck.Epoch was an int64 (the local mode's start time in Unix ms):
// the JSON is the same, so it loads with the uint64 epoch.
func TestManifestWrittenBeforeLoads(t *testing.T) {
	js := []byte(`{
  "version": 1,
  "job": "iot-work",
  "id": 7,
  "kind": "savepoint",
  "started_ms": 1764748800000,
  "completed_ms": 1764748800123,
  "partitions": [
    {
      "partition": 3,
      "epoch": 1764748799000,
      "offset": 120,
      "end": -1,
      "snapshot": "iot-work/sp-00000000000000000007/p-00003.snap",
      "bytes": 99,
      "crc32c": 3735928559,
      "devices": 4,
      "watermark": 1764748790000
    }
  ]
}
`)
	b := append([]byte(fmt.Sprintf("eddy-manifest 1 %08x %d\n", crc32.Checksum(js, castagnoli), len(js))), js...)
	m, err := UnmarshalManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	ack, ok := m.Ack(3)
	if m.ID != 7 || m.Kind != KindSavepoint || !ok || ack.Epoch != 1764748799000 || ack.Offset != 120 || ack.End != -1 {
		t.Fatalf("decoded %+v, ack %+v", m, ack)
	}
}
