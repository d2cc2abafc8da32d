package spec

import (
	"strings"
	"testing"
	"time"
)

func TestSpecCheckpointAckTimeout(t *testing.T) {
	base := "source:\n  brokers: [\"127.0.0.1:9092\"]\nsink: discard\ncheckpoint:\n  storage: file:///tmp/x\n"
	for _, c := range []struct {
		extra   string
		want    time.Duration
		wantErr string
	}{
		{"", 30 * time.Second, ""},                                  // max(3 x 5s, 30s)
		{"  interval: 20s\n", time.Minute, ""},                      // 3 x interval
		{"  interval: 20s\n  timeout: 45s\n", 45 * time.Second, ""}, // capped by timeout
		{"  ack_timeout: 2s\n", 2 * time.Second, ""},                // explicit
		{"  ack_timeout: 500ms\n", 0, "checkpoint.ack_timeout"},     // too short
		{"  ack_timeout: 11m\n", 0, "<= checkpoint.timeout"},        // above the 10 min timeout
	} {
		s, err := Parse([]byte(base + c.extra))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := s.Config(Run)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: %v, want an error with %q", c.extra, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if got := s.CheckpointAckTimeout(cfg.Checkpoint); got != c.want {
			t.Errorf("%q: ack timeout %v, want %v", c.extra, got, c.want)
		}
	}
}
