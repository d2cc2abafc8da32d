package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// TestDeviceVersionsAcrossKill changes a device's broadcast data while a
// 3-node cluster runs the job, valid from an event time ahead of the input,
// then SIGKILLs the owner of that device's partition just after its
// watermark passed that time, so that the takeover replays readings on
// both sides of the change. MariaDB must equal the oracle computed with the
// version in force at each reading's event time (windows and work periods:
// at their start) — the rule of package control's versioned device data.
// The kill moment is seeded (-seed).
func TestDeviceVersionsAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster, a broker and a replay")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay: go test ./tests/e2e -run TestDeviceVersionsAcrossKill -v -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	const (
		job        = "iot-work"
		partitions = 6
		records    = 60000 // about 5.4 days of the Aberdeen data from 2019-03-01
		device     = "17079"
	)
	validFrom := time.Date(2019, 3, 3, 12, 0, 0, 0, time.UTC)
	v1 := oracle.Device{Company: "acme", Site: "dyce", Threshold: ptr(40.0)}
	v2 := oracle.Device{Company: "globex", Site: "bridge of don", Threshold: ptr(15.0)}

	opts := oracle.AberdeenOptions()
	opts.Partitions, opts.Limit = partitions, records
	opts.DeviceVersions = map[string][]oracle.DeviceVersion{device: {
		{ValidFromMs: math.MinInt64, Device: v1},
		{ValidFromMs: validFrom.UnixMilli(), Device: v2},
	}}
	want, err := oracle.Compute(aberdeen.Open(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The test can fail: the change alters the device's work periods.
	opts.DeviceVersions = map[string][]oracle.DeviceVersion{device: {{ValidFromMs: math.MinInt64, Device: v1}}}
	unchanged, err := oracle.Compute(aberdeen.Open(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if oracle.Compare(unchanged, want).Equal() {
		t.Fatal("the device change does not change the expected output: the test would prove nothing")
	}
	devicePartition := oracle.Partition(device, partitions)

	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := harness.StartBroker(t, eddyBin, dir, partitions)
	spec := harness.BoundedSpec(job, broker, want, "mysql:"+dsn, "file://"+filepath.Join(dir, "checkpoints"), "")
	c := harness.Start(t, harness.Options{Binary: eddyBin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl := c.Client(0, 30*time.Second)
	put := func(value string) {
		t.Helper()
		if _, err := cl.Put(ctx, "devices/"+device, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"company":"acme","site":"dyce","threshold":40}`)
	if _, err := cl.SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}
	obs := harness.StartObserver(t, c, partitions)
	harness.Eventually(t, 60*time.Second, func() error { return obs.AllRunning("") })

	replay := harness.StartReplay(t, eddyBin, broker, "--limit", fmt.Sprint(records), "--speed", "20000")
	watermark := func() (int64, string) {
		infos, err := cl.Partitions(ctx, job)
		if err != nil {
			return math.MinInt64, ""
		}
		for _, in := range infos {
			if in.Partition == devicePartition && in.Progress != nil {
				return in.Progress.WatermarkMs, in.Owner
			}
		}
		return math.MinInt64, ""
	}
	// The change, committed while the input is still days before it.
	time.Sleep(time.Second)
	if wm, _ := watermark(); wm >= validFrom.UnixMilli() {
		t.Fatalf("the job reached %v before the change was made: speed too high for this machine", time.UnixMilli(wm).UTC())
	}
	put(`{"company":"globex","site":"bridge of don","threshold":15,"valid_from":"` + validFrom.Format(time.RFC3339) + `"}`)

	// Kill the device's owner a seeded moment after its watermark passed
	// the change (the last checkpoint is then at most about a second old,
	// so the takeover replays readings from before and after it).
	after := time.Duration(rng.IntN(600)) * time.Millisecond
	var victim *harness.Node
	harness.Eventually(t, 90*time.Second, func() error {
		wm, owner := watermark()
		if wm < validFrom.UnixMilli() {
			return fmt.Errorf("partition %d watermark %v, waiting for %v", devicePartition, time.UnixMilli(wm).UTC(), validFrom)
		}
		victim = c.Node(owner)
		return nil
	})
	time.Sleep(after)
	if victim == nil {
		t.Fatal("no owner of the device's partition")
	}
	killed := time.Now()
	t.Logf("SIGKILL %s (owner of partition %d) %v after its watermark passed %v", victim.ID, devicePartition, after, validFrom)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() error { return obs.AllRunning(victim.ID) })
	t.Logf("partitions of %s running elsewhere %v after the kill", victim.ID, time.Since(killed).Round(time.Millisecond))
	if err := victim.Start(eddyBin); err != nil {
		t.Fatal(err)
	}
	if err := replay.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	harness.WaitOracle(t, ctx, dsn, want, 3*time.Minute)
	hist, err := cl.LeaseHistory(ctx, job, -1)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckLeaseHistory(t, hist)
}

func ptr[T any](v T) *T { return &v }
