package main

import (
	"os"
	"testing"
)

// testToken is the API token of the nodes the tests start in process; the
// eddy ctl commands they run read it from $EDDY_TOKEN (set by TestMain).
const testToken = "cmd-test-token-71d3"

func TestMain(m *testing.M) {
	os.Setenv("EDDY_TOKEN", testToken)
	os.Unsetenv("EDDY_API_TOKEN")
	os.Exit(m.Run())
}
