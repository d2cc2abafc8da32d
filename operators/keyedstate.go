package operators

import (
	"fmt"
	"math"
)

// Keyed state of a Partition.
//
// Every device with open state (a window, a buffered reading or an open
// work period) has a deviceEntry: its id, its wake time and its position in
// the wake heap. That is all a device costs in memory while its state is
// evicted: about 100 bytes plus the id (the 48-byte entry, its slot in the
// index map, 25 to 57 bytes by the map's load, and 8 in the heap). The
// state itself (deviceState: 128 bytes plus 96 per open window and 32 per
// buffered reading; BenchmarkOpenDeviceMemory measures the total) is
// either cached in memory — on an LRU list, at most cacheCap of them once a
// StateStore is set — or encoded in the store. A device whose state becomes
// empty is dropped from the heap, the cache and the store; its entry stays
// parked in the index for the device's next record, up to maxParked entries
// per partition (park): idle devices cost at most that.
//
// Cached states are written to the store when they are evicted (if changed
// since the last save) and by Checkpoint; so after Checkpoint the store holds
// every device state, and a snapshot of the store plus State() is a snapshot
// of the partition.

// deviceEntry is one device with open state. Its fields are ordered so that
// it takes 48 bytes (no padding but the last 3).
type deviceEntry struct {
	id   string
	wake int64 // next watermark at which the device has work
	// parked is the sequence number under which the entry was parked
	// (Partition.park); 0 while the device has state.
	parked  uint64
	state   *deviceState
	heapIdx int32 // position in Partition.heap; -1 while being dropped
	stored  bool  // the store holds a state of the device (older when dirty)
}

// maxFreeStates bounds the recycled states a partition keeps.
const maxFreeStates = 256

// SetStore makes the partition keep at most cacheDevices device states in
// memory and evict the least recently used others to store (see
// StateStore). It must be called before the first Process or Restore call;
// cacheDevices must be >= 1. Without a store every state stays in memory.
func (p *Partition) SetStore(store StateStore, cacheDevices int) {
	if store == nil || cacheDevices < 1 {
		panic(fmt.Sprintf("operators.SetStore: need a store and cacheDevices >= 1, got %v, %d", store, cacheDevices))
	}
	if len(p.index) > 0 || p.stats.Received > 0 {
		panic("operators.SetStore: called after the partition has state")
	}
	p.store, p.cacheCap = store, cacheDevices
}

// Devices returns the number of devices with open state, cached or not.
func (p *Partition) Devices() int { return len(p.index) - p.parkedN }

// CachedDevices returns the number of device states held in memory.
func (p *Partition) CachedDevices() int { return p.cached }

// Checkpoint writes every cached device state that changed since it was
// last saved to w, which must write to the partition's store (typically a
// write batch over it, committed by the caller before the store is read).
// Afterwards the store holds the current state of every device. It panics
// without a store (SetStore).
func (p *Partition) Checkpoint(w StateWriter) {
	if p.store == nil {
		panic("operators.Checkpoint: the partition has no StateStore")
	}
	for d := p.lru.next; d != &p.lru; d = d.next {
		if d.dirty {
			p.buf = encodeDeviceState(p.buf[:0], d, d.e.wake)
			w.Save(d.e.id, p.buf)
			d.dirty = false
			d.e.stored = true
		}
	}
}

// RestoreState sets the partition-wide state of a snapshot. Together with
// RestoreDevice it turns a new Partition into the one the snapshot was taken
// of; call both before the first Process.
func (p *Partition) RestoreState(s PartitionState) {
	p.wm = s.Watermark
	p.stats = s.Stats
}

// RestoreDevice registers device id of a snapshot with its encoded state
// (as Checkpoint wrote it). With a store the state must already be in the
// store; only its header is read here and the state is loaded on first use.
// Without a store it is decoded and kept in memory. Errors wrap ErrBadState
// (the state does not decode, or the device is registered twice).
func (p *Partition) RestoreDevice(id string, state []byte) error {
	if _, dup := p.index[id]; dup {
		return fmt.Errorf("%w: device %q restored twice", ErrBadState, id)
	}
	if p.store != nil {
		wake, err := deviceStateWake(state)
		if err != nil {
			return fmt.Errorf("device %q: %w", id, err)
		}
		if wake == math.MaxInt64 {
			return fmt.Errorf("%w: device %q has a state without work", ErrBadState, id)
		}
		e := &deviceEntry{id: id, wake: wake, heapIdx: -1, stored: true}
		p.index[id] = e
		p.heapPush(e)
		return nil
	}
	d := p.newState()
	wake, err := decodeDeviceState(state, d)
	if err == nil && wake != p.nextWake(d) {
		err = fmt.Errorf("%w: stored wake time %d, state says %d", ErrBadState, wake, p.nextWake(d))
	}
	if err != nil {
		p.recycle(d)
		return fmt.Errorf("device %q: %w", id, err)
	}
	e := &deviceEntry{id: id, wake: wake, heapIdx: -1}
	p.index[id] = e
	p.attach(e, d)
	p.heapPush(e)
	return nil
}

func (p *Partition) heapPush(e *deviceEntry) {
	e.heapIdx = int32(len(p.heap))
	p.heap = append(p.heap, e)
	p.heapUp(int(e.heapIdx))
}

// newDevice creates the entry and the (empty, cached) state of a device
// seen for the first time. The caller reschedules it after adding to it.
func (p *Partition) newDevice(id string) *deviceState {
	var e *deviceEntry
	if n := len(p.freeEntries); n > 0 {
		e = p.freeEntries[n-1]
		p.freeEntries = p.freeEntries[:n-1]
	} else {
		e = new(deviceEntry)
	}
	*e = deviceEntry{id: id, wake: math.MaxInt64, heapIdx: -1}
	p.index[id] = e
	d := p.newState()
	p.attach(e, d)
	return d
}

// load returns the state of e, loading it from the store when evicted, and
// marks it most recently used.
func (p *Partition) load(e *deviceEntry) *deviceState {
	if d := e.state; d != nil {
		if p.lru.next != d { // move to the front
			d.prev.next, d.next.prev = d.next, d.prev
			d.prev, d.next = &p.lru, p.lru.next
			p.lru.next.prev = d
			p.lru.next = d
		}
		return d
	}
	var ok bool
	p.buf, ok = p.store.Load(e.id, p.buf[:0])
	if !ok {
		panic(fmt.Sprintf("operators: state store lost the state of device %q", e.id))
	}
	d := p.newState()
	if _, err := decodeDeviceState(p.buf, d); err != nil {
		panic(fmt.Sprintf("operators: state store returned a bad state for device %q: %v", e.id, err))
	}
	p.attach(e, d)
	return d
}

// attach caches d as the state of e, most recently used.
func (p *Partition) attach(e *deviceEntry, d *deviceState) {
	d.e, e.state = e, d
	d.prev, d.next = &p.lru, p.lru.next
	p.lru.next.prev = d
	p.lru.next = d
	p.cached++
}

// detach removes the cached state of e from the cache and recycles it.
func (p *Partition) detach(e *deviceEntry) {
	d := e.state
	d.prev.next, d.next.prev = d.next, d.prev
	e.state = nil
	p.cached--
	p.recycle(d)
}

func (p *Partition) newState() *deviceState {
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return d
	}
	return &deviceState{}
}

func (p *Partition) recycle(d *deviceState) {
	if len(p.free) >= maxFreeStates || cap(d.Windows) > 64 || cap(d.Pending) > 256 {
		return
	}
	*d = deviceState{Windows: d.Windows[:0], Pending: d.Pending[:0]}
	p.free = append(p.free, d)
}

// evict writes the least recently used states beyond the cache capacity to
// the store (when changed) and drops them from memory.
func (p *Partition) evict() {
	if p.store == nil {
		return
	}
	for p.cached > p.cacheCap {
		d := p.lru.prev
		e := d.e
		if d.dirty {
			p.buf = encodeDeviceState(p.buf[:0], d, e.wake)
			p.store.Save(e.id, p.buf)
			e.stored = true
		}
		p.detach(e)
	}
}

// drop empties the state of a device whose state has no more work and
// parks its entry (see park).
func (p *Partition) drop(e *deviceEntry) {
	if e.heapIdx >= 0 {
		p.heapRemove(int(e.heapIdx))
	}
	if e.state != nil {
		p.detach(e)
	}
	if e.stored {
		p.store.Delete(e.id)
		e.stored = false
	}
	p.park(e)
}

// maxParked bounds the parked entries of a partition (about 100 bytes
// each plus the id).
const maxParked = 1024

// parkSlot is one slot of the ring of parked entries: the entry and the
// sequence number it was parked under (a slot whose entry was unparked,
// or parked again later, is stale).
type parkSlot struct {
	e   *deviceEntry
	seq uint64
}

// park keeps the entry of a device without state in the index, out of the
// heap and the cache: the device's next record reuses it (and its id)
// instead of an allocation, a map insert and, now, a map delete. That is
// the common case of devices reporting less often than their windows
// fire. It is invisible from outside: Devices does not count parked
// entries, and parked entries have no state to save. At most maxParked
// entries are parked; parking one more forgets the oldest.
func (p *Partition) park(e *deviceEntry) {
	if p.parkRing == nil {
		p.parkRing = make([]parkSlot, 0, maxParked)
	}
	if len(p.parkRing) == maxParked {
		old := p.parkRing[p.parkHead]
		p.parkRing[p.parkHead] = parkSlot{}
		p.parkHead = (p.parkHead + 1) % maxParked
		p.parkRing = p.parkRing[:maxParked-1] // len is the number of slots in use
		if old.e.parked == old.seq {
			p.forget(old.e)
		}
	}
	p.parkSeq++
	e.parked = p.parkSeq
	p.parkedN++
	p.parkRing = p.parkRing[:len(p.parkRing)+1]
	p.parkRing[(p.parkHead+len(p.parkRing)-1)%maxParked] = parkSlot{e: e, seq: p.parkSeq}
}

// unpark gives a parked entry an empty state again, as newDevice does for a
// new device. The caller reschedules it after adding to it.
func (p *Partition) unpark(e *deviceEntry) *deviceState {
	e.parked = 0
	p.parkedN--
	d := p.newState()
	p.attach(e, d)
	return d
}

// forget removes a parked entry from the index for good.
func (p *Partition) forget(e *deviceEntry) {
	delete(p.index, e.id)
	p.parkedN--
	if len(p.freeEntries) < maxFreeStates {
		*e = deviceEntry{}
		p.freeEntries = append(p.freeEntries, e)
	}
}

// forgetParked forgets every parked entry.
func (p *Partition) forgetParked() {
	for i := range p.parkRing {
		sl := &p.parkRing[(p.parkHead+i)%maxParked]
		if sl.e.parked == sl.seq {
			p.forget(sl.e)
		}
		*sl = parkSlot{}
	}
	p.parkRing, p.parkHead = p.parkRing[:0], 0
}
