package operators

import (
	"fmt"
	"math"
	"time"
)

// WindowKind names a window assigner.
type WindowKind string

// Window kinds. The empty kind means WindowTumbling.
const (
	// WindowTumbling: fixed-size, non-overlapping windows aligned to the Unix
	// epoch in UTC; window k is [k·Size, (k+1)·Size).
	WindowTumbling WindowKind = "tumbling"
	// WindowSliding: windows [k·Slide, k·Slide+Size) for every integer k; a
	// reading belongs to every window that contains it.
	WindowSliding WindowKind = "sliding"
	// WindowSession: per device, readings at most Gap apart (sorted by event
	// time) share a session; a session is [first reading, last reading + Gap).
	// This is Flink's EventTimeSessionWindows: every reading at t opens
	// [t, t+Gap), and windows that overlap or touch merge. Because a reading
	// exactly at a session's end still merges into it, a session fires when
	// the watermark is past its end (W > end), not at it.
	WindowSession WindowKind = "session"
)

// WindowSpec selects the window assigner of the window operator.
type WindowSpec struct {
	// Kind is the assigner; "" means tumbling.
	Kind WindowKind
	// Size of a tumbling or sliding window; must be > 0 and a whole number of
	// milliseconds. Default 1 min. Ignored for sessions.
	Size time.Duration
	// Slide of a sliding window; 0 < Slide <= Size, whole milliseconds.
	// Ignored for the other kinds.
	Slide time.Duration
	// Gap of a session window; must be > 0, whole milliseconds. Ignored for
	// the other kinds.
	Gap time.Duration
}

// Config configures the operator chain of a device partition. Start from
// DefaultConfig; a Config must pass Validate before it is used.
type Config struct {
	// Window is the window assigner. Default: tumbling, 1 min.
	Window WindowSpec
	// Threshold is the work threshold: a reading is "working" when its metric
	// is strictly greater. A device's DeviceInfo.Threshold overrides it.
	// Must be finite. Default 50.
	Threshold float64
	// MaxGap is the largest event-time distance between two consecutive
	// readings of one work period (equal still continues the period).
	// Must be > 0 and whole milliseconds. Default 10 min.
	MaxGap time.Duration
	// OutOfOrderness is the bounded out-of-orderness of the watermark:
	// watermark = max event time seen − OutOfOrderness. Must be >= 0, whole
	// milliseconds. Default 5 s.
	OutOfOrderness time.Duration
	// AllowedLateness keeps fired windows for this long after the watermark
	// passed their end; records in that range update and re-fire them. A record
	// is late when its event time < watermark − AllowedLateness. Must be >= 0,
	// whole milliseconds. Default 0.
	AllowedLateness time.Duration
	// Location is the time zone of event_time strings without an offset.
	// nil means UTC. Default UTC.
	Location *time.Location
	// MaxMessageBytes is the largest accepted message value in bytes; bigger
	// values are dead letters with reason oversized. Must be > 0. Default 1 MiB.
	MaxMessageBytes int
	// MaxFuture is the watermark guard against device clocks far ahead: a
	// reading whose event time is more than MaxFuture ahead of the
	// processing time (Partition.AdvanceProcessingTime) is a dead letter
	// with reason future_event_time and does not move the watermark. 0 =
	// off. Must be >= 0, whole milliseconds, at most MaxGuardDuration.
	// Default 0 here; jobs use DefaultMaxFuture in unbounded mode and 0 in
	// bounded replays, whose output must not depend on the wall clock.
	MaxFuture time.Duration
	// IdleTimeout is Flink's WatermarkStrategy.withIdleness for a device
	// partition: once the partition has received no record for IdleTimeout
	// of processing time, every Partition.AdvanceProcessingTime(now) moves
	// the watermark to max(W, now − OutOfOrderness), so the windows and
	// work periods of a quiet partition fire. It makes the output depend on
	// processing time (a record arriving after an idle stretch may be late
	// where a replay would find it on time), which is why it is off by
	// default and never used in bounded mode. 0 = off. Must be >= 0, whole
	// milliseconds, at most MaxGuardDuration. Default 0.
	IdleTimeout time.Duration
}

// The range of times every sink can store: SQL DATETIME holds
// 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999 (at millisecond precision),
// Unix ms UTC.
const (
	MinSinkTime int64 = -30610224000000 // 1000-01-01T00:00:00.000Z
	MaxSinkTime int64 = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// EventTimeRange returns the accepted event times [lo, hi] in Unix ms UTC:
// [MinSinkTime + E, MaxSinkTime − E], where E is the window extent (the
// size of tumbling and sliding windows, the gap of sessions). Every window
// that contains a reading in the range then starts and ends inside the
// sinks' range: a window [s, e) of a reading at t has t − E < s <= t and
// t < e <= t + E. Work periods start and end at reading times and need no
// margin. Readings outside are dead letters (event_time_out_of_range).
func (c *Config) EventTimeRange() (lo, hi int64) {
	var e time.Duration
	switch c.Window.Kind {
	case WindowSession:
		e = c.Window.Gap
	default:
		e = c.Window.Size
	}
	ext := min(max(e.Milliseconds(), 0), maxDuration.Milliseconds())
	return MinSinkTime + ext, MaxSinkTime - ext
}

// Defaults of Config.
const (
	DefaultWindowSize      = time.Minute
	DefaultThreshold       = 50.0
	DefaultMaxGap          = 10 * time.Minute
	DefaultOutOfOrderness  = 5 * time.Second
	DefaultMaxMessageBytes = 1 << 20
	// DefaultMaxFuture is the max_future guard of unbounded jobs.
	DefaultMaxFuture = time.Hour
	// MaxGuardDuration bounds MaxFuture and IdleTimeout: a guard further
	// ahead would let one bad device clock hold the watermark of its
	// partition for longer than a week, and an idle timeout of more than a
	// week is no timeout.
	MaxGuardDuration = 7 * 24 * time.Hour
)

// maxDuration bounds every duration of Config (about 100 years) so that event
// time arithmetic can never overflow int64 milliseconds.
const maxDuration = 100 * 365 * 24 * time.Hour

// DefaultConfig returns the defaults: tumbling 1 min windows, threshold 50,
// max gap 10 min, out-of-orderness 5 s, no allowed lateness, UTC, 1 MiB
// messages.
func DefaultConfig() Config {
	return Config{
		Window:          WindowSpec{Kind: WindowTumbling, Size: DefaultWindowSize},
		Threshold:       DefaultThreshold,
		MaxGap:          DefaultMaxGap,
		OutOfOrderness:  DefaultOutOfOrderness,
		AllowedLateness: 0,
		Location:        time.UTC,
		MaxMessageBytes: DefaultMaxMessageBytes,
	}
}

// Validate checks c and returns an error naming the first bad field, its
// value and the rule, e.g. "operators: window size must be > 0, got 0s".
func (c *Config) Validate() error {
	switch c.Window.Kind {
	case "", WindowTumbling:
		if err := checkDuration("window size", c.Window.Size, false); err != nil {
			return err
		}
	case WindowSliding:
		if err := checkDuration("window size", c.Window.Size, false); err != nil {
			return err
		}
		if err := checkDuration("window slide", c.Window.Slide, false); err != nil {
			return err
		}
		if c.Window.Slide > c.Window.Size {
			return fmt.Errorf("operators: window slide must be <= window size, got slide %v > size %v", c.Window.Slide, c.Window.Size)
		}
	case WindowSession:
		if err := checkDuration("session gap", c.Window.Gap, false); err != nil {
			return err
		}
	default:
		return fmt.Errorf("operators: window kind must be %q, %q or %q, got %q", WindowTumbling, WindowSliding, WindowSession, c.Window.Kind)
	}
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		return fmt.Errorf("operators: threshold must be a finite number, got %v", c.Threshold)
	}
	if err := checkDuration("max gap", c.MaxGap, false); err != nil {
		return err
	}
	if err := checkDuration("out-of-orderness", c.OutOfOrderness, true); err != nil {
		return err
	}
	if err := checkDuration("allowed lateness", c.AllowedLateness, true); err != nil {
		return err
	}
	if c.MaxMessageBytes <= 0 {
		return fmt.Errorf("operators: max message bytes must be > 0, got %d", c.MaxMessageBytes)
	}
	if err := checkGuard("max future", "off", c.MaxFuture); err != nil {
		return err
	}
	if err := checkGuard("idle timeout", "off", c.IdleTimeout); err != nil {
		return err
	}
	return nil
}

func checkDuration(name string, d time.Duration, zeroOK bool) error {
	switch {
	case d < 0 && zeroOK:
		return fmt.Errorf("operators: %s must be >= 0, got %v", name, d)
	case d <= 0 && !zeroOK:
		return fmt.Errorf("operators: %s must be > 0, got %v", name, d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("operators: %s must be a whole number of milliseconds, got %v", name, d)
	case d > maxDuration:
		return fmt.Errorf("operators: %s must be <= %v, got %v", name, maxDuration, d)
	}
	return nil
}

func checkGuard(name, zero string, d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("operators: %s must be >= 0 (0 = %s), got %v", name, zero, d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("operators: %s must be a whole number of milliseconds, got %v", name, d)
	case d > MaxGuardDuration:
		return fmt.Errorf("operators: %s must be <= %v, got %v", name, MaxGuardDuration, d)
	}
	return nil
}

// location returns c.Location, or UTC when nil.
func (c *Config) location() *time.Location {
	if c.Location == nil {
		return time.UTC
	}
	return c.Location
}
