package faults

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestDiskFull gives node n2 a data directory on a tmpfs of its own
// (64 MiB), fills it to ENOSPC with a file while the job runs, keeps it
// full for a seeded 5–15 s and frees it. n2's Raft log, state store and
// snapshots cannot be written meanwhile. Prints what n2 did (its partitions
// during and after) and ends with the tables equal to the oracle, no row's
// epoch going down and one holder per partition at a time.
func TestDiskFull(t *testing.T) {
	require(t, "mount", "umount")
	rng := seeded(t)
	var mnt string
	e := newEnv(t, envConfig{rng: rng, replayFor: 45 * time.Second, lateness: 30 * time.Second,
		beforeStart: func(dir string) {
			mnt = filepath.Join(dir, "n2")
			if err := os.MkdirAll(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			// After the nodes are stopped (cleanups run last-in first-out).
			t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		}})
	audit := epochAudit(t, e.dsn)
	e.startReplay()
	n2 := e.c.Node("n2")
	time.Sleep(between(rng, 4*time.Second, 8*time.Second))

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var wrote int64
	for {
		n, err := f.Write(buf)
		wrote += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	full := between(rng, 5*time.Second, 15*time.Second)
	held := len(e.obs.OwnedBy(n2.ID))
	t.Logf("n2's disk full (%d MiB written to fill it), n2 runs %d partitions; full for %s", wrote>>20, held, full.Round(time.Millisecond))
	time.Sleep(full)
	t.Logf("n2 at the end of the disk-full span: running=%v, %d partitions", n2.Running(), len(e.obs.OwnedBy(n2.ID)))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	if !n2.Running() {
		t.Logf("n2 exited while its disk was full; restarting it")
		if err := n2.Start(eddyBin); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 90*time.Second, func() error { return e.obs.AllRunning("") })
	t.Logf("disk freed; every partition runs %s later; n2 runs %d", time.Since(freed).Round(time.Millisecond), len(e.obs.OwnedBy(n2.ID)))
	e.finish()
	for _, a := range audit() {
		t.Errorf("epoch regressed: %s", a)
	}
	t.Logf("n2 log tail:\n%s", n2.LogTail(15))
}
