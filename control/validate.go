package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/operators"
)

// MaxKeyLen is the longest configuration key, in bytes.
const MaxKeyLen = 256

// DevicesPrefix is the key prefix of broadcast device data: the value of
// devices/<pboxid> is the JSON of an operators.DeviceInfo.
const DevicesPrefix = "devices/"

// ValidateKey checks a configuration key: 1..256 characters from
// [A-Za-z0-9_./-], not starting with '/', without empty, "." or ".."
// segments and without "..". Errors wrap ErrInvalid.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: key must not be empty", ErrInvalid)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes long, the limit is %d", ErrInvalid, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '/' || c == '-') {
			return fmt.Errorf("%w: key %q contains %q at byte %d; allowed are A-Z a-z 0-9 _ . / -", ErrInvalid, key, c, i)
		}
	}
	if strings.Contains(key, "..") {
		return fmt.Errorf("%w: key %q must not contain \"..\"", ErrInvalid, key)
	}
	if key[0] == '/' {
		return fmt.Errorf("%w: key %q must not start with '/'", ErrInvalid, key)
	}
	if strings.Contains(key, "//") {
		return fmt.Errorf("%w: key %q must not contain an empty segment (\"//\")", ErrInvalid, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "." {
			return fmt.Errorf("%w: key %q must not contain a \".\" segment", ErrInvalid, key)
		}
	}
	return nil
}

// ValidatePrefix checks a list/watch prefix: empty, or a string that could
// begin a valid key (same characters and rules as ValidateKey; it may end in
// '/'). Errors wrap ErrInvalid.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return nil
}

// ValidateValue checks a configuration value for key: valid UTF-8, and for
// keys under devices/ the JSON of an operators.DeviceInfo (fields company,
// site, threshold; no others; threshold finite). Size limits are checked by
// the node (Config.MaxValueBytes). Errors wrap ErrInvalid.
func ValidateValue(key, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%w: value of %q is not valid UTF-8", ErrInvalid, key)
	}
	if strings.HasPrefix(key, DevicesPrefix) {
		id := key[len(DevicesPrefix):]
		if id == "" || strings.Contains(id, "/") {
			return fmt.Errorf("%w: device key %q must be devices/<pboxid> with a non-empty pboxid without '/'", ErrInvalid, key)
		}
		if _, _, _, err := parseDevice(value); err != nil {
			return fmt.Errorf("%w: value of %q: %v", ErrInvalid, key, err)
		}
	}
	return nil
}

// parseDevice decodes the value of a devices/<pboxid> key, and its
// valid_from (Unix ms; hasFrom false when absent, see DeviceVersion).
func parseDevice(value string) (info operators.DeviceInfo, validFromMs int64, hasFrom bool, err error) {
	var d struct {
		operators.DeviceInfo
		ValidFrom *string `json:"valid_from"`
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d.DeviceInfo, 0, false, fmt.Errorf("invalid device JSON (want {\"company\": string, \"site\": string, \"threshold\": number, \"valid_from\": time}): %v", err)
	}
	if dec.More() {
		return d.DeviceInfo, 0, false, fmt.Errorf("invalid device JSON: trailing data after the object")
	}
	if t := bytes.TrimSpace([]byte(value)); len(t) == 0 || t[0] != '{' {
		return d.DeviceInfo, 0, false, fmt.Errorf("invalid device JSON: want a JSON object")
	}
	if d.Threshold != nil && (math.IsNaN(*d.Threshold) || math.IsInf(*d.Threshold, 0)) {
		return d.DeviceInfo, 0, false, fmt.Errorf("threshold must be finite")
	}
	validFromMs, hasFrom, err = parseValidFrom(d.ValidFrom)
	if err != nil {
		return d.DeviceInfo, 0, false, err
	}
	return d.DeviceInfo, validFromMs, hasFrom, nil
}

// ValidateName checks a job name: 1..128 characters from [A-Za-z0-9_.-].
func ValidateName(kind, name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: %s name must be 1..128 characters, got %d", ErrInvalid, kind, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%w: %s name %q contains %q; allowed are A-Z a-z 0-9 _ . -", ErrInvalid, kind, name, c)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: %s name must not be %q", ErrInvalid, kind, name)
	}
	return nil
}
