package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"time"
)

// Catalog is the view of one job's checkpoints and savepoints in storage.
// Layout below the storage root:
//
//	JOB/chk-00000000000000000042/p-00003.snap   partition 3's snapshot
//	JOB/chk-00000000000000000042/commit-00003   partition 3 committed its transactions of 42
//	JOB/chk-00000000000000000042/MANIFEST       written last: 42 is complete
//	JOB/sp-00000000000000000043/...             a savepoint, same layout
//
// JOB is the job name, path-escaped. Ids are shared by checkpoints and
// savepoints and only grow. Safe for concurrent use; it keeps no state.
type Catalog struct {
	st     *Storage
	job    string
	prefix string
}

// NewCatalog returns the catalog of job in st.
func NewCatalog(st *Storage, job string) *Catalog {
	return &Catalog{st: st, job: job, prefix: url.PathEscape(job) + "/"}
}

// Storage returns the storage of the catalog.
func (c *Catalog) Storage() *Storage { return c.st }

// Job returns the job name.
func (c *Catalog) Job() string { return c.job }

func (c *Catalog) dir(k Kind, id uint64) string { return c.prefix + dirName(k, id) + "/" }

// SnapshotKey returns the storage key of partition p's snapshot in
// checkpoint or savepoint id.
func (c *Catalog) SnapshotKey(k Kind, id uint64, p int32) string {
	return fmt.Sprintf("%sp-%05d.snap", c.dir(k, id), p)
}

func (c *Catalog) manifestKey(k Kind, id uint64) string { return c.dir(k, id) + "MANIFEST" }

func (c *Catalog) commitKey(k Kind, id uint64, p int32) string {
	return fmt.Sprintf("%scommit-%05d", c.dir(k, id), p)
}

// Entry is one checkpoint or savepoint directory.
type Entry struct {
	Kind Kind
	ID   uint64
	// Manifest is nil when the checkpoint is incomplete (no manifest) or
	// its manifest is unreadable (Err says why).
	Manifest *Manifest
	Err      error
}

// Name returns the directory name ("chk-…" or "sp-…").
func (e Entry) Name() string { return dirName(e.Kind, e.ID) }

// List returns every checkpoint and savepoint directory of the job, by id
// ascending, reading each manifest. A missing manifest leaves Manifest and
// Err nil; a corrupt one sets Err (wrapping ErrCorrupt).
func (c *Catalog) List(ctx context.Context) ([]Entry, error) {
	dirs, err := c.st.ListDirs(ctx, c.prefix)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range dirs {
		k, id, ok := parseDirName(d)
		if !ok {
			continue
		}
		e := Entry{Kind: k, ID: id}
		b, err := c.st.ReadAll(ctx, c.manifestKey(k, id))
		switch {
		case errors.Is(err, ErrNotExist):
		case err != nil:
			return nil, err
		default:
			e.Manifest, e.Err = UnmarshalManifest(b)
			if e.Err == nil && (e.Manifest.ID != id || e.Manifest.Kind != k || e.Manifest.Job != c.job) {
				e.Manifest, e.Err = nil, fmt.Errorf("%w manifest: %s holds %s %d of job %q", ErrCorrupt, d, e.Manifest.Kind, e.Manifest.ID, e.Manifest.Job)
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Complete returns the complete checkpoints and savepoints (a valid
// manifest), newest first: the candidates to restore from.
func (c *Catalog) Complete(ctx context.Context) ([]*Manifest, error) {
	es, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Manifest
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Manifest != nil {
			out = append(out, es[i].Manifest)
		}
	}
	return out, nil
}

// Savepoint returns the complete savepoint id.
func (c *Catalog) Savepoint(ctx context.Context, id uint64) (*Manifest, error) {
	b, err := c.st.ReadAll(ctx, c.manifestKey(KindSavepoint, id))
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("%w: savepoint %d of job %q is not in %s (or is incomplete)", ErrNotExist, id, c.job, c.st.URL())
	}
	if err != nil {
		return nil, err
	}
	m, err := UnmarshalManifest(b)
	if err != nil {
		return nil, fmt.Errorf("savepoint %d: %w", id, err)
	}
	return m, nil
}

// WriteManifest stores m, completing its checkpoint.
func (c *Catalog) WriteManifest(ctx context.Context, m *Manifest) error {
	b, err := MarshalManifest(m)
	if err != nil {
		return err
	}
	return c.st.WriteAll(ctx, c.manifestKey(m.Kind, m.ID), b)
}

// Delete deletes checkpoint or savepoint id: the manifest first, so that a
// half-deleted one is incomplete rather than complete with snapshots
// missing.
func (c *Catalog) Delete(ctx context.Context, k Kind, id uint64) error {
	if err := c.st.Delete(ctx, c.manifestKey(k, id)); err != nil {
		return err
	}
	return c.st.DeletePrefix(ctx, c.dir(k, id))
}

// MarkCommitted records that partition p committed the transactions of m.
func (c *Catalog) MarkCommitted(ctx context.Context, k Kind, id uint64, p int32) error {
	return c.st.WriteAll(ctx, c.commitKey(k, id, p), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"))
}

// Committed reports whether partition p may restore from m: m is not
// transactional, or p recorded its commit of m.
func (c *Catalog) Committed(ctx context.Context, m *Manifest, p int32) (bool, error) {
	if !m.Transactional {
		return true, nil
	}
	return c.st.Exists(ctx, c.commitKey(m.Kind, m.ID, p))
}

// Adopt copies savepoint sp into a new complete checkpoint id (its
// snapshots and a manifest with RestoredFrom set): the starting point of a
// run from a savepoint, so that a crash before the run's first checkpoint
// restores the savepoint, not an older checkpoint. Its transactions count as
// committed.
func (c *Catalog) Adopt(ctx context.Context, sp *Manifest, id uint64) (*Manifest, error) {
	m := *sp
	m.Kind, m.ID = KindCheckpoint, id
	m.RestoredFrom = sp.Name()
	m.Transactional = false
	m.Final = false
	m.Partitions = slices.Clone(sp.Partitions)
	for i := range m.Partitions {
		a := &m.Partitions[i]
		dst := c.SnapshotKey(KindCheckpoint, id, a.Partition)
		if err := c.st.Copy(ctx, dst, a.Snapshot); err != nil {
			return nil, fmt.Errorf("checkpoint: copy savepoint %s: %w", sp.Name(), err)
		}
		a.Snapshot = dst
	}
	now := time.Now().UnixMilli()
	m.StartedMs, m.CompletedMs = now, now
	if err := c.WriteManifest(ctx, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Retain applies retention (Subsumed) with keep to the job's directories:
// each partition's restore point is the newest complete checkpoint or
// savepoint whose commit it made (see Committed), and an incomplete
// directory counts as in progress (storage does not record an abort). It
// deletes what Subsumed drops and returns the deleted directory names.
func (c *Catalog) Retain(ctx context.Context, keep int, partitions []int32) ([]string, error) {
	es, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(es))
	byID := make(map[uint64]Entry, len(es))
	for i, e := range es {
		recs[i] = Record{ID: e.ID, Savepoint: e.Kind == KindSavepoint, Complete: e.Manifest != nil}
		byID[e.ID] = e
	}
	for _, p := range partitions {
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].Manifest == nil {
				continue
			}
			ok, err := c.Committed(ctx, es[i].Manifest, p)
			if err != nil {
				return nil, err
			}
			if ok {
				recs[i].Restores = true
				break
			}
		}
	}
	var deleted []string
	for _, id := range Subsumed(recs, keep) {
		e := byID[id]
		if err := c.Delete(ctx, e.Kind, e.ID); err != nil {
			return deleted, err
		}
		deleted = append(deleted, e.Name())
	}
	return deleted, nil
}

// DeleteIncomplete deletes every checkpoint and savepoint without a valid
// manifest: what a crashed run left. Call it only when no checkpoint of the
// job is in progress.
func (c *Catalog) DeleteIncomplete(ctx context.Context) ([]string, error) {
	es, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, e := range es {
		if e.Manifest == nil {
			if err := c.Delete(ctx, e.Kind, e.ID); err != nil {
				return deleted, err
			}
			deleted = append(deleted, e.Name())
		}
	}
	return deleted, nil
}

// MaxID returns the largest id in use (0 when none).
func (c *Catalog) MaxID(ctx context.Context) (uint64, error) {
	es, err := c.List(ctx)
	if err != nil {
		return 0, err
	}
	if len(es) == 0 {
		return 0, nil
	}
	return es[len(es)-1].ID, nil
}
