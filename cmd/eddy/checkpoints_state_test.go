package main

import (
	"testing"

	"github.com/eddy-iot/eddy/control"
)

func TestCheckpointState(t *testing.T) {
	for _, c := range []struct {
		cp   control.Checkpoint
		want string
	}{
		{control.Checkpoint{Complete: true}, "complete"},
		{control.Checkpoint{}, "pending"},
		{control.Checkpoint{Aborted: true, Missing: []int32{1, 4}, AbortReason: "acks missing after 30s"}, "aborted (missing 1,4: acks missing after 30s)"},
	} {
		if got := checkpointState(c.cp); got != c.want {
			t.Errorf("checkpointState(%+v) = %q, want %q", c.cp, got, c.want)
		}
	}
}
