package checkpoint

import (
	"slices"
	"testing"
)

// TestSubsumed: the retention rule of both modes, one case per clause of
// its documentation.
func TestSubsumed(t *testing.T) {
	chk := func(id uint64) Record { return Record{ID: id, Complete: true} }
	pending := func(id uint64) Record { return Record{ID: id} }
	aborted := func(id uint64) Record { return Record{ID: id, Aborted: true} }
	sp := func(id uint64) Record { return Record{ID: id, Savepoint: true, Complete: true} }
	for _, tc := range []struct {
		name   string
		recs   []Record
		retain int
		want   []uint64
	}{
		{"nothing", nil, 3, nil},
		{"the newest retain complete", []Record{chk(1), chk(2), chk(3), chk(4)}, 2, []uint64{1, 2}},
		{"any order", []Record{chk(4), chk(1), chk(3), chk(2)}, 2, []uint64{1, 2}},
		{"retain below 1 counts as 1", []Record{chk(1), chk(2)}, 0, []uint64{1}},
		{"savepoints are neither counted nor evicted", []Record{sp(1), chk(2), sp(3), chk(4), chk(5)}, 1, []uint64{2, 4}},
		{"a savepoint in progress stays", []Record{chk(1), chk(2), {ID: 3, Savepoint: true}}, 1, []uint64{1}},
		{"an aborted savepoint is an aborted record", []Record{{ID: 1, Savepoint: true, Aborted: true}, chk(2), {ID: 3, Savepoint: true, Aborted: true}}, 1, []uint64{1}},
		{"incomplete older than the newest complete go", []Record{chk(1), aborted(2), pending(3), chk(4)}, 3, []uint64{2, 3}},
		{"a complete savepoint also subsumes older incomplete ones", []Record{chk(1), aborted(2), sp(3), pending(4)}, 3, []uint64{2}},
		{"a run of aborts evicts no complete checkpoint", []Record{chk(1), chk(2), aborted(3), aborted(4), aborted(5), aborted(6), pending(7)}, 2, []uint64{3, 4, 5}},
		{"the newest retain incomplete without any complete", []Record{aborted(1), aborted(2), pending(3)}, 2, []uint64{1}},
		{"a restore point stays whatever its age", []Record{chk(1), {ID: 2, Complete: true, Restores: true}, chk(3), chk(4), aborted(5)}, 1, []uint64{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.recs)
			if got := Subsumed(tc.recs, tc.retain); !slices.Equal(got, tc.want) {
				t.Errorf("Subsumed(%+v, %d) = %v, want %v", tc.recs, tc.retain, got, tc.want)
			}
			if !slices.Equal(in, tc.recs) {
				t.Errorf("Subsumed changed its input: %+v", tc.recs)
			}
		})
	}
}
