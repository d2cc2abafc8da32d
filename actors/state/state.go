package state

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/eddy-iot/eddy/operators"
)

var (
	// ErrStore is wrapped by every *Error: a read or write of the pebble
	// store failed.
	ErrStore = errors.New("state: store failure")
	// ErrClosed is returned by DB methods after Close.
	ErrClosed = errors.New("state: closed")
	// ErrLocked is returned by Open when another process uses the directory.
	ErrLocked = errors.New("state: directory in use by another process")
	// ErrNotStateDir is returned by Open for a non-empty directory that is
	// not an eddy state directory (Open would otherwise delete its files).
	ErrNotStateDir = errors.New("state: not an eddy state directory")
)

// Error is a failed store operation. It is what Store panics with (the
// operators.StateStore contract): the partition actor recovers it and fails
// the job instead of treating the record as poison.
type Error struct {
	Op        string // "load", "save", "delete", ...
	Partition int32
	Err       error
}

func (e *Error) Error() string {
	return fmt.Sprintf("state: %s of partition %d: %v", e.Op, e.Partition, e.Err)
}

// Unwrap returns the pebble error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrStore) true.
func (e *Error) Is(target error) bool { return target == ErrStore }

// Config configures a DB.
type Config struct {
	// Dir is the state directory; required. Open creates it, and deletes
	// the state a previous process left in it: local state is disposable,
	// partitions restore from checkpoints.
	Dir string
	// CacheBytes is pebble's block cache; >= 0; default 64 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one pebble memtable; >= 1 MiB when set;
	// default 64 MiB (a larger memtable serves more loads of evicted states from memory).
	MemTableBytes int64
	// Log receives pebble's error messages; nil: slog.Default().
	Log *slog.Logger
}

// Defaults of Config.
const (
	DefaultCacheBytes    = 64 << 20
	DefaultMemTableBytes = 64 << 20
)

// DefaultConfig returns the defaults with the given directory.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, CacheBytes: DefaultCacheBytes, MemTableBytes: DefaultMemTableBytes}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("state: Dir is empty; set state.dir in the job spec (a local directory for the pebble state store)")
	case c.CacheBytes < 0:
		return fmt.Errorf("state: CacheBytes is %d; must be >= 0 (0 means the default %d)", c.CacheBytes, DefaultCacheBytes)
	case c.MemTableBytes != 0 && c.MemTableBytes < 1<<20:
		return fmt.Errorf("state: MemTableBytes is %d; must be >= 1 MiB (0 means the default %d)", c.MemTableBytes, DefaultMemTableBytes)
	}
	return nil
}

// Layout of the state directory: a lock file, and pebble's files below
// pebbleDir.
const (
	lockFile  = "EDDY-STATE.lock"
	pebbleDir = "pebble"
)

// DB is the pebble state store of the partitions of one job on this node.
// Each partition keeps its keys under its own prefix (see Store). The write
// ahead log is off: the contents are rebuilt from a checkpoint after a
// restart, so durability is the checkpoint's job. Safe for concurrent use;
// each Store is used by one partition actor.
type DB struct {
	db   *pebble.DB
	lock *os.File
	dir  string

	mu     sync.Mutex // serialises Close
	closed atomic.Bool
}

// Open locks cfg.Dir (ErrLocked when another process holds it), deletes
// the state of any earlier process there and opens an empty pebble store.
// A non-empty directory without eddy's lock file is refused with
// ErrNotStateDir rather than emptied.
func Open(cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MemTableBytes == 0 {
		cfg.MemTableBytes = DefaultMemTableBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	ours := len(ents) == 0
	for _, e := range ents {
		ours = ours || e.Name() == lockFile
	}
	if !ours {
		return nil, fmt.Errorf("%w: %s is not empty and has no %s; give state.dir an empty or new directory", ErrNotStateDir, cfg.Dir, lockFile)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := lockExclusive(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, cfg.Dir, err)
	}
	for _, e := range ents {
		if e.Name() != lockFile {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, e.Name())); err != nil {
				lock.Close()
				return nil, fmt.Errorf("state: clear %s: %w", cfg.Dir, err)
			}
		}
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: uint64(cfg.MemTableBytes),
		DisableWAL:   true,
		Logger:       pebbleLogger{cfg.Log},
	}
	// Bloom filters on every level: a state load is a point lookup (as in
	// Flink's RocksDB backend, which enables them too).
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		// Device states are small binary records that compress poorly;
		// decompressing blocks dominated the loads of evicted states.
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err := pebble.Open(filepath.Join(cfg.Dir, pebbleDir), opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("state: open pebble in %s: %w", cfg.Dir, err)
	}
	return &DB{db: db, lock: lock, dir: cfg.Dir}, nil
}

// Dir returns the state directory.
func (d *DB) Dir() string { return d.dir }

// Close closes pebble and releases the directory lock; the files stay
// (the next Open deletes them). Idempotent. Stores must not be used after
// Close.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	err := d.db.Close()
	if cerr := d.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// DiskBytes returns the bytes of pebble's files on disk.
func (d *DB) DiskBytes() uint64 {
	return d.db.Metrics().DiskSpaceUsage()
}

// Key kinds below a partition's prefix.
const (
	// KindDevice keys hold one device state each (key: kind + device id).
	KindDevice byte = 'd'
	// KindMeta is the single key of a partition's actor-level metadata
	// (source offset, partition state), written at each checkpoint.
	KindMeta byte = 'm'
)

// Store is the key range of one device partition: keys are 'p', the
// partition as 4 bytes big endian, '/', a kind byte and, for devices, the
// device id. It implements operators.StateStore: Load, Save and Delete panic
// with an *Error when pebble fails. Not safe for concurrent use.
type Store struct {
	d         *DB
	partition int32
	prefix    []byte
	key       []byte
}

var _ operators.StateStore = (*Store)(nil)

// Partition returns the store of device partition p.
func (d *DB) Partition(p int32) *Store {
	u := uint32(p)
	prefix := []byte{'p', byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u), '/'}
	return &Store{d: d, partition: p, prefix: prefix}
}

func (s *Store) keyOf(kind byte, id string) []byte {
	s.key = append(append(append(s.key[:0], s.prefix...), kind), id...)
	return s.key
}

// checkOpen panics with ErrClosed after DB.Close (pebble would panic with
// a bare string).
func (s *Store) checkOpen(op string) {
	if s.d.closed.Load() {
		s.fail(op, ErrClosed)
	}
}

func (s *Store) fail(op string, err error) {
	panic(&Error{Op: op, Partition: s.partition, Err: err})
}

// Load implements operators.StateStore.
func (s *Store) Load(id string, buf []byte) ([]byte, bool) {
	s.checkOpen("load")
	v, closer, err := s.d.db.Get(s.keyOf(KindDevice, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return buf, false
	}
	if err != nil {
		s.fail("load", err)
	}
	buf = append(buf, v...)
	closer.Close()
	return buf, true
}

// Save implements operators.StateStore.
func (s *Store) Save(id string, state []byte) {
	s.checkOpen("save")
	if err := s.d.db.Set(s.keyOf(KindDevice, id), state, pebble.NoSync); err != nil {
		s.fail("save", err)
	}
}

// Delete implements operators.StateStore.
func (s *Store) Delete(id string) {
	s.checkOpen("delete")
	if err := s.d.db.Delete(s.keyOf(KindDevice, id), pebble.NoSync); err != nil {
		s.fail("delete", err)
	}
}

// Clear deletes every key of the partition.
func (s *Store) Clear() error {
	if s.d.closed.Load() {
		return &Error{Op: "clear", Partition: s.partition, Err: ErrClosed}
	}
	end := append([]byte(nil), s.prefix...)
	end[len(end)-1]++ // '/' + 1: just past the prefix
	if err := s.d.db.DeleteRange(s.prefix, end, pebble.NoSync); err != nil {
		return &Error{Op: "clear", Partition: s.partition, Err: err}
	}
	return nil
}

// batchCommitBytes is the size at which Batch.Put commits on its own, to
// bound the memory of a restore.
const batchCommitBytes = 4 << 20

// Batch collects writes to a Store and applies them atomically on Commit
// (Put commits by itself every 4 MiB). It is an operators.StateWriter
// (Save/Delete panic on failure, like Store's). Not safe for concurrent use.
type Batch struct {
	s   *Store
	b   *pebble.Batch
	key []byte
	err error
}

var _ operators.StateWriter = (*Batch)(nil)

// NewBatch returns an empty batch over s.
func (s *Store) NewBatch() *Batch {
	s.checkOpen("batch")
	return &Batch{s: s, b: s.d.db.NewBatch()}
}

func (b *Batch) keyOf(kind byte, id []byte) []byte {
	b.key = append(append(append(b.key[:0], b.s.prefix...), kind), id...)
	return b.key
}

// Save implements operators.StateWriter.
func (b *Batch) Save(id string, state []byte) {
	if err := b.b.Set(b.keyOf(KindDevice, []byte(id)), state, nil); err != nil {
		b.s.fail("save", err)
	}
}

// Delete implements operators.StateWriter.
func (b *Batch) Delete(id string) {
	if err := b.b.Delete(b.keyOf(KindDevice, []byte(id)), nil); err != nil {
		b.s.fail("delete", err)
	}
}

// Put sets key kind+id to value (a record of a snapshot being restored).
// Every 4 MiB the batch is committed and starts over.
func (b *Batch) Put(kind byte, id, value []byte) error {
	if err := b.b.Set(b.keyOf(kind, id), value, nil); err != nil {
		return &Error{Op: "put", Partition: b.s.partition, Err: err}
	}
	if b.b.Len() >= batchCommitBytes {
		return b.Commit()
	}
	return nil
}

// Commit applies the writes so far (without sync: see DB) and empties the
// batch for reuse.
func (b *Batch) Commit() error {
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return &Error{Op: "commit", Partition: b.s.partition, Err: err}
	}
	b.b.Reset()
	return nil
}

// Close releases the batch without committing what is left.
func (b *Batch) Close() { _ = b.b.Close() }

// Snapshot is a point-in-time view of a partition's keys (a pebble
// snapshot): writes after it are not seen. Safe to read from another
// goroutine while the partition goes on writing; Close it when done.
type Snapshot struct {
	s    *Store
	snap *pebble.Snapshot
}

// Snapshot returns a view of the partition as of now.
func (s *Store) Snapshot() *Snapshot {
	s.checkOpen("snapshot")
	return &Snapshot{s: s, snap: s.d.db.NewSnapshot()}
}

// Each calls fn for every key of the partition in key order, with the key's
// kind and the rest of the key (the device id for KindDevice). key and
// value are valid only during the call. It stops at and returns the first
// error of fn or of pebble.
func (sn *Snapshot) Each(fn func(kind byte, id, value []byte) error) error {
	end := append([]byte(nil), sn.s.prefix...)
	end[len(end)-1]++
	it, err := sn.snap.NewIter(&pebble.IterOptions{LowerBound: sn.s.prefix, UpperBound: end})
	if err != nil {
		return &Error{Op: "iterate", Partition: sn.s.partition, Err: err}
	}
	n := len(sn.s.prefix)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return &Error{Op: "iterate", Partition: sn.s.partition, Err: err}
		}
		if err := fn(k[n], k[n+1:], v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return &Error{Op: "iterate", Partition: sn.s.partition, Err: err}
	}
	return nil
}

// Close releases the snapshot. Idempotent.
func (sn *Snapshot) Close() {
	if sn.snap != nil {
		_ = sn.snap.Close()
		sn.snap = nil
	}
}

// pebbleLogger routes pebble's messages to slog: info is dropped (pebble
// reports every flush and compaction), errors are logged.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(string, ...any) {}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble fatal: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("pebble: "+format, args...))
}
