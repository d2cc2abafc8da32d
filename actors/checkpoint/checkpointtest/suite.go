// Package checkpointtest is the test table of checkpoint.CheckpointCoordinator
// that every implementation of its ports runs: the storage ports of eddy run
// (actors/checkpoint) and the Raft ports of the cluster (control). One table,
// so that both modes follow one protocol.
package checkpointtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

// Job is the job name the table uses.
const Job = "iot-work"

// Ports are one job's coordinator ports under test, and the mode's side of
// the pending checkpoint.
type Ports struct {
	IDs   checkpoint.CheckpointIDCounter
	Store checkpoint.CompletedCheckpointStore
	// Started, when set, records the start of checkpoint id (with retain,
	// the coordinator's Retain) where the mode keeps pending checkpoints
	// (the cluster: a CheckpointStart through the FSM).
	Started func(t *testing.T, id uint64, kind checkpoint.Kind, partitions []int32, retain int)
	// Upload, when set, stores partition part's snapshot of checkpoint id
	// as the partition does before it acks, and returns its reference.
	Upload func(t *testing.T, kind checkpoint.Kind, id uint64, part int32) string
	// Acked, when set, records a valid ack there before the coordinator
	// sees it (the cluster: a CheckpointAck under the partition's lease).
	Acked func(t *testing.T, id uint64, ack checkpoint.PartitionAck)
}

// Backend opens the ports of Job; every call of the returned function opens
// them anew over the same stored state (a restart of the job).
type Backend func(t *testing.T) func() Ports

// Run runs the table against backend.
func Run(t *testing.T, backend Backend) {
	t.Run("protocol", func(t *testing.T) { testProtocol(t, backend(t)) })
	t.Run("pacing and ack timeout", func(t *testing.T) { testPacing(t, backend(t)) })
	t.Run("ids grow across restarts", func(t *testing.T) { testIDs(t, backend(t)) })
	t.Run("retention keeps savepoints and complete checkpoints", func(t *testing.T) { testRetention(t, backend(t)) })
}

var t0 = time.UnixMilli(1_764_800_000_000)

func coordinator(t *testing.T, p Ports, parts []int32, retain int) *checkpoint.CheckpointCoordinator {
	t.Helper()
	c, err := checkpoint.NewCheckpointCoordinator(checkpoint.CoordinatorConfig{
		Job: Job, Partitions: parts, Interval: 10 * time.Second, AckTimeout: 30 * time.Second, Retain: retain,
	}, p.IDs, p.Store, t0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func trigger(t *testing.T, p Ports, c *checkpoint.CheckpointCoordinator, kind checkpoint.Kind, at time.Time) uint64 {
	t.Helper()
	id, err := c.Trigger(context.Background(), kind, false, at)
	if err != nil {
		t.Fatalf("Trigger(%s): %v", kind, err)
	}
	if p.Started != nil {
		p.Started(t, id, kind, c.Config().Partitions, c.Config().Retain)
	}
	return id
}

func ackOf(id uint64, part int32) checkpoint.PartitionAck {
	return checkpoint.PartitionAck{Partition: part, Epoch: 1, Offset: int64(100*id) + int64(part), End: -1, Snapshot: fmt.Sprintf("snap-%d-%d", id, part)}
}

// ack uploads partition part's snapshot of the pending checkpoint id and
// feeds its ack to the mode, then to the coordinator.
func ack(t *testing.T, p Ports, c *checkpoint.CheckpointCoordinator, id uint64, part int32) *checkpoint.Manifest {
	t.Helper()
	a := ackOf(id, part)
	if p.Upload != nil {
		a.Snapshot = p.Upload(t, c.Pending().Kind, id, part)
	}
	if p.Acked != nil {
		p.Acked(t, id, a)
	}
	m, err := c.Ack(context.Background(), id, a, t0)
	if err != nil {
		t.Fatalf("ack of checkpoint %d by partition %d: %v", id, part, err)
	}
	return m
}

func complete(t *testing.T, p Ports, c *checkpoint.CheckpointCoordinator, kind checkpoint.Kind) uint64 {
	t.Helper()
	id := trigger(t, p, c, kind, t0)
	var m *checkpoint.Manifest
	for _, part := range c.Config().Partitions {
		m = ack(t, p, c, id, part)
	}
	if m == nil || m.ID != id || m.Kind != kind {
		t.Fatalf("last ack of %s %d returned manifest %+v", kind, id, m)
	}
	return id
}

func completedIDs(t *testing.T, s checkpoint.CompletedCheckpointStore) []uint64 {
	t.Helper()
	ms, err := s.Completed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func testProtocol(t *testing.T, open func() Ports) {
	ctx := context.Background()
	p := open()
	c := coordinator(t, p, []int32{2, 0, 1}, 3)
	id := trigger(t, p, c, checkpoint.KindCheckpoint, t0)
	if _, err := c.Trigger(ctx, checkpoint.KindSavepoint, false, t0); !errors.Is(err, checkpoint.ErrPending) {
		t.Fatalf("second Trigger while %d is pending: %v, want ErrPending", id, err)
	}
	if m := ack(t, p, c, id, 1); m != nil {
		t.Fatalf("first ack completed %d", id)
	}
	first := c.Pending().Acks[1]
	if m, err := c.Ack(ctx, id, first, t0); m != nil || err != nil {
		t.Fatalf("the same ack twice: %v %v", m, err)
	}
	other := first
	other.Offset++
	if _, err := c.Ack(ctx, id, other, t0); !errors.Is(err, checkpoint.ErrBadAck) {
		t.Fatalf("a different second ack: %v, want ErrBadAck", err)
	}
	if _, err := c.Ack(ctx, id, ackOf(id, 9), t0); !errors.Is(err, checkpoint.ErrBadAck) {
		t.Fatalf("ack of partition 9: %v, want ErrBadAck", err)
	}
	if got := c.Pending().Missing(c.Config().Partitions); !slices.Equal(got, []int32{0, 2}) {
		t.Fatalf("missing %v, want [0 2]", got)
	}
	ack(t, p, c, id, 0)
	m := ack(t, p, c, id, 2)
	if m == nil || m.ID != id || m.Job != Job || len(m.Partitions) != 3 {
		t.Fatalf("completing ack returned %+v", m)
	}
	for i, a := range m.Partitions {
		if want := ackOf(id, int32(i)); a.Partition != want.Partition || a.Offset != want.Offset {
			t.Fatalf("manifest partition %d: %+v, want %+v", i, a, want)
		}
	}
	if c.Pending() != nil {
		t.Fatalf("pending %+v after completion", c.Pending())
	}
	if _, err := c.Ack(ctx, id, ackOf(id, 0), t0); !errors.Is(err, checkpoint.ErrUnknownCheckpoint) {
		t.Fatalf("ack of a complete checkpoint: %v, want ErrUnknownCheckpoint", err)
	}
	got, err := c.Restorable(ctx)
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("Restorable: %v %v, want checkpoint %d", got, err, id)
	}
	if a, ok := got[0].Ack(2); !ok || a.Offset != ackOf(id, 2).Offset {
		t.Fatalf("restorable ack of partition 2: %+v %v", a, ok)
	}
}

func testPacing(t *testing.T, open func() Ports) {
	ctx := context.Background()
	p := open()
	c := coordinator(t, p, []int32{0, 1}, 3)
	if d := c.Due(t0.Add(9 * time.Second)); d.Trigger || d.Expired != 0 {
		t.Fatalf("due %+v before the interval", d)
	}
	if w := c.Wake(); !w.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("wake at %v, want t0+10s", w.Sub(t0))
	}
	at := t0.Add(10 * time.Second)
	if d := c.Due(at); !d.Trigger {
		t.Fatalf("due %+v after the interval, want a trigger", d)
	}
	id := trigger(t, p, c, checkpoint.KindCheckpoint, at)
	ack(t, p, c, id, 0)
	if d := c.Due(at.Add(29 * time.Second)); d.Trigger || d.Expired != 0 {
		t.Fatalf("due %+v while %d is pending within its ack timeout", d, id)
	}
	if w := c.Wake(); !w.Equal(at.Add(30 * time.Second)) {
		t.Fatalf("wake at %v, want the ack timeout t0+40s", w.Sub(t0))
	}
	if d := c.Due(at.Add(30 * time.Second)); d.Expired != id {
		t.Fatalf("due %+v after the ack timeout, want checkpoint %d expired", d, id)
	}
	pc := c.Abort(id, true)
	if pc == nil || pc.ID != id || !slices.Equal(pc.Missing(c.Config().Partitions), []int32{1}) {
		t.Fatalf("Abort returned %+v, want %d missing partition 1", pc, id)
	}
	if c.Abort(id, true) != nil {
		t.Fatal("second Abort returned the checkpoint again")
	}
	if _, err := c.Ack(ctx, id, ackOf(id, 1), t0); !errors.Is(err, checkpoint.ErrUnknownCheckpoint) {
		t.Fatalf("late ack of an aborted checkpoint: %v, want ErrUnknownCheckpoint", err)
	}
	if d := c.Due(at.Add(30 * time.Second)); !d.Trigger {
		t.Fatalf("due %+v right after an ack timeout, want the next at once", d)
	}
	at = at.Add(31 * time.Second)
	next := trigger(t, p, c, checkpoint.KindCheckpoint, at)
	if next <= id {
		t.Fatalf("checkpoint after %d numbered %d", id, next)
	}
	// A failed partition (not a timeout) aborts; the next waits an interval.
	c.Abort(next, false)
	if d := c.Due(at.Add(9 * time.Second)); d.Trigger {
		t.Fatalf("due %+v within the interval after a failed checkpoint", d)
	}
	if d := c.Due(at.Add(10 * time.Second)); !d.Trigger {
		t.Fatalf("due %+v an interval after a failed checkpoint, want a trigger", d)
	}
}

func testIDs(t *testing.T, open func() Ports) {
	p := open()
	c := coordinator(t, p, []int32{0, 1}, 3)
	a := complete(t, p, c, checkpoint.KindCheckpoint)
	b := trigger(t, p, c, checkpoint.KindCheckpoint, t0) // a crash after one upload and ack
	ack(t, p, c, b, 0)
	if b <= a {
		t.Fatalf("ids %d then %d", a, b)
	}
	p2 := open()
	c2 := coordinator(t, p2, []int32{0, 1}, 3)
	n := trigger(t, p2, c2, checkpoint.KindCheckpoint, t0)
	if n <= b {
		t.Fatalf("after a restart the next id is %d; ids %d and %d were used", n, a, b)
	}
	if got := completedIDs(t, p2.Store); !slices.Equal(got, []uint64{a}) {
		t.Fatalf("completed after the restart %v, want [%d]", got, a)
	}
}

func testRetention(t *testing.T, open func() Ports) {
	ctx := context.Background()
	p := open()
	c := coordinator(t, p, []int32{0, 1}, 2)
	sp := complete(t, p, c, checkpoint.KindSavepoint)
	var ids []uint64
	for range 3 {
		ids = append(ids, complete(t, p, c, checkpoint.KindCheckpoint))
		if _, err := c.Subsume(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := completedIDs(t, p.Store), []uint64{ids[2], ids[1], sp}; !slices.Equal(got, want) {
		t.Fatalf("completed %v, want %v (the newest 2 and the savepoint)", got, want)
	}
	// A run of aborted checkpoints longer than retain evicts no complete
	// one (checkpoint.Subsumed): each partition keeps a restore point.
	for i := range 3 {
		id := trigger(t, p, c, checkpoint.KindCheckpoint, t0)
		ack(t, p, c, id, 0)
		if i < 2 {
			c.Abort(id, true)
		}
		if _, err := c.Subsume(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := completedIDs(t, p.Store), []uint64{ids[2], ids[1], sp}; !slices.Equal(got, want) {
		t.Fatalf("completed after 2 aborted checkpoints and 1 in progress %v, want %v", got, want)
	}
	m, err := p.Store.Savepoint(ctx, sp)
	if err != nil || m.ID != sp || m.Kind != checkpoint.KindSavepoint || len(m.Partitions) != 2 {
		t.Fatalf("Savepoint(%d): %+v %v", sp, m, err)
	}
	if _, err := p.Store.Savepoint(ctx, ids[2]); !errors.Is(err, checkpoint.ErrNotExist) {
		t.Fatalf("Savepoint of checkpoint %d: %v, want ErrNotExist", ids[2], err)
	}
}
