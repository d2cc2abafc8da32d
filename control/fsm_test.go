package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/seed"

	"github.com/hashicorp/raft"
)

// fsmApplier feeds commands to an FSM with increasing indexes, as Raft would.
type fsmApplier struct {
	t     *testing.T
	fsm   *FSM
	index uint64
	// at is the AppendedAt of the logs applied (zero: unknown).
	at time.Time
}

func newApplier(t *testing.T) *fsmApplier {
	return &fsmApplier{t: t, fsm: NewFSM(nil)}
}

func (a *fsmApplier) apply(cmd Command) (Result, error) {
	a.t.Helper()
	data, err := EncodeCommand(cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	resp := a.fsm.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: a.at}).(*applyResponse)
	return resp.Result, resp.Err
}

func (a *fsmApplier) must(cmd Command) Result {
	a.t.Helper()
	res, err := a.apply(cmd)
	if err != nil {
		a.t.Fatalf("apply %#v: %v", cmd, err)
	}
	return res
}

func u64(v uint64) *uint64 { return &v }

func TestFSMKeyValueCAS(t *testing.T) {
	a := newApplier(t)
	steps := []struct {
		name    string
		cmd     Command
		wantErr error
		check   func(t *testing.T, r Result)
	}{
		{"create", KVSet{Key: "a", Value: "1"}, nil, func(t *testing.T, r Result) {
			if r.Entry.CreateIndex != 1 || r.Entry.ModifyIndex != 1 || r.Entry.Value != "1" {
				t.Errorf("entry %+v, want create=modify=1 value 1", r.Entry)
			}
		}},
		{"update keeps create index", KVSet{Key: "a", Value: "2"}, nil, func(t *testing.T, r Result) {
			if r.Entry.CreateIndex != 1 || r.Entry.ModifyIndex != 2 {
				t.Errorf("entry %+v, want create 1 modify 2", r.Entry)
			}
		}},
		{"cas with stale revision fails", KVSet{Key: "a", Value: "x", CAS: u64(1)}, ErrConflict, nil},
		{"cas=0 on existing key fails", KVSet{Key: "a", Value: "x", CAS: u64(0)}, ErrConflict, nil},
		{"cas with current revision succeeds", KVSet{Key: "a", Value: "3", CAS: u64(2)}, nil, func(t *testing.T, r Result) {
			if r.Entry.ModifyIndex != 5 || r.Entry.Value != "3" {
				t.Errorf("entry %+v, want modify 5 value 3", r.Entry)
			}
		}},
		{"cas=0 creates a missing key", KVSet{Key: "b", Value: "new", CAS: u64(0)}, nil, nil},
		{"cas>0 on missing key fails", KVSet{Key: "c", Value: "x", CAS: u64(3)}, ErrConflict, nil},
		{"delete with wrong cas fails", KVDelete{Key: "a", CAS: u64(2)}, ErrConflict, nil},
		{"delete with right cas", KVDelete{Key: "a", CAS: u64(5)}, nil, func(t *testing.T, r Result) {
			if !r.Deleted || r.Entry.Value != "3" {
				t.Errorf("result %+v, want deleted with old entry", r)
			}
		}},
		{"delete missing is not an error", KVDelete{Key: "a"}, nil, func(t *testing.T, r Result) {
			if r.Deleted {
				t.Error("deleted a missing key")
			}
		}},
		{"recreate resets create index", KVSet{Key: "a", Value: "again"}, nil, func(t *testing.T, r Result) {
			if r.Entry.CreateIndex != 11 {
				t.Errorf("create index %d, want 11", r.Entry.CreateIndex)
			}
		}},
	}
	for _, s := range steps {
		res, err := a.apply(s.cmd)
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		}
		if s.check != nil {
			s.check(t, res)
		}
	}
	v := a.fsm.View()
	if v.Index() != a.index {
		t.Errorf("view index %d, want %d", v.Index(), a.index)
	}
	got := v.List("")
	if len(got) != 2 || got[0].Key != "a" || got[1].Key != "b" {
		t.Errorf("list %+v, want keys a, b", got)
	}
	if v.Bytes() != int64(len("a")+len("again")+len("b")+len("new")) {
		t.Errorf("bytes %d", v.Bytes())
	}
}

func TestFSMWatchIndexes(t *testing.T) {
	a := newApplier(t)
	a.must(KVSet{Key: "cfg/x", Value: "1"}) // 1
	a.must(KVSet{Key: "other", Value: "1"}) // 2
	v := a.fsm.View()
	if got := v.PrefixIndex("cfg/"); got != 1 {
		t.Errorf("prefix index %d, want 1", got)
	}
	a.must(KVDelete{Key: "cfg/x"}) // 3
	v = a.fsm.View()
	if got := v.PrefixIndex("cfg/"); got != 3 {
		t.Errorf("prefix index after delete %d, want 3", got)
	}
	if got := v.KeyIndex("cfg/x"); got != 3 {
		t.Errorf("key index after delete %d, want 3", got)
	}

	// A waiter on cfg/ wakes up on a change under cfg/, not before.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	woke := make(chan View, 1)
	go func() {
		v, _ := a.fsm.Wait(ctx, func(v View) bool { return v.PrefixIndex("cfg/") > 3 })
		woke <- v
	}()
	a.must(KVSet{Key: "other", Value: "2"}) // 4
	select {
	case <-woke:
		t.Fatal("watch on cfg/ woke up for a change of another key")
	case <-time.After(50 * time.Millisecond):
	}
	a.must(KVSet{Key: "cfg/y", Value: "1"}) // 5
	select {
	case v := <-woke:
		if _, ok := v.Get("cfg/y"); !ok || v.PrefixIndex("cfg/") != 5 {
			t.Errorf("woken view misses cfg/y or has index %d", v.PrefixIndex("cfg/"))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watch did not wake up")
	}
}

func TestFSMLeases(t *testing.T) {
	a := newApplier(t)
	acq := func(owner string, prev uint64, takeover bool) (Result, error) {
		return a.apply(LeaseAcquire{Job: "iot", Partition: 3, Owner: owner, PrevEpoch: prev, Takeover: takeover})
	}
	steps := []struct {
		name      string
		do        func() (Result, error)
		wantErr   error
		wantOwner string
		wantEpoch uint64
	}{
		{"first grant", func() (Result, error) { return acq("n1", 0, false) }, nil, "n1", 1},
		{"stale prev epoch", func() (Result, error) { return acq("n2", 0, false) }, ErrConflict, "n1", 1},
		{"held by other without takeover", func() (Result, error) { return acq("n2", 1, false) }, ErrConflict, "n1", 1},
		{"owner re-acquires and fences itself", func() (Result, error) { return acq("n1", 1, false) }, nil, "n1", 2},
		{"renewal by the holder", func() (Result, error) {
			return a.apply(LeaseRenew{Owner: "n1", TTLMs: 3000, SafetyMs: 500})
		}, nil, "n1", 2},
		{"takeover naming an older renewal", func() (Result, error) {
			n1, _ := a.fsm.View().NodeLease("n1")
			return a.apply(LeaseAcquire{Job: "iot", Partition: 3, Owner: "n2", PrevEpoch: 2, Takeover: true, HolderRenewIndex: n1.RenewIndex - 1})
		}, ErrConflict, "n1", 2},
		{"takeover after the holder's lease expired", func() (Result, error) {
			n1, _ := a.fsm.View().NodeLease("n1")
			return a.apply(LeaseAcquire{Job: "iot", Partition: 3, Owner: "n2", PrevEpoch: 2, Takeover: true, HolderRenewIndex: n1.RenewIndex})
		}, nil, "n2", 3},
		{"release by non-owner", func() (Result, error) {
			return a.apply(LeaseRelease{Job: "iot", Partition: 3, Owner: "n1", Epoch: 3})
		}, ErrConflict, "n2", 3},
		{"release at wrong epoch", func() (Result, error) {
			return a.apply(LeaseRelease{Job: "iot", Partition: 3, Owner: "n2", Epoch: 2})
		}, ErrConflict, "n2", 3},
		{"release", func() (Result, error) {
			return a.apply(LeaseRelease{Job: "iot", Partition: 3, Owner: "n2", Epoch: 3})
		}, nil, "n2", 3},
		{"acquire released lease", func() (Result, error) { return acq("n3", 3, false) }, nil, "n3", 4},
	}
	for _, s := range steps {
		_, err := s.do()
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		}
		l, ok := a.fsm.View().Lease("iot", 3)
		if !ok || l.Owner != s.wantOwner || l.Epoch != s.wantEpoch {
			t.Fatalf("%s: lease %+v, want owner %s epoch %d", s.name, l, s.wantOwner, s.wantEpoch)
		}
	}
	if n := len(a.fsm.View().Leases("iot")); n != 1 {
		t.Errorf("%d leases of job iot, want 1", n)
	}
	// A renewal returns exactly the leases the owner holds.
	r, err := a.apply(LeaseRenew{Owner: "n3", TTLMs: 3000, SafetyMs: 500})
	if err != nil || len(r.Leases) != 1 || r.Leases[0].Epoch != 4 {
		t.Errorf("renewal of n3: %+v, %v; want its one lease at epoch 4", r.Leases, err)
	}
	if nl, ok := a.fsm.View().NodeLease("n3"); !ok || nl.RenewIndex != r.Index || nl.TTLMs != 3000 {
		t.Errorf("node lease of n3 %+v, want renew index %d, ttl 3000 ms", nl, r.Index)
	}
	if n := len(a.fsm.View().Leases("io")); n != 0 {
		t.Errorf("job prefix io matched %d leases of job iot", n)
	}
}

func TestFSMCheckpoints(t *testing.T) {
	a := newApplier(t)
	for p := int32(0); p < 2; p++ {
		a.must(LeaseAcquire{Job: "iot", Partition: p, Owner: "n1"})
	}
	a.must(CheckpointStart{Job: "iot", ID: 1, Partitions: 2, StartedMs: 1000})
	if _, err := a.apply(CheckpointStart{Job: "iot", ID: 1, Partitions: 2}); !errors.Is(err, ErrConflict) {
		t.Errorf("restarting checkpoint 1: %v, want ErrConflict", err)
	}
	if _, err := a.apply(CheckpointAck{Job: "iot", ID: 1, Partition: 0, Epoch: 7, Offset: 10, Snapshot: "s0"}); !errors.Is(err, ErrConflict) {
		t.Errorf("ack with a stale epoch: %v, want ErrConflict (fenced)", err)
	}
	if _, err := a.apply(CheckpointAck{Job: "iot", ID: 9, Partition: 0, Epoch: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ack of unknown checkpoint: %v, want ErrNotFound", err)
	}
	r := a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 1, Epoch: 1, Offset: 20, Snapshot: "s1"})
	if r.Checkpoint.Complete {
		t.Fatal("complete after 1 of 2 acks")
	}
	a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 1, Epoch: 1, Offset: 20, Snapshot: "s1"}) // idempotent
	r = a.must(CheckpointAck{Job: "iot", ID: 1, Partition: 0, Epoch: 1, Offset: 10, Snapshot: "s0"})
	if !r.Checkpoint.Complete || len(r.Checkpoint.Acks) != 2 || r.Checkpoint.Acks[0].Partition != 0 {
		t.Fatalf("checkpoint %+v, want complete with acks sorted by partition", r.Checkpoint)
	}
	cp, ok := a.fsm.View().LastCompleteCheckpoint("iot")
	if !ok || cp.ID != 1 {
		t.Errorf("last complete %+v %v", cp, ok)
	}
	for id := uint64(2); id < 2+RetainCheckpoints+3; id++ {
		a.must(CheckpointStart{Job: "iot", ID: id, Partitions: 2})
	}
	// The newest RetainCheckpoints, all incomplete, plus complete 1.
	if n := len(a.fsm.View().Checkpoints("iot")); n != RetainCheckpoints+1 {
		t.Errorf("%d checkpoints kept, want %d", n, RetainCheckpoints+1)
	}
}

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed.For(t), 7))
	a := newApplier(t)
	for i := 0; i < 2000; i++ {
		key := fmt.Sprintf("k/%d", rng.IntN(300))
		switch rng.IntN(10) {
		case 0:
			a.apply(KVDelete{Key: key})
		case 1:
			a.apply(LeaseAcquire{Job: "j", Partition: int32(rng.IntN(8)), Owner: "n1", PrevEpoch: uint64(rng.IntN(3))})
		default:
			a.must(KVSet{Key: key, Value: strings.Repeat("v", rng.IntN(40))})
		}
	}
	a.must(KVSet{Key: "devices/17079", Value: `{"company":"acme","site":"dyce","threshold":40}`})
	a.must(JobPut{Name: "iot-work", Spec: "source: kafka\n"})
	a.must(SetVoterTarget{Voters: 3})
	a.must(CheckpointStart{Job: "j", ID: 4, Partitions: 8})

	var buf bytes.Buffer
	snap, _ := a.fsm.Snapshot()
	sink := &memSink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want, got := a.fsm.View(), restored.View()
	if got.Index() != want.Index() || got.Settings() != want.Settings() || got.Bytes() != want.Bytes() {
		t.Errorf("restored index/settings/bytes %d/%+v/%d, want %d/%+v/%d", got.Index(), got.Settings(), got.Bytes(), want.Index(), want.Settings(), want.Bytes())
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"kv", got.List(""), want.List("")},
		{"jobs", got.Jobs(), want.Jobs()},
		{"leases", got.Leases(""), want.Leases("")},
		{"checkpoints", got.Checkpoints(""), want.Checkpoints("")},
		{"lease history", got.LeaseHistory("", -1), want.LeaseHistory("", -1)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("restored %s differ:\n got %+v\nwant %+v", c.name, c.got, c.want)
		}
	}
	if d, ok := restored.Devices().Device("17079"); !ok || d.Company != "acme" || *d.Threshold != 40 {
		t.Errorf("restored device lookup: %+v %v", d, ok)
	}
	if restored.Restores() != 1 {
		t.Errorf("restores %d, want 1", restored.Restores())
	}
	// A truncated snapshot is rejected, not half-restored.
	trunc := buf.Bytes()[:buf.Len()/2]
	trunc = trunc[:bytes.LastIndexByte(trunc, '\n')+1]
	if err := NewFSM(nil).Restore(io.NopCloser(bytes.NewReader(trunc))); err == nil {
		t.Error("restore of a truncated snapshot succeeded")
	}
}

type memSink struct{ *bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMBatchAndNonCommandLogs(t *testing.T) {
	f := NewFSM(nil)
	enc := func(c Command) []byte { b, _ := EncodeCommand(c); return b }
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration},
		{Index: 2, Type: raft.LogCommand, Data: enc(KVSet{Key: "devices/a", Value: `{"company":"c1","site":"s1"}`})},
		{Index: 3, Type: raft.LogCommand, Data: []byte{0xff, '{', '}'}},
		{Index: 4, Type: raft.LogCommand, Data: enc(KVSet{Key: "devices/b", Value: `{"company":"c2","site":"s2"}`})},
		{Index: 5, Type: raft.LogCommand, Data: enc(KVDelete{Key: "devices/a"})},
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) || out[0] != nil {
		t.Fatalf("responses %v", out)
	}
	if r := out[2].(*applyResponse); !errors.Is(r.Err, ErrInvalid) {
		t.Errorf("undecodable entry: %v, want ErrInvalid", r.Err)
	}
	if f.View().Index() != 5 {
		t.Errorf("index %d, want 5", f.View().Index())
	}
	if _, ok := f.Devices().Device("a"); ok {
		t.Error("device a still known after delete in the same batch")
	}
	if d, ok := f.Devices().Device("b"); !ok || d.Company != "c2" {
		t.Errorf("device b: %+v %v", d, ok)
	}
}

func TestCommandEncodingRoundTrip(t *testing.T) {
	cmds := []Command{
		KVSet{Key: "a/b", Value: "v", CAS: u64(3)},
		KVDelete{Key: "a"},
		JobPut{Name: "j", Spec: "x"},
		JobDelete{Name: "j"},
		LeaseAcquire{Job: "j", Partition: 2, Owner: "n", PrevEpoch: 4, Takeover: true},
		LeaseRelease{Job: "j", Partition: 2, Owner: "n", Epoch: 5},
		CheckpointStart{Job: "j", ID: 3, Partitions: 4, StartedMs: 5},
		CheckpointAck{Job: "j", ID: 3, Partition: 1, Epoch: 2, Offset: 9, Snapshot: "s"},
		SetVoterTarget{Voters: 5},
	}
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip %#v → %#v", c, got)
		}
	}
	for _, bad := range [][]byte{nil, {0}, {99, '{', '}'}, {byte(TypeKVSet), '{'}} {
		if _, err := DecodeCommand(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeCommand(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

func TestValidateKeyAndValue(t *testing.T) {
	good := []string{"a", "devices/17079", "A-b_c.d/e", strings.Repeat("k", MaxKeyLen), "dir/"}
	for _, k := range good {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want ok", k, err)
		}
	}
	bad := []string{"", "/a", "a//b", "a/../b", "..", "a..b", "a/./b", ".", "a b", "ключ", "a?b", "a%2Fb", strings.Repeat("k", MaxKeyLen+1)}
	for _, k := range bad {
		if err := ValidateKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalid", k, err)
		}
	}
	values := []struct {
		key, value string
		ok         bool
	}{
		{"cfg", "anything", true},
		{"cfg", "\xff\xfe", false},
		{"devices/1", `{"company":"a","site":"b","threshold":50}`, true},
		{"devices/1", `{"company":"a"}`, true},
		{"devices/1", `{"company":"a",`, false},
		{"devices/1", `{"company":"a","colour":"red"}`, false},
		{"devices/1", `[1,2]`, false},
		{"devices/1", `{"threshold":"high"}`, false},
		{"devices/1", `{} {}`, false},
		{"devices/", `{}`, false},
		{"devices/a/b", `{}`, false},
	}
	for _, v := range values {
		err := ValidateValue(v.key, v.value)
		if v.ok != (err == nil) {
			t.Errorf("ValidateValue(%q, %q) = %v, want ok=%v", v.key, v.value, err, v.ok)
		}
	}
}

func BenchmarkDeviceLookup(b *testing.B) {
	a := &fsmApplier{fsm: NewFSM(nil)}
	for i := 0; i < 1000; i++ {
		data, _ := EncodeCommand(KVSet{Key: fmt.Sprintf("devices/%d", i), Value: `{"company":"c","site":"s","threshold":40}`})
		a.index++
		a.fsm.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data})
	}
	d := a.fsm.Devices()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := d.Device("517"); !ok {
				b.Fatal("missing")
			}
			i++
		}
	})
}
