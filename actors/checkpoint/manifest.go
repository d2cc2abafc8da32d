package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"
)

// Kind tells checkpoints from savepoints.
type Kind string

// Kinds of snapshots.
const (
	// KindCheckpoint: taken periodically; only the last Retain complete
	// ones are kept.
	KindCheckpoint Kind = "checkpoint"
	// KindSavepoint: taken on demand; kept until deleted.
	KindSavepoint Kind = "savepoint"
)

// ManifestVersion is the version of the manifest format written.
const ManifestVersion = 1

// Manifest is the record of a complete checkpoint or savepoint: written
// last, after every partition's snapshot, so its presence is what makes a
// checkpoint complete. Stored as one line "eddy-manifest VERSION CRC32C
// LENGTH" followed by LENGTH bytes of JSON whose CRC-32C (hex) is CRC32C.
type Manifest struct {
	Version int    `json:"version"`
	Job     string `json:"job"`
	ID      uint64 `json:"id"`
	Kind    Kind   `json:"kind"`
	// StartedMs and CompletedMs: wall clock, Unix ms.
	StartedMs   int64 `json:"started_ms"`
	CompletedMs int64 `json:"completed_ms"`
	// Final marks the checkpoint a bounded run takes after its final
	// watermark: the run is complete.
	Final bool `json:"final,omitempty"`
	// Transactional: the job writes to transactional sinks, whose
	// transaction of this checkpoint each partition commits after
	// completion and records with a commit marker (see Coordinator). A
	// partition restores only from checkpoints whose commit it recorded.
	Transactional bool `json:"transactional,omitempty"`
	// RestoredFrom names the savepoint this checkpoint was copied from
	// (eddy run --from-savepoint); its transactions were committed then.
	RestoredFrom string `json:"restored_from,omitempty"`
	// Partitions holds one ack per partition, sorted by partition.
	Partitions []PartitionAck `json:"partitions"`
}

// PartitionAck is one partition's acknowledgement of a checkpoint: where
// its snapshot is and where it resumes.
type PartitionAck struct {
	Partition int32 `json:"partition"`
	// Epoch is the lease epoch of the partition's owner when it acked
	// (fencing token; on a single node the run's start time, Unix ms).
	// A uint64 like control's lease epochs; manifests written when it was
	// an int64 load unchanged (epochs were never negative).
	Epoch uint64 `json:"epoch"`
	// Offset is the next source offset to read after a restore.
	Offset int64 `json:"offset"`
	// End is the bounded end offset of the run (exclusive); -1 unbounded.
	End int64 `json:"end"`
	// Snapshot is the storage key of the partition's snapshot.
	Snapshot string `json:"snapshot"`
	Bytes    int64  `json:"bytes"`
	CRC32C   uint32 `json:"crc32c"`
	// Devices is the number of devices with open state.
	Devices int64 `json:"devices"`
	// Watermark of the partition at the barrier, Unix ms.
	Watermark int64 `json:"watermark"`
	// SyncMs is how long the partition paused processing for the barrier;
	// DurationMs how long from the barrier to the ack (upload included).
	SyncMs     float64 `json:"sync_ms"`
	DurationMs float64 `json:"duration_ms"`
}

// Name returns the directory name of the checkpoint ("chk-…") or
// savepoint ("sp-…"): the kind prefix and the id zero-padded to 20 digits,
// so that names sort like ids.
func (m *Manifest) Name() string { return dirName(m.Kind, m.ID) }

// Bytes returns the total size of the snapshots.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, a := range m.Partitions {
		n += a.Bytes
	}
	return n
}

// Ack returns the ack of partition p.
func (m *Manifest) Ack(p int32) (PartitionAck, bool) {
	for _, a := range m.Partitions {
		if a.Partition == p {
			return a, true
		}
	}
	return PartitionAck{}, false
}

func dirName(k Kind, id uint64) string {
	prefix := "chk-"
	if k == KindSavepoint {
		prefix = "sp-"
	}
	return fmt.Sprintf("%s%020d", prefix, id)
}

// parseDirName is the inverse of dirName.
func parseDirName(name string) (Kind, uint64, bool) {
	var k Kind
	var digits string
	switch {
	case strings.HasPrefix(name, "chk-"):
		k, digits = KindCheckpoint, name[4:]
	case strings.HasPrefix(name, "sp-"):
		k, digits = KindSavepoint, name[3:]
	default:
		return "", 0, false
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || id == 0 || len(digits) != 20 {
		return "", 0, false
	}
	return k, id, true
}

const manifestMagic = "eddy-manifest"

// MarshalManifest encodes m with its checksum line.
func MarshalManifest(m *Manifest) ([]byte, error) {
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: manifest: %w", err)
	}
	js = append(js, '\n')
	head := fmt.Sprintf("%s %d %08x %d\n", manifestMagic, ManifestVersion, crc32.Checksum(js, castagnoli), len(js))
	return append([]byte(head), js...), nil
}

// UnmarshalManifest decodes what MarshalManifest wrote; errors wrap
// ErrCorrupt.
func UnmarshalManifest(b []byte) (*Manifest, error) {
	line, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return nil, fmt.Errorf("%w manifest: no header line", ErrCorrupt)
	}
	var magic string
	var version, length int
	var crc uint32
	if n, err := fmt.Sscanf(string(line), "%s %d %x %d", &magic, &version, &crc, &length); err != nil || n != 4 || magic != manifestMagic {
		return nil, fmt.Errorf("%w manifest: bad header line %q", ErrCorrupt, line)
	}
	if version != ManifestVersion {
		return nil, fmt.Errorf("%w manifest: version %d, this eddy reads %d", ErrCorrupt, version, ManifestVersion)
	}
	if length != len(rest) {
		return nil, fmt.Errorf("%w manifest: %d bytes of JSON, header says %d", ErrCorrupt, len(rest), length)
	}
	if got := crc32.Checksum(rest, castagnoli); got != crc {
		return nil, fmt.Errorf("%w manifest: CRC-32C %08x, header says %08x", ErrCorrupt, got, crc)
	}
	var m Manifest
	if err := json.Unmarshal(rest, &m); err != nil {
		return nil, fmt.Errorf("%w manifest: %v", ErrCorrupt, err)
	}
	if m.ID == 0 || (m.Kind != KindCheckpoint && m.Kind != KindSavepoint) {
		return nil, fmt.Errorf("%w manifest: id %d, kind %q", ErrCorrupt, m.ID, m.Kind)
	}
	return &m, nil
}

// Started returns StartedMs as a time.
func (m *Manifest) Started() time.Time { return time.UnixMilli(m.StartedMs) }

// Completed returns CompletedMs as a time.
func (m *Manifest) Completed() time.Time { return time.UnixMilli(m.CompletedMs) }
