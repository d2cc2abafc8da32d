package operators

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadDevices(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   DeviceMap
		errSub string
	}{
		{"json", `{"17079": {"company": "acme", "site": "dyce", "threshold": 40}, "2": {"company": "b"}}`,
			DeviceMap{"17079": {Company: "acme", Site: "dyce", Threshold: ptr(40)}, "2": {Company: "b"}}, ""},
		{"yaml", "\"17079\":\n  company: acme\n  site: dyce\n  threshold: 40\n22885:\n  company: b\n",
			DeviceMap{"17079": {Company: "acme", Site: "dyce", Threshold: ptr(40)}, "22885": {Company: "b"}}, ""},
		{"empty", "  \n", DeviceMap{}, ""},
		{"yaml null", "~", DeviceMap{}, ""},
		{"json unknown field", `{"a": {"company": "x", "treshold": 3}}`, nil, "treshold"},
		{"yaml unknown field", "a:\n  treshold: 3\n", nil, "treshold"},
		{"json syntax", `{"a": {"company": }`, nil, "JSON"},
		{"json trailing", `{"a": {}} {}`, nil, "trailing data"},
		{"yaml not a map", "- a\n- b\n", nil, "YAML"},
		{"empty id", `{"": {"company": "x"}}`, nil, "device id must be non-empty"},
		{"threshold not a number", `{"a": {"threshold": "high"}}`, nil, "JSON"},
		{"yaml infinite threshold", "a:\n  threshold: .inf\n", nil, `device "a": threshold must be finite`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadDevices([]byte(tc.in))
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) || !errors.Is(err, ErrBadDevices) {
					t.Fatalf("error %v, want ErrBadDevices containing %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for id, w := range tc.want {
				g, ok := got.Device(id)
				if !ok || g.Company != w.Company || g.Site != w.Site || (g.Threshold == nil) != (w.Threshold == nil) ||
					(g.Threshold != nil && *g.Threshold != *w.Threshold) {
					t.Fatalf("device %s: got %+v, want %+v", id, g, w)
				}
			}
		})
	}
	var nilMap DeviceMap
	if _, ok := nilMap.Device("x"); ok {
		t.Fatal("nil DeviceMap knows a device")
	}
}

func ptr(f float64) *float64 { return &f }
