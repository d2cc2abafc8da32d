package control

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestDeviceVersions: every change of devices/<id> is a version valid from
// an event time — the beginning of time for the first, valid_from when
// given, else the leader's append time — and DeviceAt answers as of an
// event time; the versions survive a snapshot.
func TestDeviceVersions(t *testing.T) {
	f := NewFSM(nil)
	var index uint64
	apply := func(cmd Command, at time.Time) {
		t.Helper()
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if r := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: at}).(*applyResponse); r.Err != nil {
			t.Fatalf("%#v: %v", cmd, r.Err)
		}
	}
	ms := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	commit := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	apply(KVSet{Key: "devices/d1", Value: `{"company":"a","site":"s1","threshold":40}`}, commit)
	apply(KVSet{Key: "devices/d1", Value: `{"company":"b","site":"s2","valid_from":"2019-03-05T00:00:00Z"}`}, commit.Add(time.Minute))
	apply(KVSet{Key: "devices/d1", Value: `{"company":"c","site":"s3"}`}, commit.Add(2*time.Minute))
	apply(KVSet{Key: "devices/d2", Value: `{"company":"x","site":"y"}`}, commit)
	apply(KVDelete{Key: "devices/d2"}, commit.Add(time.Hour))

	check := func(f *FSM) {
		t.Helper()
		d := f.Devices()
		for _, c := range []struct {
			id      string
			at      int64
			company string
			known   bool
		}{
			{"d1", math.MinInt64, "a", true},
			{"d1", ms("2019-03-04T23:59:59Z"), "a", true},
			{"d1", ms("2019-03-05T00:00:00Z"), "b", true},
			{"d1", commit.Add(2*time.Minute).UnixMilli() - 1, "b", true},
			{"d1", commit.Add(2 * time.Minute).UnixMilli(), "c", true},
			{"d2", commit.UnixMilli(), "x", true},
			{"d2", commit.Add(time.Hour).UnixMilli(), "", false},
			{"d3", 0, "", false},
		} {
			info, ok := d.DeviceAt(c.id, c.at)
			if ok != c.known || info.Company != c.company {
				t.Errorf("DeviceAt(%s, %d) = %+v, %v; want company %q, known %v", c.id, c.at, info, ok, c.company, c.known)
			}
		}
		if info, ok := d.Device("d1"); !ok || info.Company != "c" {
			t.Errorf("Device(d1) = %+v, %v; want the current version c", info, ok)
		}
		if th, _ := d.DeviceAt("d1", 0); th.Threshold == nil || *th.Threshold != 40 {
			t.Errorf("DeviceAt(d1, 2019) threshold %v, want 40", th.Threshold)
		}
	}
	check(f)

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(nil)
	if err := g.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	check(g)

	if err := (KVSet{Key: "devices/d1", Value: `{"company":"a","site":"s","valid_from":"next tuesday"}`}).Validate(); err == nil {
		t.Error("a device with an unreadable valid_from was accepted")
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }
