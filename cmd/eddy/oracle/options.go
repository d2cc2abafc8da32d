package oracle

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
)

// ErrBadOptions is wrapped by every error Options.Validate returns.
var ErrBadOptions = errors.New("oracle: bad options")

// Input formats.
const (
	FormatCSV    = "csv"
	FormatNDJSON = "ndjson"
)

// Window kinds.
const (
	WindowTumbling = "tumbling"
	WindowSliding  = "sliding"
	WindowSession  = "session"
)

// Mapping names the input column (CSV header name) or field (NDJSON key) of
// every seed-schema field. PboxID, EventTime and Metric are required and a
// CSV header must have them; Latitude and Longitude may be "" or name a
// column the header lacks: the field is then always absent.
type Mapping struct {
	PboxID    string
	EventTime string
	Metric    string
	Latitude  string
	Longitude string
}

// ParseMapping parses "pboxid=COL,event_time=COL,metric=COL,latitude=COL,longitude=COL".
// Fields left out map to themselves ("pboxid=sensor_id" alone leaves
// event_time=event_time, ...). Unknown field names are an error.
func ParseMapping(s string) (Mapping, error) {
	m := Mapping{PboxID: "pboxid", EventTime: "event_time", Metric: "metric", Latitude: "latitude", Longitude: "longitude"}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return m, fmt.Errorf("%w: mapping entry %q: want field=column", ErrBadOptions, part)
		}
		switch strings.TrimSpace(k) {
		case "pboxid":
			m.PboxID = v
		case "event_time":
			m.EventTime = v
		case "metric":
			m.Metric = v
		case "latitude":
			m.Latitude = v
		case "longitude":
			m.Longitude = v
		default:
			return m, fmt.Errorf("%w: mapping field %q: want one of pboxid, event_time, metric, latitude, longitude", ErrBadOptions, k)
		}
	}
	return m, nil
}

// WindowSpec describes the window assigner.
type WindowSpec struct {
	// Kind is WindowTumbling, WindowSliding or WindowSession; default tumbling.
	Kind string
	// Size of tumbling and sliding windows; must be > 0 for them; default 1 min.
	Size time.Duration
	// Slide of sliding windows; must be > 0 for them.
	Slide time.Duration
	// Gap of session windows; must be > 0 for them.
	Gap time.Duration
}

// Device is the broadcast business data of one device.
type Device struct {
	Company   string   `json:"company" yaml:"company"`
	Site      string   `json:"site" yaml:"site"`
	Threshold *float64 `json:"threshold,omitempty" yaml:"threshold,omitempty"` // nil: the job's threshold
}

// DeviceVersion is one version of a device's business data, valid from an
// event time on.
type DeviceVersion struct {
	ValidFromMs int64 // Unix ms; math.MinInt64 = always
	Device      Device
	Deleted     bool // the device is unknown from ValidFromMs on
}

// Options configures Compute. Start from DefaultOptions.
type Options struct {
	// Format is FormatCSV or FormatNDJSON; default csv.
	Format string
	// Delimiter of CSV fields; default ','.
	Delimiter rune
	// Mapping of input columns to seed-schema fields.
	Mapping Mapping
	// Partitions of the Kafka topic the replayer produces to; must be > 0; default 12.
	Partitions int32
	// Window is the window assigner; default tumbling 1 min.
	Window WindowSpec
	// Threshold of work periods: a reading works when metric > Threshold; default 50.
	Threshold float64
	// MaxGap is the largest event-time distance between consecutive readings
	// of one work period; must be >= 0; default 10 min.
	MaxGap time.Duration
	// OutOfOrderness is subtracted from the max event time to give the
	// watermark; must be >= 0; default 5 s.
	OutOfOrderness time.Duration
	// AllowedLateness: a record is late when event time < watermark −
	// AllowedLateness; must be >= 0; default 0.
	AllowedLateness time.Duration
	// Devices maps pboxid to business data; may be nil.
	Devices map[string]Device
	// DeviceVersions, when it has a pboxid, replaces Devices for it: the
	// data in force at an event time is the newest version whose
	// ValidFromMs <= that time (none: unknown). Readings use the version at
	// their event time, windows and work periods the one at their start.
	DeviceVersions map[string][]DeviceVersion
	// Limit computes over the first Limit records only (the rows the
	// replayer sends, as `eddy replay --limit`); 0 = all; must be >= 0.
	Limit int64
	// MaxMessageBytes: a sent message value longer than this is a dead
	// letter (oversized); 0 = DefaultMaxMessageBytes; must be >= 0.
	MaxMessageBytes int
	// MaxFuture, when > 0, makes a valid record whose event time is more
	// than MaxFuture after Now a dead letter (future_event_time) that does
	// not move the watermark: the job's event_time.max_future guard, with Now
	// standing for the job's wall clock. It is off by default, as in the
	// job's bounded replays; a caller that sets it must keep the data far
	// from Now + MaxFuture, since the job reads its clock per batch.
	MaxFuture time.Duration
	Now       time.Time
}

// DefaultMaxMessageBytes is the job's default largest message value, 1 MiB.
const DefaultMaxMessageBytes = 1 << 20

// AberdeenOptions returns DefaultOptions for the embedded Aberdeen dataset
// (package aberdeen): its delimiter and column mapping.
func AberdeenOptions() Options {
	o := DefaultOptions()
	o.Delimiter = aberdeen.Delimiter
	o.Mapping, _ = ParseMapping(aberdeen.Mapping)
	return o
}

// DefaultOptions returns the defaults of the iot-work job for a CSV input
// with ',' and identity mapping.
func DefaultOptions() Options {
	m, _ := ParseMapping("")
	return Options{
		Format:         FormatCSV,
		Delimiter:      ',',
		Mapping:        m,
		Partitions:     12,
		Window:         WindowSpec{Kind: WindowTumbling, Size: time.Minute},
		Threshold:      50,
		MaxGap:         10 * time.Minute,
		OutOfOrderness: 5 * time.Second,
	}
}

// Validate checks o and returns an error wrapping ErrBadOptions that says
// what to change.
func (o *Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadOptions}, a...)...)
	}
	switch o.Format {
	case FormatCSV:
		if o.Delimiter == 0 || o.Delimiter == '"' || o.Delimiter == '\n' || o.Delimiter == '\r' {
			return bad("delimiter %q: want a single character other than quote or newline", o.Delimiter)
		}
	case FormatNDJSON:
	default:
		return bad("format %q: want %q or %q", o.Format, FormatCSV, FormatNDJSON)
	}
	if o.Mapping.PboxID == "" || o.Mapping.EventTime == "" || o.Mapping.Metric == "" {
		return bad("mapping must name the pboxid, event_time and metric columns")
	}
	if o.Partitions <= 0 {
		return bad("partitions %d: want > 0", o.Partitions)
	}
	if o.Limit < 0 {
		return bad("limit %d: want >= 0 (0 = all records)", o.Limit)
	}
	if o.MaxMessageBytes < 0 {
		return bad("max message bytes %d: want >= 0 (0 = %d)", o.MaxMessageBytes, DefaultMaxMessageBytes)
	}
	if o.MaxFuture < 0 || (o.MaxFuture > 0 && o.Now.IsZero()) {
		return bad("max future %v with now %v: want >= 0, and a now when > 0", o.MaxFuture, o.Now)
	}
	switch o.Window.Kind {
	case WindowTumbling:
		if o.Window.Size <= 0 {
			return bad("tumbling window size %v: want > 0", o.Window.Size)
		}
	case WindowSliding:
		if o.Window.Size <= 0 || o.Window.Slide <= 0 {
			return bad("sliding window size %v, slide %v: want both > 0", o.Window.Size, o.Window.Slide)
		}
	case WindowSession:
		if o.Window.Gap <= 0 {
			return bad("session gap %v: want > 0", o.Window.Gap)
		}
	default:
		return bad("window kind %q: want tumbling, sliding or session", o.Window.Kind)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max gap", o.MaxGap}, {"out-of-orderness", o.OutOfOrderness}, {"allowed lateness", o.AllowedLateness}} {
		if d.v < 0 {
			return bad("%s %v: want >= 0", d.name, d.v)
		}
	}
	return nil
}
