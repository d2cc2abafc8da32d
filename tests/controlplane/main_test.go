// Package controlplane holds the multi-process tests of eddy's replicated
// JobManager: 3- and 5-node clusters of real `eddy node` processes on
// 127.0.0.1, killed with SIGKILL and restarted. `go test -short` skips
// them. Randomised tests print their seed; replay with -seed=N.
package controlplane

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed of the randomised tests (0 = time-based)")
	keepLogs = flag.Bool("keep", false, "keep node data dirs and logs (printed) after the tests")
	binary   string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("controlplane: skipping multi-process tests in -short mode")
		os.Exit(0)
	}
	harness.UseDefaultToken()
	dir, err := os.MkdirTemp("", "eddy-controlplane-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = harness.BuildRetry(dir, 3*time.Minute, func(f string, a ...any) { fmt.Printf(f+"\n", a...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testSeed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d)", s, s)
	return s
}

// startCluster starts n nodes with --bootstrap-expect expect (0 = n) and
// waits for a leader whose configuration has expect voters. On test failure
// the tail of every node's log is printed.
func startCluster(t *testing.T, n, expect int, args ...string) *harness.Cluster {
	t.Helper()
	if expect == 0 {
		expect = n
	}
	dir := t.TempDir()
	if *keepLogs {
		var err error
		if dir, err = os.MkdirTemp("", "eddy-"+t.Name()+"-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("node dirs and logs in %s", dir)
	}
	c, err := harness.New(harness.Options{Binary: binary, Dir: dir, Nodes: n, BootstrapExpect: expect, Args: args, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		for _, nd := range c.Nodes {
			if b, err := os.ReadFile(nd.LogPath); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
				t.Errorf("%s reported a data race (binary built with EDDY_RACE=1); see its log", nd.ID)
			}
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("---- last log lines of %s ----\n%s", nd.ID, nd.LogTail(40))
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		_, st, err := c.Leader()
		if err != nil {
			return err
		}
		if len(st.Voters) != expect || st.VoterTarget != expect {
			return fmt.Errorf("leader sees voters %v, voter target %d", st.Voters, st.VoterTarget)
		}
		return nil
	})
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
