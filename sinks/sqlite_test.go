package sinks

import (
	"context"
	"path/filepath"
	"testing"
)

// TestSQLiteFlushSyncs checks that Flush fsyncs the WAL after the writes
// that Write started itself (committed under synchronous=NORMAL, not yet
// on disk), once, and not again while nothing new was committed, and that
// the connection is back at synchronous=NORMAL (1) afterwards.
func TestSQLiteFlushSyncs(t *testing.T) {
	ctx := context.Background()
	s, err := NewSQLite(filepath.Join(t.TempDir(), "sync.db"), Config{BatchRows: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	syncs := func() int {
		s.e.io <- struct{}{}
		defer s.e.release()
		return s.syncs
	}
	mustWrite(t, s, &Batch{Readings: benchReadings(0, 25)}) // 25 >= BatchRows: committed by Write
	if n := syncs(); n != 0 {
		t.Fatalf("%d syncs after Write, want 0 (only Flush syncs)", n)
	}
	mustFlush(t, s) // nothing buffered, but a commit to make durable
	if n := syncs(); n != 1 {
		t.Fatalf("%d syncs after the first Flush, want 1", n)
	}
	mustFlush(t, s)
	if n := syncs(); n != 1 {
		t.Fatalf("%d syncs after a Flush with nothing committed since the last, want still 1", n)
	}
	mustWrite(t, s, &Batch{Readings: benchReadings(25, 3)}) // buffered only
	mustFlush(t, s)
	if n := syncs(); n != 2 {
		t.Fatalf("%d syncs after a Flush that committed rows, want 2", n)
	}
	s.e.io <- struct{}{}
	var mode int
	err = s.e.conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode)
	s.e.release()
	if err != nil || mode != 1 {
		t.Fatalf("synchronous is %d (%v) after Flush, want 1 (NORMAL)", mode, err)
	}
}
