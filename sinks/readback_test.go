package sinks_test

import (
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/sinktest"
)

// The internal tests of package sinks read a sink's output back with
// sinktest's readers, which they cannot import (sinktest imports sinks).
func init() {
	sinks.SetReadBack(sinktest.ReadAll, sinktest.ReadClickHouse, sinktest.ReadCommitted)
}
