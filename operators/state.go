package operators

import (
	"errors"
	"fmt"
	"math"
)

// StateStore is the keyed-state backend of a Partition: where the states of
// devices live that the partition evicted from its in-memory cache (see
// Partition.SetStore). The partition addresses a device by its id; the store
// maps ids to the opaque encoded states the partition hands it (a
// versioned binary format, see encodeDeviceState). eddy's pebble backend (actors/state)
// keeps each partition under its own key prefix, the way Flink's RocksDB
// state backend keeps a key group.
//
// Methods are called from the goroutine that drives the partition only.
// Operators do no I/O: a store that cannot read or write must panic (with
// an error value of its own); the partition does not recover from that
// panic and must be discarded, the caller restores it from a checkpoint.
type StateStore interface {
	StateWriter
	// Load appends the stored state of device id to buf and returns it; ok
	// is false when the store holds no state for id.
	Load(id string, buf []byte) (state []byte, ok bool)
}

// StateWriter receives encoded device states: a StateStore, or the write
// batch of a checkpoint (Partition.Checkpoint).
type StateWriter interface {
	// Save stores the state of device id, replacing any earlier one. state
	// is valid only during the call (the writer copies it).
	Save(id string, state []byte)
	// Delete removes the state of device id, if any.
	Delete(id string)
}

// ErrBadState is wrapped by the errors of decoding a device state or a
// PartitionState that is truncated, of an unknown format version, or
// inconsistent.
var ErrBadState = errors.New("operators: bad state encoding")

// PartitionState is the partition-wide part of a Partition's state, beside
// the per-device states: the watermark and the counters. A snapshot of a
// partition is its PartitionState plus every device state.
type PartitionState struct {
	// Watermark in Unix ms: math.MinInt64 before the first valid record,
	// math.MaxInt64 after Finish.
	Watermark int64
	Stats     PartitionStats
}

// State returns the partition-wide state (watermark and counters).
func (p *Partition) State() PartitionState {
	return PartitionState{Watermark: p.wm, Stats: p.stats}
}

// Encoding versions.
const (
	deviceStateV1    = 1
	partitionStateV1 = 1
)

// deviceHeaderLen is the fixed prefix of an encoded device state: version
// byte and the wake time (big endian).
const deviceHeaderLen = 9

// AppendBinary appends the encoding of s to b: a version byte and seven
// zig-zag varints.
func (s PartitionState) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, partitionStateV1)
	for _, v := range [...]int64{s.Watermark, s.Stats.Received, s.Stats.Valid, s.Stats.Late,
		s.Stats.DeadLetters, s.Stats.WindowsFired, s.Stats.WorkPeriods} {
		b = appendVarint(b, v)
	}
	return b, nil
}

// UnmarshalBinary decodes what AppendBinary wrote. Errors wrap ErrBadState.
func (s *PartitionState) UnmarshalBinary(b []byte) error {
	d := stateDecoder{b: b}
	if v := d.byte(); d.err == nil && v != partitionStateV1 {
		return fmt.Errorf("%w: partition state version %d, want %d", ErrBadState, v, partitionStateV1)
	}
	var out PartitionState
	for _, dst := range [...]*int64{&out.Watermark, &out.Stats.Received, &out.Stats.Valid, &out.Stats.Late,
		&out.Stats.DeadLetters, &out.Stats.WindowsFired, &out.Stats.WorkPeriods} {
		*dst = d.varint()
	}
	if err := d.finish("partition state"); err != nil {
		return err
	}
	*s = out
	return nil
}

// encodeDeviceState appends the encoding of d, with wake time wake, to b.
//
// Format (version 1): byte 1; wake as 8 bytes big endian (two's
// complement); then the windows (uvarint count; per window zig-zag varint
// start, end − start, uvarint count, sum, compensation, min, max as 8-byte
// IEEE 754 bits, varint latest event time and offset, latitude, longitude as
// bits, fired byte), the pending readings (uvarint count; per reading varint
// event time, varint offset, metric bits, above byte) and the open work
// period (active byte; when active varint start, varint last, uvarint
// samples (>= 1), sum, compensation and max as bits). Floats keep their
// exact bits (NaN coordinates included), so a decoded state behaves exactly
// like the encoded one.
func encodeDeviceState(b []byte, d *deviceState, wake int64) []byte {
	b = append(b, deviceStateV1)
	b = appendU64(b, uint64(wake))
	b = appendUvarint(b, uint64(len(d.Windows)))
	for i := range d.Windows {
		w := &d.Windows[i]
		b = appendVarint(b, w.Start)
		b = appendVarint(b, w.End-w.Start)
		b = appendUvarint(b, uint64(w.Count))
		b = appendFloat(b, w.Sum)
		b = appendFloat(b, w.Comp)
		b = appendFloat(b, w.Min)
		b = appendFloat(b, w.Max)
		b = appendVarint(b, w.LatestT)
		b = appendVarint(b, w.LatestOffset)
		b = appendFloat(b, w.Lat)
		b = appendFloat(b, w.Lon)
		b = appendBool(b, w.Fired)
	}
	b = appendUvarint(b, uint64(len(d.Pending)))
	for i := range d.Pending {
		r := &d.Pending[i]
		b = appendVarint(b, r.T)
		b = appendVarint(b, r.Offset)
		b = appendFloat(b, r.Metric)
		b = appendBool(b, r.Above)
	}
	b = appendBool(b, d.Run.active())
	if d.Run.active() {
		b = appendVarint(b, d.Run.Start)
		b = appendVarint(b, d.Run.Last)
		b = appendUvarint(b, uint64(d.Run.Samples))
		b = appendFloat(b, d.Run.Sum)
		b = appendFloat(b, d.Run.Comp)
		b = appendFloat(b, d.Run.Max)
	}
	return b
}

// Minimum encoded sizes, to bound slice allocations by the input length.
const (
	minWindowBytes  = 3 + 4*8 + 2 + 2*8 + 1
	minPendingBytes = 2 + 8 + 1
)

// decodeDeviceState decodes an encoded state into d (reusing its slices)
// and returns the stored wake time. Errors wrap ErrBadState.
func decodeDeviceState(b []byte, d *deviceState) (int64, error) {
	dec := stateDecoder{b: b}
	if v := dec.byte(); dec.err == nil && v != deviceStateV1 {
		return 0, fmt.Errorf("%w: device state version %d, want %d", ErrBadState, v, deviceStateV1)
	}
	wake := int64(dec.u64())
	n := dec.count(minWindowBytes)
	d.Windows = d.Windows[:0]
	for range n {
		var w windowState
		w.Start = dec.varint()
		w.End = w.Start + dec.varint()
		w.Count = int64(dec.uvarint())
		w.Sum = dec.float()
		w.Comp = dec.float()
		w.Min = dec.float()
		w.Max = dec.float()
		w.LatestT = dec.varint()
		w.LatestOffset = dec.varint()
		w.Lat = dec.float()
		w.Lon = dec.float()
		w.Fired = dec.bool()
		d.Windows = append(d.Windows, w)
	}
	n = dec.count(minPendingBytes)
	d.Pending = d.Pending[:0]
	for range n {
		var r pendingReading
		r.T = dec.varint()
		r.Offset = dec.varint()
		r.Metric = dec.float()
		r.Above = dec.bool()
		d.Pending = append(d.Pending, r)
	}
	d.Run = workRun{}
	if dec.bool() {
		d.Run.Start = dec.varint()
		d.Run.Last = dec.varint()
		d.Run.Samples = int64(dec.uvarint())
		if dec.err == nil && d.Run.Samples <= 0 {
			return 0, fmt.Errorf("%w: device state: open work period with %d samples", ErrBadState, d.Run.Samples)
		}
		d.Run.Sum = dec.float()
		d.Run.Comp = dec.float()
		d.Run.Max = dec.float()
	}
	if err := dec.finish("device state"); err != nil {
		return 0, err
	}
	return wake, nil
}

// deviceStateWake returns the wake time stored in the header of an encoded
// device state without decoding the rest.
func deviceStateWake(b []byte) (int64, error) {
	if len(b) < deviceHeaderLen {
		return 0, fmt.Errorf("%w: device state of %d bytes is shorter than its %d-byte header", ErrBadState, len(b), deviceHeaderLen)
	}
	if b[0] != deviceStateV1 {
		return 0, fmt.Errorf("%w: device state version %d, want %d", ErrBadState, b[0], deviceStateV1)
	}
	d := stateDecoder{b: b[1:]}
	return int64(d.u64()), nil
}

func appendU64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendVarint(b []byte, v int64) []byte { return appendUvarint(b, uint64(v<<1)^uint64(v>>63)) }

func appendFloat(b []byte, f float64) []byte { return appendU64(b, math.Float64bits(f)) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// stateDecoder reads the primitives of the state encodings; the first
// error sticks and later reads return zero values.
type stateDecoder struct {
	b   []byte
	err error
}

func (d *stateDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", ErrBadState, what)
		d.b = nil
	}
}

func (d *stateDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *stateDecoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("flag")
	return false
}

func (d *stateDecoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("fixed 64-bit value")
		return 0
	}
	b := d.b
	v := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	d.b = d.b[8:]
	return v
}

func (d *stateDecoder) float() float64 { return math.Float64frombits(d.u64()) }

func (d *stateDecoder) uvarint() uint64 {
	var v uint64
	for i := 0; i < 10; i++ {
		if len(d.b) == 0 {
			break
		}
		c := d.b[0]
		d.b = d.b[1:]
		if i == 9 && c > 1 {
			break // overflows 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v
		}
	}
	d.fail("varint")
	return 0
}

func (d *stateDecoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads an element count and checks that the rest of the input can
// hold that many elements of at least minBytes each.
func (d *stateDecoder) count(minBytes int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minBytes) {
		d.fail("element count")
		return 0
	}
	return int(n)
}

func (d *stateDecoder) finish(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %s", ErrBadState, len(d.b), what)
	}
	return nil
}
