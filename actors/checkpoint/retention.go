package checkpoint

import (
	"cmp"
	"slices"
)

// Record is what retention knows of one checkpoint or savepoint of a job:
// eddy run builds it from the Catalog (Catalog.Retain), a cluster from the
// FSM's records (control's evictCheckpoints).
type Record struct {
	ID        uint64
	Savepoint bool
	// Complete: every partition acked it (a valid manifest; the FSM's
	// Complete).
	Complete bool
	// Aborted: given up (the FSM's Aborted). eddy run cannot tell an
	// aborted checkpoint in storage from one in progress and leaves it
	// false.
	Aborted bool
	// Restores: some partition restores from it (eddy run with
	// transactional sinks: the newest complete checkpoint whose commit the
	// partition made), so it is kept whatever its age.
	Restores bool
}

// Subsumed returns the ids of recs (one job's, any order, ids distinct)
// that retention drops, ascending. It is the one retention rule of both
// modes and a pure function of its arguments (the FSM applies it on every
// node). It keeps:
//
//   - every savepoint that is not aborted, complete or in progress (a
//     savepoint stays until it is deleted); it does not count towards
//     retain;
//   - the newest retain complete checkpoints (retain < 1 counts as 1);
//   - the newest retain incomplete records (in progress or aborted) newer
//     than the newest complete checkpoint or savepoint: the one in progress
//     is the newest record, and an aborted one holds the acks of the
//     partitions that made them;
//   - every record with Restores set.
//
// Everything else goes: older complete checkpoints, incomplete records
// older than the newest complete one (every partition acked that one
// later), aborted savepoints among them.
func Subsumed(recs []Record, retain int) []uint64 {
	retain = max(retain, 1)
	rs := slices.Clone(recs)
	slices.SortFunc(rs, func(a, b Record) int { return cmp.Compare(b.ID, a.ID) }) // newest first
	var newestComplete uint64
	for _, r := range rs {
		if r.Complete {
			newestComplete = r.ID
			break
		}
	}
	var out []uint64
	complete, incomplete := 0, 0
	for _, r := range rs {
		keep := false
		switch {
		case r.Savepoint && !r.Aborted:
			keep = true
		case r.Complete:
			complete++
			keep = complete <= retain
		case r.ID > newestComplete:
			incomplete++
			keep = incomplete <= retain
		}
		if !keep && !r.Restores {
			out = append(out, r.ID)
		}
	}
	slices.Reverse(out)
	return out
}
