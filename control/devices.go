package control

import (
	"log/slog"
	"maps"
	"math"
	"sort"
	"sync/atomic"

	"github.com/eddy-iot/eddy/operators"
)

// DeviceLookup serves the broadcast device data of the local FSM replica
// (keys devices/<pboxid>, values the JSON of operators.DeviceInfo) to the
// operators, versioned by event time (see DeviceVersion): Device returns the
// current version, DeviceAt the version in force at an event time. Lookups
// are lock-free — an atomic load of an immutable map — and the map is
// rebuilt by the FSM after every applied batch that changed a devices/ key,
// so a change is visible as soon as this replica applied it. A value that
// does not parse (it was validated when written, so only data from another
// version) makes that version unknown and is logged.
type DeviceLookup struct {
	m atomic.Pointer[map[string][]deviceAt]
}

// deviceAt is one parsed version.
type deviceAt struct {
	from  int64
	info  operators.DeviceInfo
	known bool
}

var _ operators.VersionedDeviceLookup = (*DeviceLookup)(nil)

func newDeviceLookup() *DeviceLookup {
	d := &DeviceLookup{}
	empty := map[string][]deviceAt{}
	d.m.Store(&empty)
	return d
}

// Device implements operators.DeviceLookup: the current version. Safe for
// concurrent use.
func (d *DeviceLookup) Device(pboxid string) (operators.DeviceInfo, bool) {
	vs := (*d.m.Load())[pboxid]
	if len(vs) == 0 {
		return operators.DeviceInfo{}, false
	}
	v := vs[len(vs)-1]
	return v.info, v.known
}

// DeviceAt implements operators.VersionedDeviceLookup: the version of pboxid
// in force at event time eventMs (Unix ms). Safe for concurrent use.
func (d *DeviceLookup) DeviceAt(pboxid string, eventMs int64) (operators.DeviceInfo, bool) {
	vs := (*d.m.Load())[pboxid]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].from > eventMs }) - 1
	if i < 0 {
		if len(vs) == 0 || vs[0].from != math.MinInt64 && len(vs) < MaxDeviceVersions {
			return operators.DeviceInfo{}, false
		}
		i = 0 // older versions were dropped: the oldest kept one
	}
	return vs[i].info, vs[i].known
}

// Len returns the number of known devices (current versions).
func (d *DeviceLookup) Len() int {
	n := 0
	for _, vs := range *d.m.Load() {
		if len(vs) > 0 && vs[len(vs)-1].known {
			n++
		}
	}
	return n
}

// versionsOf parses the versions of pboxid in st.
func versionsOf(st *state, id string, log *slog.Logger) []deviceAt {
	vs := View{st}.DeviceVersions(id)
	out := make([]deviceAt, 0, len(vs))
	for _, v := range vs {
		at := deviceAt{from: v.ValidFromMs}
		if !v.Deleted {
			info, _, _, err := parseDevice(v.Value)
			if err != nil {
				log.Warn("ignoring unparsable device data", "key", DevicesPrefix+id, "index", v.Index, "err", err)
			} else {
				at.info, at.known = info, true
			}
		}
		out = append(out, at)
	}
	return out
}

// update re-reads the changed pboxids from st onto a copy of the current
// map. Called only from the FSM goroutine.
func (d *DeviceLookup) update(st *state, changed map[string]struct{}, log *slog.Logger) {
	next := maps.Clone(*d.m.Load())
	for id := range changed {
		delete(next, id)
		if vs := versionsOf(st, id, log); len(vs) > 0 {
			next[id] = vs
		}
	}
	d.m.Store(&next)
}

// rebuild reads every device of st. Called after a snapshot restore.
func (d *DeviceLookup) rebuild(st *state, log *slog.Logger) {
	ids := map[string]struct{}{}
	st.kv.Root().WalkPrefix([]byte(DevicesPrefix), func(k []byte, _ interface{}) bool {
		ids[string(k[len(DevicesPrefix):])] = struct{}{}
		return false
	})
	st.devVersions.Root().Walk(func(k []byte, _ interface{}) bool {
		ids[string(k)] = struct{}{}
		return false
	})
	next := map[string][]deviceAt{}
	for id := range ids {
		if vs := versionsOf(st, id, log); len(vs) > 0 {
			next[id] = vs
		}
	}
	d.m.Store(&next)
}
