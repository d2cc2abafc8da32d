package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestMemProfileAtPeak: a growing heap gets a heap profile (gzipped
// protobuf) written to the file, and stopping returns no error.
func TestMemProfileAtPeak(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap.pprof")
	stop := memProfileAtPeak(context.Background(), path)
	var keep [][]byte
	for range 8 {
		keep = append(keep, make([]byte, 8<<20))
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(keep)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("heap profile of %d bytes does not start with the gzip magic", len(b))
	}
}
