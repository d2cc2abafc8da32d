package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/operators"
)

// TestSpecEventTimeGuards: event_time.max_future and idle_timeout, their
// defaults per source mode, and one bad-spec case per rule with the message
// it must produce.
func TestSpecEventTimeGuards(t *testing.T) {
	const base = "source: {brokers: [x]%s}\nsink: discard\n"
	for _, tc := range []struct {
		name, source, eventTime string
		maxFuture, idle         time.Duration
	}{
		{"unbounded default", "", "", operators.DefaultMaxFuture, 0},
		{"bounded default off", ", bounded: true", "", 0, 0},
		{"end offsets are bounded", ", end_offsets: {0: 10}", "", 0, 0},
		{"bounded explicit", ", bounded: true", "{max_future: 30m}", 30 * time.Minute, 0},
		{"unbounded off", "", "{max_future: 0s}", 0, 0},
		{"idle", "", "{idle_timeout: 1m, max_future: 2h}", 2 * time.Hour, time.Minute},
	} {
		yaml := strings.Replace(base, "%s", tc.source, 1)
		if tc.eventTime != "" {
			yaml += "event_time: " + tc.eventTime + "\n"
		}
		spec, err := Parse([]byte(yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cfg, err := spec.Config(Run)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.Operators.MaxFuture != tc.maxFuture || cfg.Operators.IdleTimeout != tc.idle {
			t.Errorf("%s: max_future %v idle_timeout %v, want %v %v", tc.name, cfg.Operators.MaxFuture, cfg.Operators.IdleTimeout, tc.maxFuture, tc.idle)
		}
	}
	for _, tc := range []struct{ source, eventTime, want string }{
		{"", "{max_future: -1h}", "spec: job spec event_time.max_future must be >= 0 (0 = off), got -1h0m0s"},
		{"", "{max_future: 8760h}", "event_time.max_future must be at most 168h0m0s (a longer guard is no guard), got 8760h0m0s"},
		{"", "{max_future: 1500us}", "event_time.max_future must be a whole number of milliseconds, got 1.5ms"},
		{"", "{idle_timeout: -5s}", "event_time.idle_timeout must be >= 0 (0 = off), got -5s"},
		{"", "{idle_timeout: 1000h}", "event_time.idle_timeout must be at most 168h0m0s"},
		{", bounded: true", "{idle_timeout: 1m}", "event_time.idle_timeout applies only to unbounded sources"},
		{"", "{max_future: soon}", `time: invalid duration "soon"`},
		{"", "{max_futur: 1h}", "max_futur"},
	} {
		yaml := strings.Replace(base, "%s", tc.source, 1) + "event_time: " + tc.eventTime + "\n"
		s, err := Parse([]byte(yaml))
		if err == nil {
			_, err = s.Config(Run)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.eventTime, err, tc.want)
		}
	}
}
