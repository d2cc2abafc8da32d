//go:build !eddy_failpoints

package actors

import "time"

// testCheckpointDelay is 0 in a production build: the fault-injection hook
// TestCheckpointDelayEnv exists only with -tags eddy_failpoints.
func testCheckpointDelay() (time.Duration, error) { return 0, nil }
