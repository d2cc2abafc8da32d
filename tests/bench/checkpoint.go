package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/sinks"
)

var (
	synthDevices   int
	synthPerDevice int
	ckptInterval   time.Duration
	cacheDevices   int
)

// checkpointStats collects the per-partition acks of every checkpoint of
// the discard+checkpoint runs.
type checkpointStats struct {
	durations, syncs []float64 // ms, per partition and checkpoint
	bytes            []int64   // per checkpoint
	devices          []int64   // per checkpoint, all partitions
	checkpoints      int
	last             string // storage of the last run
}

func (c *checkpointStats) add(ctx context.Context, store string) error {
	st, err := checkpoint.OpenStorage(ctx, store)
	if err != nil {
		return err
	}
	defer st.Close()
	ms, err := checkpoint.NewCatalog(st, "iot-work").Complete(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Final {
			continue // after the final watermark: no state left
		}
		c.checkpoints++
		var devs int64
		for _, a := range m.Partitions {
			c.durations = append(c.durations, a.DurationMs)
			c.syncs = append(c.syncs, a.SyncMs)
			devs += a.Devices
		}
		c.bytes = append(c.bytes, m.Bytes())
		c.devices = append(c.devices, devs)
	}
	c.last = store
	return nil
}

func pct(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(p/100*float64(len(s)-1) + 0.5)
	return s[i]
}

func (c *checkpointStats) print() {
	devs := make([]float64, len(c.devices))
	for i, d := range c.devices {
		devs[i] = float64(d)
	}
	size := make([]float64, len(c.bytes))
	for i, b := range c.bytes {
		size[i] = float64(b)
	}
	fmt.Printf("\ncheckpoints (every %s, %d device states cached per partition): %d checkpoints, %d partition acks\n",
		ckptInterval, cacheDevices, c.checkpoints, len(c.durations))
	fmt.Printf("  devices of open state per checkpoint (node): median %.0f, max %.0f\n", pct(devs, 50), pct(devs, 100))
	fmt.Printf("  snapshot size per checkpoint (node):        median %.1f MB\n", pct(size, 50)/1e6)
	fmt.Printf("  per partition, barrier to ack (pre-commit, state flush, upload): p50 %.1f ms  p99 %.1f ms  max %.1f ms\n",
		pct(c.durations, 50), pct(c.durations, 99), pct(c.durations, 100))
	fmt.Printf("  per partition, processing paused at the barrier:                 p50 %.1f ms  p99 %.1f ms  max %.1f ms\n",
		pct(c.syncs, 50), pct(c.syncs, 99), pct(c.syncs, 100))
}

// restore makes the checkpoint of the last run with the most devices the
// newest one (deleting the later ones), runs the job again from it, and
// reports how long each partition took to restore.
func (c *checkpointStats) restore(ctx context.Context, brokers []string, n int64, tmp string) error {
	st, err := checkpoint.OpenStorage(ctx, c.last)
	if err != nil {
		return err
	}
	cat := checkpoint.NewCatalog(st, "iot-work")
	ms, err := cat.Complete(ctx)
	if err != nil {
		st.Close()
		return err
	}
	var best *checkpoint.Manifest
	var bestDevs int64 = -1
	for _, m := range ms {
		var d int64
		for _, a := range m.Partitions {
			d += a.Devices
		}
		if d > bestDevs && !m.Final {
			best, bestDevs = m, d
		}
	}
	if best == nil {
		st.Close()
		return fmt.Errorf("no checkpoint to restore")
	}
	for _, m := range ms {
		if m.ID > best.ID {
			if err := cat.Delete(ctx, m.Kind, m.ID); err != nil {
				st.Close()
				return err
			}
		}
	}
	st.Close()
	h := &restoreLog{}
	start := time.Now()
	_, err = runJobWith(ctx, brokers, sinks.NewDiscard(), n, func(cfg *actors.Config) {
		cfg.Checkpoint.Storage = c.last
		cfg.Checkpoint.Interval = time.Hour
		cfg.State.Dir = tmp + "/state-restore"
		cfg.State.CacheDevices = cacheDevices
	}, slog.New(h))
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var total float64
	for _, d := range h.took {
		total += d
	}
	fmt.Printf("\nrestore of %s (%d devices of open state, %.1f MB) by %d partitions, one after another:\n",
		best.Name(), bestDevs, float64(best.Bytes())/1e6, len(h.took))
	fmt.Printf("  per partition: p50 %.1f ms  max %.1f ms; all partitions %.1f ms (then the run went on; whole run %s)\n",
		pct(h.took, 50), pct(h.took, 100), total, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreLog is a slog.Handler that records the "took" of every
// "partition restored" message, in ms.
type restoreLog struct {
	mu   sync.Mutex
	took []float64
}

func (h *restoreLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *restoreLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "partition restored" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "took" {
			h.mu.Lock()
			h.took = append(h.took, float64(a.Value.Duration().Microseconds())/1000)
			h.mu.Unlock()
		}
		return true
	})
	return nil
}
func (h *restoreLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *restoreLog) WithGroup(string) slog.Handler      { return h }
