package main

import (
	"context"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"time"
)

// memProfileAtPeak writes the heap profile of the process to path whenever
// the live heap objects grow 5 % beyond the largest seen (checked every
// 250 ms), until ctx ends, so that path holds a profile taken near the
// peak of the heap (go tool pprof -sample_index=inuse_space path). The
// in-use numbers of a heap profile are those of the last garbage
// collection. Errors of writing are returned by the func it returns, which
// stops the sampling; it must be called once.
func memProfileAtPeak(ctx context.Context, path string) func() error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var err error
		for err == nil {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak+peak/20 {
				peak = v
				err = writeHeapProfile(path)
			}
		}
		done <- err
	}()
	return func() error {
		cancel()
		return <-done
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile: %w", err)
	}
	return f.Close()
}
