package control

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Versioned broadcast data. Every change of devices/<pboxid> adds a version
// valid from an event time, and the operators look a device up as of the
// event time of what they enrich — Flink SQL's event-time temporal join
// (FOR SYSTEM_TIME AS OF): a reading with event time t uses the newest
// version whose ValidFromMs ≤ t; a window and a work period use the version
// in force at their start. Because the version in force depends only on
// the input and on the Raft log, a replay after a restore (kill -9, a moved
// partition) computes exactly what the first run computed, whenever the
// change was applied relative to the partition's checkpoints.
//
// valid_from in the device JSON (RFC 3339, "YYYY-MM-DD[ HH:MM:SS]" UTC, or
// Unix ms) sets the version's start; without it, a device's first version
// is valid from the beginning of time and every later one from the moment
// the Raft leader appended the change (its clock). A version is therefore
// exact as long as no reading with an event time after its start was
// processed before it was committed: readings from the future (bounded by
// event_time.max_future) or a valid_from set in the past apply only to what
// is processed after the change.

// MaxDeviceVersions is how many versions of one device the FSM keeps; the
// oldest is dropped beyond it (lookups before the oldest kept version then
// use the oldest).
const MaxDeviceVersions = 64

// deviceVersions are the kept versions of one device, ascending by
// (ValidFromMs, Index). Immutable once stored.
type deviceVersions struct {
	ID       string          `json:"id"`
	Versions []DeviceVersion `json:"versions"`
}

// DeviceVersion is one version of a device's broadcast data.
type DeviceVersion struct {
	// ValidFromMs is the event time (Unix ms) from which the version
	// applies; math.MinInt64 = always.
	ValidFromMs int64 `json:"valid_from_ms"`
	// Index is the Raft index of the change.
	Index uint64 `json:"index"`
	// Value is the device JSON; Deleted marks a deletion (the device is
	// unknown from ValidFromMs on).
	Value   string `json:"value,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// parseValidFrom reads the valid_from field of a device JSON value: ok false
// when absent.
func parseValidFrom(raw *string) (int64, bool, error) {
	if raw == nil {
		return 0, false, nil
	}
	s := strings.TrimSpace(*raw)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), true, nil
		}
	}
	var ms int64
	if _, err := fmt.Sscanf(s, "%d", &ms); err == nil && fmt.Sprint(ms) == s {
		return ms, true, nil
	}
	return 0, false, fmt.Errorf("valid_from %q: want RFC 3339, YYYY-MM-DD[ HH:MM:SS] (UTC) or Unix ms", s)
}

func (t *txn) devTxn() *iradix.Txn {
	if t.devVers == nil {
		t.devVers = t.st.devVersions.Txn()
	}
	return t.devVers
}

// versionDevice records the change of key from prev to next (nil: deleted)
// as a new version, if key is a device key.
func (t *txn) versionDevice(key string, prev, next *KVEntry) {
	if !strings.HasPrefix(key, DevicesPrefix) {
		return
	}
	id := key[len(DevicesPrefix):]
	var vs []DeviceVersion
	if v, ok := t.devTxn().Get([]byte(id)); ok {
		vs = slices.Clone(v.(*deviceVersions).Versions)
	} else if prev != nil {
		// Written by a version of eddy that kept no versions.
		vs = []DeviceVersion{{ValidFromMs: math.MinInt64, Index: prev.ModifyIndex, Value: prev.Value}}
	}
	nv := DeviceVersion{Index: t.index, ValidFromMs: math.MinInt64}
	if len(vs) > 0 && !t.appendedAt.IsZero() {
		nv.ValidFromMs = t.appendedAt.UnixMilli()
	}
	if next == nil {
		nv.Deleted = true
	} else {
		nv.Value = next.Value
		if _, from, ok, err := parseDevice(next.Value); err == nil && ok {
			nv.ValidFromMs = from
		}
	}
	// Insert in (ValidFromMs, Index) order; a version with the same start
	// replaces the older one.
	i, found := slices.BinarySearchFunc(vs, nv.ValidFromMs, func(v DeviceVersion, t int64) int {
		switch {
		case v.ValidFromMs < t:
			return -1
		case v.ValidFromMs > t:
			return 1
		}
		return 0
	})
	if found {
		vs[i] = nv
	} else {
		vs = slices.Insert(vs, i, nv)
	}
	if len(vs) > MaxDeviceVersions {
		vs = vs[len(vs)-MaxDeviceVersions:]
	}
	t.devTxn().Insert([]byte(id), &deviceVersions{ID: id, Versions: vs})
}

// DeviceVersions returns the kept versions of pboxid, ascending by
// ValidFromMs (nil if it has none).
func (v View) DeviceVersions(pboxid string) []DeviceVersion {
	if d, ok := v.st.devVersions.Get([]byte(pboxid)); ok {
		return slices.Clone(d.(*deviceVersions).Versions)
	}
	if e, ok := v.Get(DevicesPrefix + pboxid); ok {
		return []DeviceVersion{{ValidFromMs: math.MinInt64, Index: e.ModifyIndex, Value: e.Value}}
	}
	return nil
}
