package oracle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// LoadDevices reads a devices file: a JSON object or a YAML mapping from
// pboxid to {company, site, threshold}; threshold is optional.
//
//	{"17079": {"company": "Acme", "site": "Dyce", "threshold": 40}}
func LoadDevices(path string) (map[string]Device, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("oracle: devices: %w", err)
	}
	return ParseDevices(b)
}

// ParseDevices parses the content of a devices file (see LoadDevices).
func ParseDevices(b []byte) (map[string]Device, error) {
	devices := map[string]Device{}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&devices); err != nil {
			return nil, fmt.Errorf("oracle: devices JSON: %w", err)
		}
		return devices, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&devices); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("oracle: devices YAML: %w", err)
	}
	return devices, nil
}
