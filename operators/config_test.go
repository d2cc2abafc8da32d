package operators

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	tests := []struct {
		name   string
		mod    func(c *Config)
		errSub string // "" = valid
	}{
		{"zero window size", func(c *Config) { c.Window.Size = 0 }, "operators: window size must be > 0, got 0s"},
		{"empty kind is tumbling", func(c *Config) { c.Window.Kind = "" }, ""},
		{"sub-millisecond size", func(c *Config) { c.Window.Size = 1500 * time.Microsecond }, "window size must be a whole number of milliseconds"},
		{"unknown kind", func(c *Config) { c.Window.Kind = "hopping" }, `window kind must be "tumbling", "sliding" or "session", got "hopping"`},
		{"sliding ok", func(c *Config) {
			c.Window = WindowSpec{Kind: WindowSliding, Size: time.Minute, Slide: 10 * time.Second}
		}, ""},
		{"sliding no slide", func(c *Config) { c.Window = WindowSpec{Kind: WindowSliding, Size: time.Minute} }, "window slide must be > 0, got 0s"},
		{"slide > size", func(c *Config) { c.Window = WindowSpec{Kind: WindowSliding, Size: time.Second, Slide: time.Minute} }, "window slide must be <= window size"},
		{"session ok", func(c *Config) { c.Window = WindowSpec{Kind: WindowSession, Gap: time.Minute} }, ""},
		{"session no gap", func(c *Config) { c.Window = WindowSpec{Kind: WindowSession, Size: time.Minute} }, "session gap must be > 0"},
		{"NaN threshold", func(c *Config) { c.Threshold = math.NaN() }, "threshold must be a finite number"},
		{"negative threshold ok", func(c *Config) { c.Threshold = -5 }, ""},
		{"zero max gap", func(c *Config) { c.MaxGap = 0 }, "max gap must be > 0, got 0s"},
		{"negative out-of-orderness", func(c *Config) { c.OutOfOrderness = -time.Second }, "out-of-orderness must be >= 0, got -1s"},
		{"zero out-of-orderness ok", func(c *Config) { c.OutOfOrderness = 0 }, ""},
		{"negative lateness", func(c *Config) { c.AllowedLateness = -time.Second }, "allowed lateness must be >= 0"},
		{"huge lateness", func(c *Config) { c.AllowedLateness = 200 * 365 * 24 * time.Hour }, "allowed lateness must be <="},
		{"zero max message bytes", func(c *Config) { c.MaxMessageBytes = 0 }, "max message bytes must be > 0, got 0"},
		{"nil location ok", func(c *Config) { c.Location = nil }, ""},
		{"max future ok", func(c *Config) { c.MaxFuture = DefaultMaxFuture }, ""},
		{"negative max future", func(c *Config) { c.MaxFuture = -time.Hour }, "max future must be >= 0 (0 = off), got -1h0m0s"},
		{"sub-millisecond max future", func(c *Config) { c.MaxFuture = time.Hour + time.Microsecond }, "max future must be a whole number of milliseconds"},
		{"absurd max future", func(c *Config) { c.MaxFuture = 365 * 24 * time.Hour }, "max future must be <= 168h0m0s, got 8760h0m0s"},
		{"idle timeout ok", func(c *Config) { c.IdleTimeout = time.Minute }, ""},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "idle timeout must be >= 0 (0 = off), got -1s"},
		{"absurd idle timeout", func(c *Config) { c.IdleTimeout = 30 * 24 * time.Hour }, "idle timeout must be <= 168h0m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.errSub == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.errSub != "" && (err == nil || !strings.Contains(err.Error(), tc.errSub)):
				t.Fatalf("error %v, want it to contain %q", err, tc.errSub)
			case err != nil && !strings.HasPrefix(err.Error(), "operators: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
