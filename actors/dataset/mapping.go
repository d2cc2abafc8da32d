package dataset

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
)

// The seed-schema fields a Mapping targets, in the order of the JSON value
// the replayer writes.
const (
	FieldPboxID    = "pboxid"
	FieldEventTime = "event_time"
	FieldMetric    = "metric"
	FieldLatitude  = "latitude"
	FieldLongitude = "longitude"
)

// AberdeenMapping and AberdeenDelimiter describe the embedded Aberdeen file
// (see package aberdeen): semicolon-separated, sensor_id → pboxid, timestamp
// → event_time, P1 → metric, lat/lon → latitude/longitude.
const (
	AberdeenMapping   = aberdeen.Mapping
	AberdeenDelimiter = aberdeen.Delimiter
)

// ErrMapping wraps every column-mapping error.
var ErrMapping = errors.New("dataset: bad column mapping")

// Mapping names the input column (CSV header name or NDJSON member name)
// that feeds each seed-schema field. The zero value is the identity mapping:
// every field is read from the column of the same name.
//
// PboxID, EventTime and Metric are required: Open fails when a CSV header
// lacks their column. Latitude and Longitude are optional: "" means not
// mapped; a header without a column named "latitude" ("longitude") simply
// leaves the identity-mapped coordinate out, but a coordinate mapped to any
// other name must exist in the header.
type Mapping struct {
	PboxID    string
	EventTime string
	Metric    string
	Latitude  string
	Longitude string
}

// IdentityMapping returns the mapping of input columns named like the seed
// schema: pboxid, event_time, metric, latitude, longitude.
func IdentityMapping() Mapping {
	return Mapping{PboxID: FieldPboxID, EventTime: FieldEventTime, Metric: FieldMetric,
		Latitude: FieldLatitude, Longitude: FieldLongitude}
}

// ParseMapping parses "field=column,..." where field is one of pboxid,
// event_time, metric, latitude, longitude. Fields left out keep their
// identity mapping; "latitude=" or "longitude=" (empty column) leaves the
// coordinate out. Spaces around entries, names and columns are ignored. An
// empty string gives the identity mapping. Errors wrap ErrMapping and list
// the valid field names.
//
// Example: ParseMapping("pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon").
func ParseMapping(s string) (Mapping, error) {
	m := IdentityMapping()
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	seen := map[string]bool{}
	for _, entry := range strings.Split(s, ",") {
		field, col, ok := strings.Cut(entry, "=")
		field, col = strings.TrimSpace(field), strings.TrimSpace(col)
		if !ok || field == "" {
			return Mapping{}, fmt.Errorf("%w: entry %q: want field=column, e.g. pboxid=sensor_id", ErrMapping, strings.TrimSpace(entry))
		}
		if seen[field] {
			return Mapping{}, fmt.Errorf("%w: field %q mapped twice", ErrMapping, field)
		}
		seen[field] = true
		switch field {
		case FieldPboxID, FieldEventTime, FieldMetric:
			if col == "" {
				return Mapping{}, fmt.Errorf("%w: %s is required: name its column, e.g. %s=<column>", ErrMapping, field, field)
			}
		}
		switch field {
		case FieldPboxID:
			m.PboxID = col
		case FieldEventTime:
			m.EventTime = col
		case FieldMetric:
			m.Metric = col
		case FieldLatitude:
			m.Latitude = col
		case FieldLongitude:
			m.Longitude = col
		default:
			return Mapping{}, fmt.Errorf("%w: unknown field %q: want pboxid, event_time, metric, latitude or longitude", ErrMapping, field)
		}
	}
	return m, nil
}

// String returns the mapping in ParseMapping syntax.
func (m Mapping) String() string {
	return fmt.Sprintf("pboxid=%s,event_time=%s,metric=%s,latitude=%s,longitude=%s",
		m.PboxID, m.EventTime, m.Metric, m.Latitude, m.Longitude)
}

func (m Mapping) isZero() bool {
	return m.PboxID == "" && m.EventTime == "" && m.Metric == "" && m.Latitude == "" && m.Longitude == ""
}

// validate checks the required fields of a mapping built by hand.
func (m Mapping) validate() error {
	if m.PboxID == "" || m.EventTime == "" || m.Metric == "" {
		return fmt.Errorf("%w: %v: pboxid, event_time and metric must name a column", ErrMapping, m)
	}
	return nil
}

// columns are the header indexes of the mapped fields; -1 = not mapped.
type columns struct {
	pboxid, eventTime, metric, lat, lon int
}

// resolve finds the mapped columns in a CSV header. When a name occurs
// twice in the header, the last occurrence wins.
func (m Mapping) resolve(header []string) (columns, error) {
	index := make(map[string]int, len(header))
	for i, h := range header {
		index[h] = i
	}
	missing := func(field, col string) error {
		return fmt.Errorf("%w: %s=%s: the header has no column %q; available columns: %s",
			ErrMapping, field, col, col, strings.Join(header, ", "))
	}
	var c columns
	for _, f := range []struct {
		field, col string
		required   bool
		dst        *int
	}{
		{FieldPboxID, m.PboxID, true, &c.pboxid},
		{FieldEventTime, m.EventTime, true, &c.eventTime},
		{FieldMetric, m.Metric, true, &c.metric},
		{FieldLatitude, m.Latitude, m.Latitude != FieldLatitude, &c.lat},
		{FieldLongitude, m.Longitude, m.Longitude != FieldLongitude, &c.lon},
	} {
		*f.dst = -1
		if f.col == "" {
			continue
		}
		i, ok := index[f.col]
		switch {
		case ok:
			*f.dst = i
		case f.required:
			return c, missing(f.field, f.col)
		}
	}
	return c, nil
}
