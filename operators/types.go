package operators

import "math"

// Reading is one valid, decoded and enriched reading of the seed schema.
//
// Times are Unix milliseconds in UTC. Latitude and Longitude are NaN when
// the record did not carry them (both are optional in the seed schema).
type Reading struct {
	Partition int32  // source (Kafka) partition
	Offset    int64  // source offset within Partition
	PboxID    string // device id; non-empty
	EventTime int64  // event time, Unix ms UTC
	Metric    float64
	Latitude  float64 // degrees in [-90, 90]; NaN when absent
	Longitude float64 // degrees in [-180, 180]; NaN when absent
	Company   string  // from broadcast data; "" when the device is unknown
	Site      string  // from broadcast data; "" when the device is unknown
}

// HasPosition reports whether both coordinates are present.
func (r *Reading) HasPosition() bool { return !math.IsNaN(r.Latitude) && !math.IsNaN(r.Longitude) }

// WindowAggregate is the result of one fired event-time window of one device.
// Key: (PboxID, Start). A window that is fired again (allowed lateness) has the
// same key and replaces the earlier row.
type WindowAggregate struct {
	PboxID string
	Start  int64 // window start, Unix ms UTC, inclusive
	End    int64 // window end, Unix ms UTC, exclusive
	Count  int64
	Sum    float64
	Min    float64
	Max    float64
	Avg    float64 // Sum / Count
	// Position of the latest reading by event time (ties: highest source
	// offset); NaN when that reading carried none.
	Latitude  float64
	Longitude float64
	Company   string
	Site      string
}

// WorkPeriod is a maximal run of consecutive readings of one device whose
// metric is strictly above the device's threshold. Key: (PboxID, Start).
type WorkPeriod struct {
	PboxID    string
	Start     int64 // event time of the first reading of the run, Unix ms UTC
	End       int64 // event time of the last reading of the run, Unix ms UTC
	Samples   int64 // readings in the run; >= 1
	AvgMetric float64
	MaxMetric float64
	Company   string
	Site      string
}

// DurationSeconds is End − Start in seconds.
func (p *WorkPeriod) DurationSeconds() float64 { return float64(p.End-p.Start) / 1000 }

// LateRecord is a valid reading that arrived after the watermark had passed
// it (event time < watermark − allowed lateness). It is kept with its payload.
type LateRecord struct {
	Partition int32
	Offset    int64
	PboxID    string
	EventTime int64 // Unix ms UTC
	Watermark int64 // partition watermark when the record arrived, Unix ms UTC
	Reason    string
	Payload   []byte // the original message value
}

// DeadLetter is a record that could not be decoded or validated.
type DeadLetter struct {
	Partition int32
	Offset    int64
	Reason    string // one of the Reason* constants, possibly with detail after ": "
	Payload   []byte // the original message value (truncated by the sink if huge)
}

// Output collects the emissions of the operator chain. Operators append to
// it; the caller hands it to the sinks and then calls Reset to reuse it.
type Output struct {
	Readings    []Reading
	Windows     []WindowAggregate
	WorkPeriods []WorkPeriod
	Late        []LateRecord
	DeadLetters []DeadLetter
}

// Len is the total number of rows in o.
func (o *Output) Len() int {
	return len(o.Readings) + len(o.Windows) + len(o.WorkPeriods) + len(o.Late) + len(o.DeadLetters)
}

// Reset empties o, keeping its capacity.
func (o *Output) Reset() {
	o.Readings = o.Readings[:0]
	o.Windows = o.Windows[:0]
	o.WorkPeriods = o.WorkPeriods[:0]
	o.Late = o.Late[:0]
	o.DeadLetters = o.DeadLetters[:0]
}
