package checkpoint

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Snapshot file format, version 1. All integers big endian.
//
//	magic      8 bytes  "EDDYSNAP"
//	version    uint16   1
//	header len uint32   n (at most 1 MiB)
//	header     n bytes  JSON of SnapshotHeader
//	records    each: kind byte (never 0), uvarint id length, id,
//	                 uvarint value length, value
//	end        byte 0
//	count      uint64   number of records
//	crc        uint32   CRC-32C (Castagnoli) of every byte before it
//	end magic  8 bytes  "EDDYSEND"
//
// The reader verifies all of it and that nothing follows; so a truncated,
// extended or bit-flipped file is reported as ErrCorrupt. The manifest of
// the checkpoint also records each snapshot's size and CRC.
const (
	snapshotMagic    = "EDDYSNAP"
	snapshotEndMagic = "EDDYSEND"
	// SnapshotVersion is the version of the snapshot format written.
	SnapshotVersion = 1

	maxHeaderBytes = 1 << 20
	maxIDBytes     = 1 << 16
	maxValueBytes  = 1 << 28
)

// ErrCorrupt is wrapped by errors about a snapshot or manifest that is
// truncated, altered or of an unknown format version.
var ErrCorrupt = errors.New("checkpoint: corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SnapshotHeader is the metadata at the start of a partition's snapshot:
// where the partition resumes and its partition-wide state. The keyed state
// follows as records.
type SnapshotHeader struct {
	Job       string `json:"job"`
	Partition int32  `json:"partition"`
	// Checkpoint is the id of the checkpoint the snapshot belongs to; 0
	// for a handoff snapshot.
	Checkpoint uint64 `json:"-"`
	// HandoffEpoch is the lease epoch of a handoff snapshot; 0 for a
	// checkpoint's. On disk both are the one int64 "checkpoint" field
	// eddy always wrote: the id, or minus the epoch of a handoff.
	HandoffEpoch uint64 `json:"-"`
	// Offset is the next source offset to read after a restore.
	Offset int64 `json:"offset"`
	// End is the bounded end offset the run used (exclusive); -1 unbounded.
	End int64 `json:"end"`
	// Finished: the final watermark was emitted (bounded mode).
	Finished bool `json:"finished,omitempty"`
	// State is operators.PartitionState in its binary encoding.
	State []byte `json:"state"`
	// Operators fingerprints the operator configuration that produced the
	// state; a restore with a different one is refused.
	Operators string `json:"operators"`
	// Poisoned counts records the actor sent to the dead-letter output
	// after they panicked the operators.
	Poisoned int64 `json:"poisoned,omitempty"`
	// CreatedMs is the wall clock at the barrier, Unix ms.
	CreatedMs int64 `json:"created_ms"`
}

// MarshalJSON writes h with its on-disk "checkpoint" field; ids and epochs
// must be below 2^63.
func (h SnapshotHeader) MarshalJSON() ([]byte, error) {
	type plain SnapshotHeader
	var c int64
	switch {
	case h.Checkpoint > math.MaxInt64 || h.HandoffEpoch > math.MaxInt64:
		return nil, fmt.Errorf("checkpoint: snapshot header: checkpoint %d or epoch %d not below 2^63", h.Checkpoint, h.HandoffEpoch)
	case h.Checkpoint != 0 && h.HandoffEpoch != 0:
		return nil, fmt.Errorf("checkpoint: snapshot header: both checkpoint %d and handoff epoch %d", h.Checkpoint, h.HandoffEpoch)
	case h.HandoffEpoch != 0:
		c = -int64(h.HandoffEpoch)
	default:
		c = int64(h.Checkpoint)
	}
	return json.Marshal(struct {
		plain
		Checkpoint int64 `json:"checkpoint"`
	}{plain(h), c})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *SnapshotHeader) UnmarshalJSON(b []byte) error {
	type plain SnapshotHeader
	var v struct {
		plain
		Checkpoint int64 `json:"checkpoint"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*h = SnapshotHeader(v.plain)
	h.Checkpoint, h.HandoffEpoch = 0, 0
	if v.Checkpoint < 0 {
		h.HandoffEpoch = uint64(-v.Checkpoint)
	} else {
		h.Checkpoint = uint64(v.Checkpoint)
	}
	return nil
}

// SnapshotInfo describes a written or read snapshot.
type SnapshotInfo struct {
	Bytes   int64
	CRC32C  uint32
	Records int64
}

// SnapshotWriter writes the snapshot format to an io.Writer. Not safe for
// concurrent use.
type SnapshotWriter struct {
	w       *bufio.Writer
	crc     uint32
	n       int64
	records int64
	scratch []byte
	err     error
}

// NewSnapshotWriter writes the magic, version and header to w and returns
// the writer of the records.
func NewSnapshotWriter(w io.Writer, h SnapshotHeader) (*SnapshotWriter, error) {
	hdr, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: snapshot header: %w", err)
	}
	if len(hdr) > maxHeaderBytes {
		return nil, fmt.Errorf("checkpoint: snapshot header of %d bytes is over %d", len(hdr), maxHeaderBytes)
	}
	sw := &SnapshotWriter{w: bufio.NewWriterSize(w, 256<<10)}
	b := append([]byte(snapshotMagic), 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(b[8:], SnapshotVersion)
	binary.BigEndian.PutUint32(b[10:], uint32(len(hdr)))
	sw.write(b)
	sw.write(hdr)
	return sw, sw.err
}

func (sw *SnapshotWriter) write(p []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, p)
	sw.n += int64(len(p))
	_, sw.err = sw.w.Write(p)
}

// Add appends one record. kind must not be 0.
func (sw *SnapshotWriter) Add(kind byte, id, value []byte) error {
	if kind == 0 {
		return errors.New("checkpoint: record kind 0 is reserved")
	}
	if len(id) > maxIDBytes || len(value) > maxValueBytes {
		return fmt.Errorf("checkpoint: record of %d+%d bytes is too large", len(id), len(value))
	}
	sw.scratch = append(sw.scratch[:0], kind)
	sw.scratch = binary.AppendUvarint(sw.scratch, uint64(len(id)))
	sw.write(sw.scratch)
	sw.write(id)
	sw.scratch = binary.AppendUvarint(sw.scratch[:0], uint64(len(value)))
	sw.write(sw.scratch)
	sw.write(value)
	sw.records++
	return sw.err
}

// Finish writes the trailer and flushes; the underlying writer is not
// closed. It returns the size and checksum of what was written.
func (sw *SnapshotWriter) Finish() (SnapshotInfo, error) {
	b := make([]byte, 1+8)
	binary.BigEndian.PutUint64(b[1:], uint64(sw.records))
	sw.write(b)
	crc := sw.crc
	t := binary.BigEndian.AppendUint32(nil, crc)
	t = append(t, snapshotEndMagic...)
	if sw.err == nil {
		_, sw.err = sw.w.Write(t)
		sw.n += int64(len(t))
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return SnapshotInfo{}, fmt.Errorf("checkpoint: write snapshot: %w", sw.err)
	}
	return SnapshotInfo{Bytes: sw.n, CRC32C: crc, Records: sw.records}, nil
}

// snapshotReader reads the snapshot format, checksumming as it goes.
type snapshotReader struct {
	r   *bufio.Reader
	crc uint32
	n   int64
	buf []byte
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w snapshot: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func (sr *snapshotReader) read(n int, what string) ([]byte, error) {
	if cap(sr.buf) < n {
		sr.buf = make([]byte, n)
	}
	b := sr.buf[:n]
	if _, err := io.ReadFull(sr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corrupt("truncated in the %s at byte %d", what, sr.n)
		}
		return nil, fmt.Errorf("checkpoint: read snapshot: %w", err)
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, b)
	sr.n += int64(n)
	return b, nil
}

func (sr *snapshotReader) uvarint(what string, limit uint64) (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := sr.read(1, what)
		if err != nil {
			return 0, err
		}
		v |= uint64(b[0]&0x7f) << (7 * i)
		if b[0] < 0x80 {
			if v > limit {
				return 0, corrupt("%s %d over the limit %d at byte %d", what, v, limit, sr.n)
			}
			return v, nil
		}
	}
	return 0, corrupt("bad varint in the %s at byte %d", what, sr.n)
}

// ReadSnapshot reads a snapshot from r: it calls header once with the
// header, then record for every record in file order (id and value are
// valid only during the call), and verifies the trailer. Errors of header
// and record are returned as they are; a malformed, truncated or
// checksum-failing file gives an error wrapping ErrCorrupt — possibly after
// record has seen records, so a caller applying them must undo that.
func ReadSnapshot(r io.Reader, header func(SnapshotHeader) error, record func(kind byte, id, value []byte) error) (SnapshotInfo, error) {
	sr := &snapshotReader{r: bufio.NewReaderSize(r, 256<<10)}
	b, err := sr.read(14, "preamble")
	if err != nil {
		return SnapshotInfo{}, err
	}
	if string(b[:8]) != snapshotMagic {
		return SnapshotInfo{}, corrupt("bad magic %q", b[:8])
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != SnapshotVersion {
		return SnapshotInfo{}, corrupt("format version %d, this eddy reads %d", v, SnapshotVersion)
	}
	n := binary.BigEndian.Uint32(b[10:])
	if n > maxHeaderBytes {
		return SnapshotInfo{}, corrupt("header length %d", n)
	}
	if b, err = sr.read(int(n), "header"); err != nil {
		return SnapshotInfo{}, err
	}
	var h SnapshotHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return SnapshotInfo{}, corrupt("header: %v", err)
	}
	if err := header(h); err != nil {
		return SnapshotInfo{}, err
	}
	var records int64
	id := make([]byte, 0, 64)
	for {
		k, err := sr.read(1, "record kind")
		if err != nil {
			return SnapshotInfo{}, err
		}
		kind := k[0]
		if kind == 0 {
			break
		}
		idLen, err := sr.uvarint("id length", maxIDBytes)
		if err != nil {
			return SnapshotInfo{}, err
		}
		b, err := sr.read(int(idLen), "record id")
		if err != nil {
			return SnapshotInfo{}, err
		}
		id = append(id[:0], b...)
		valLen, err := sr.uvarint("value length", maxValueBytes)
		if err != nil {
			return SnapshotInfo{}, err
		}
		val, err := sr.read(int(valLen), "record value")
		if err != nil {
			return SnapshotInfo{}, err
		}
		if err := record(kind, id, val); err != nil {
			return SnapshotInfo{}, err
		}
		records++
	}
	if b, err = sr.read(8, "record count"); err != nil {
		return SnapshotInfo{}, err
	}
	if c := int64(binary.BigEndian.Uint64(b)); c != records {
		return SnapshotInfo{}, corrupt("%d records, trailer says %d", records, c)
	}
	crc, size := sr.crc, sr.n
	t := make([]byte, 12)
	if _, err := io.ReadFull(sr.r, t); err != nil {
		return SnapshotInfo{}, corrupt("truncated in the trailer at byte %d", size)
	}
	if got := binary.BigEndian.Uint32(t); got != crc {
		return SnapshotInfo{}, corrupt("CRC-32C %08x, trailer says %08x", crc, got)
	}
	if string(t[4:]) != snapshotEndMagic {
		return SnapshotInfo{}, corrupt("bad end magic %q", t[4:])
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		return SnapshotInfo{}, corrupt("data after the end of the snapshot (%d bytes)", size+12)
	}
	return SnapshotInfo{Bytes: size + 12, CRC32C: crc, Records: records}, nil
}
