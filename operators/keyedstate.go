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
// evicted: about 90 bytes plus the id. The state itself (deviceState) is
// either cached in memory — on an LRU list, at most cacheCap of them once a
// StateStore is set — or encoded in the store. A device whose state becomes
// empty is dropped from the index, the heap and the store: idle devices cost
// nothing.
//
// Cached states are written to the store when they are evicted (if changed
// since the last save) and by Checkpoint; so after Checkpoint the store holds
// every device state, and a snapshot of the store plus State() is a snapshot
// of the partition.

// deviceEntry is one device with open state.
type deviceEntry struct {
	id      string
	wake    int64 // next watermark at which the device has work
	heapIdx int32 // position in Partition.heap; -1 while being dropped
	stored  bool  // the store holds a state of the device (older when dirty)
	state   *deviceState
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
func (p *Partition) Devices() int { return len(p.index) }

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
			w.Save(d.ID, p.buf)
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
	d.ID, d.e, e.state = e.id, e, d
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

// drop forgets a device whose state is empty.
func (p *Partition) drop(e *deviceEntry) {
	if e.heapIdx >= 0 {
		p.heapRemove(int(e.heapIdx))
	}
	delete(p.index, e.id)
	if e.state != nil {
		p.detach(e)
	}
	if e.stored {
		p.store.Delete(e.id)
	}
	if len(p.freeEntries) < maxFreeStates {
		*e = deviceEntry{}
		p.freeEntries = append(p.freeEntries, e)
	}
}
