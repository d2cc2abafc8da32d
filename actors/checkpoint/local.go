package checkpoint

import (
	"context"
	"sync"
)

// StorageIDCounter is the CheckpointIDCounter of eddy run: it continues
// after the largest id in the job's checkpoint storage (Catalog.MaxID;
// checkpoints and savepoints share the sequence, and the newest directory
// is never deleted by retention) and after every id Reserve saw.
type StorageIDCounter struct {
	mu   sync.Mutex
	last uint64
}

var _ CheckpointIDCounter = (*StorageIDCounter)(nil)

// NewStorageIDCounter returns the id counter of cat's job. Open it before
// cat.DeleteIncomplete removes what a crashed run left, so that the ids of
// those incomplete checkpoints are not used again. (An id whose checkpoint
// stored nothing before a crash can come back; nothing refers to it.)
func NewStorageIDCounter(ctx context.Context, cat *Catalog) (*StorageIDCounter, error) {
	last, err := cat.MaxID(ctx)
	if err != nil {
		return nil, err
	}
	return &StorageIDCounter{last: last}, nil
}

// Next implements CheckpointIDCounter.
func (c *StorageIDCounter) Next(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last++
	return c.last, nil
}

// Reserve makes every id handed out from now on greater than id: a job
// whose transactional sinks committed checkpoint id (as their
// CommitTracker says) must not number a new checkpoint id or lower, even if
// checkpoint storage lost that history.
func (c *StorageIDCounter) Reserve(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, id)
}

// StorageCheckpointStore is the CompletedCheckpointStore of eddy run: one
// manifest per complete checkpoint or savepoint in the job's Catalog,
// written last and atomically.
type StorageCheckpointStore struct {
	cat        *Catalog
	partitions []int32
}

var _ CompletedCheckpointStore = (*StorageCheckpointStore)(nil)

// NewStorageCheckpointStore returns the store of cat's job, whose
// partitions retention keeps a restore point for (see Catalog.Retain).
func NewStorageCheckpointStore(cat *Catalog, partitions []int32) *StorageCheckpointStore {
	return &StorageCheckpointStore{cat: cat, partitions: partitions}
}

// Catalog returns the catalog the store writes to.
func (s *StorageCheckpointStore) Catalog() *Catalog { return s.cat }

// Add implements CompletedCheckpointStore: it writes m's manifest.
func (s *StorageCheckpointStore) Add(ctx context.Context, m *Manifest) error {
	return s.cat.WriteManifest(ctx, m)
}

// Completed implements CompletedCheckpointStore (Catalog.Complete).
func (s *StorageCheckpointStore) Completed(ctx context.Context) ([]*Manifest, error) {
	return s.cat.Complete(ctx)
}

// Savepoint implements CompletedCheckpointStore (Catalog.Savepoint).
func (s *StorageCheckpointStore) Savepoint(ctx context.Context, id uint64) (*Manifest, error) {
	return s.cat.Savepoint(ctx, id)
}

// Subsume implements CompletedCheckpointStore (Catalog.Retain): it also
// deletes incomplete checkpoints older than the newest complete one.
func (s *StorageCheckpointStore) Subsume(ctx context.Context, retain int) ([]string, error) {
	return s.cat.Retain(ctx, retain, s.partitions)
}
