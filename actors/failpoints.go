//go:build eddy_failpoints

package actors

import (
	"fmt"
	"os"
	"time"
)

// testCheckpointDelay reads TestCheckpointDelayEnv (built with -tags
// eddy_failpoints only).
func testCheckpointDelay() (time.Duration, error) {
	v := os.Getenv(TestCheckpointDelayEnv)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("actors: %s=%q: %w", TestCheckpointDelayEnv, v, err)
	}
	return d, nil
}
