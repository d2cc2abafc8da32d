// Package state is the pebble state backend of partition actors: the
// analogue of Flink's RocksDB state backend.
//
// One DB per job and node lives in a local directory (Config.Dir). Each
// device partition owns a key prefix (Store) holding one key per device with
// open state — its windows, buffered readings and open work period, encoded
// by operators — and a metadata key written at every checkpoint. A Store is
// the operators.StateStore behind a partition's LRU cache of device states,
// so state can grow beyond memory: a partition keeps only its hot devices
// decoded in the Go heap.
//
// Local state is disposable. Open deletes what an earlier process left in
// the directory, pebble's write-ahead log is off, and a restarted partition
// restores from its last complete checkpoint (actors/checkpoint) instead.
// A checkpoint of a partition is: Partition.Checkpoint into a Batch, Commit,
// then Snapshot — a point-in-time pebble snapshot that another goroutine
// streams into checkpoint storage while the partition goes on processing.
//
// Errors: Load, Save and Delete panic with *Error (wrapping ErrStore), as
// the operators.StateStore contract asks; the partition actor turns that
// into a failed job, never into a dead letter.
//
// Usage:
//
//	db, err := state.Open(state.DefaultConfig("/var/lib/eddy/state/iot-work"))
//	store := db.Partition(3)
//	op.SetStore(store, 16384)          // op is the partition's *operators.Partition
//	b := store.NewBatch()               // at a checkpoint barrier
//	op.Checkpoint(b)
//	err = b.Commit()
//	snap := store.Snapshot()            // stream it out, then
//	snap.Close()
package state
