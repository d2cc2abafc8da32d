package operators

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"

	json "github.com/goccy/go-json"
	"go.yaml.in/yaml/v3"
)

// DeviceInfo is the broadcast business data of one device (control-plane key
// devices/<pboxid>).
type DeviceInfo struct {
	Company string `json:"company" yaml:"company"`
	Site    string `json:"site" yaml:"site"`
	// Threshold overrides Config.Threshold for this device's work periods
	// when non-nil.
	Threshold *float64 `json:"threshold,omitempty" yaml:"threshold,omitempty"`
}

// DeviceLookup resolves a device id to its business data. Implementations
// must be safe for concurrent use: many partitions read one lookup while the
// control plane updates it. A Partition may be given a nil DeviceLookup, in
// which case every device is unknown.
type DeviceLookup interface {
	// Device returns the data of pboxid and whether it is known.
	Device(pboxid string) (DeviceInfo, bool)
}

// VersionedDeviceLookup is a DeviceLookup that keeps versions of the device
// data, each valid from an event time (the control plane's, see package
// control). A Partition given one enriches as of event time — Flink SQL's
// event-time temporal join: a reading with the version in force at its
// event time, a window or work period with the version in force at its
// start — so that a replay computes what the first run computed.
type VersionedDeviceLookup interface {
	DeviceLookup
	// DeviceAt returns the data of pboxid in force at event time eventMs
	// (Unix ms) and whether the device was known then.
	DeviceAt(pboxid string, eventMs int64) (DeviceInfo, bool)
}

// DeviceMap is a static DeviceLookup: pboxid → DeviceInfo. It must not be
// modified after it is handed to a Partition; it is then safe for concurrent
// use. A nil DeviceMap knows no device.
type DeviceMap map[string]DeviceInfo

var _ DeviceLookup = DeviceMap(nil)

// Device implements DeviceLookup.
func (m DeviceMap) Device(pboxid string) (DeviceInfo, bool) {
	d, ok := m[pboxid]
	return d, ok
}

// ErrBadDevices is wrapped by every error of LoadDevices.
var ErrBadDevices = errors.New("operators: bad device data")

// LoadDevices parses a device table: a JSON object or a YAML mapping from
// pboxid to {company, site, threshold}, e.g.
//
//	{"17079": {"company": "acme", "site": "dyce", "threshold": 40}}
//
// or the same in YAML. Data whose first non-blank byte is '{' is read as
// JSON, anything else as YAML. Empty data yields an empty map. Unknown fields,
// empty device ids and non-finite thresholds are errors (wrapping
// ErrBadDevices) that name the device.
func LoadDevices(data []byte) (DeviceMap, error) {
	trimmed := bytes.TrimSpace(data)
	m := DeviceMap{}
	if len(trimmed) == 0 {
		return m, nil
	}
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%w: JSON: %v", ErrBadDevices, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: JSON: trailing data after the device object", ErrBadDevices)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(trimmed))
		dec.KnownFields(true)
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%w: YAML: %v", ErrBadDevices, err)
		}
	}
	if m == nil { // "null" / "~"
		m = DeviceMap{}
	}
	for id, d := range m {
		if strings.TrimSpace(id) == "" {
			return nil, fmt.Errorf("%w: device id must be non-empty, got %q", ErrBadDevices, id)
		}
		if d.Threshold != nil && (math.IsNaN(*d.Threshold) || math.IsInf(*d.Threshold, 0)) {
			return nil, fmt.Errorf("%w: device %q: threshold must be finite, got %v", ErrBadDevices, id, *d.Threshold)
		}
	}
	return m, nil
}
