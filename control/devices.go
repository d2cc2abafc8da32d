package control

import (
	"log/slog"
	"maps"
	"sync/atomic"

	"github.com/eddy-iot/eddy/operators"
)

// DeviceLookup serves the broadcast device data of the local FSM replica
// (keys devices/<pboxid>, values the JSON of operators.DeviceInfo) to the
// operators. Lookups are lock-free — an atomic load of an immutable map —
// and the map is rebuilt by the FSM after every applied batch that changed a
// devices/ key, so a change is visible as soon as this replica applied it.
// A value that does not parse (it was validated when written, so only data
// from another version) makes the device unknown and is logged.
type DeviceLookup struct {
	m atomic.Pointer[map[string]operators.DeviceInfo]
}

var _ operators.DeviceLookup = (*DeviceLookup)(nil)

func newDeviceLookup() *DeviceLookup {
	d := &DeviceLookup{}
	empty := map[string]operators.DeviceInfo{}
	d.m.Store(&empty)
	return d
}

// Device implements operators.DeviceLookup. Safe for concurrent use.
func (d *DeviceLookup) Device(pboxid string) (operators.DeviceInfo, bool) {
	info, ok := (*d.m.Load())[pboxid]
	return info, ok
}

// Len returns the number of known devices.
func (d *DeviceLookup) Len() int { return len(*d.m.Load()) }

// update applies the changed pboxids from st onto a copy of the current map.
// Called only from the FSM goroutine.
func (d *DeviceLookup) update(st *state, changed map[string]struct{}, log *slog.Logger) {
	next := maps.Clone(*d.m.Load())
	for id := range changed {
		delete(next, id)
		v, ok := st.kv.Get([]byte(DevicesPrefix + id))
		if !ok {
			continue
		}
		info, err := parseDevice(v.(*KVEntry).Value)
		if err != nil {
			log.Warn("ignoring unparsable device data", "key", DevicesPrefix+id, "err", err)
			continue
		}
		next[id] = info
	}
	d.m.Store(&next)
}

// rebuild reads every devices/ key of st. Called after a snapshot restore.
func (d *DeviceLookup) rebuild(st *state, log *slog.Logger) {
	next := map[string]operators.DeviceInfo{}
	st.kv.Root().WalkPrefix([]byte(DevicesPrefix), func(k []byte, v interface{}) bool {
		e := v.(*KVEntry)
		id := e.Key[len(DevicesPrefix):]
		info, err := parseDevice(e.Value)
		if err != nil {
			log.Warn("ignoring unparsable device data", "key", e.Key, "err", err)
			return false
		}
		next[id] = info
		return false
	})
	d.m.Store(&next)
}
