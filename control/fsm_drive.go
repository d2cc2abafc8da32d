package control

import (
	"time"

	"github.com/hashicorp/raft"
)

// ApplyCommand applies cmd to f as the Raft log entry at index (term 1,
// appended at at; zero = unknown) would, and returns the FSM's answer — for
// tests and tools that drive an FSM without Raft (cluster/assign's scripted
// planner cases). Indexes must grow from one call to the next. Errors:
// those of EncodeCommand, and the FSM's (ErrConflict, ErrNotFound, ...).
func (f *FSM) ApplyCommand(index uint64, at time.Time, cmd Command) (Result, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return Result{}, err
	}
	r, _ := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: at}).(*applyResponse)
	if r == nil {
		return Result{}, nil
	}
	return r.Result, r.Err
}
