package oracle

import "testing"

// TestShippedDevicesFile parses the devices file the README imports
// (deploy/devices.yaml) with the same parser as eddy dev --devices.
func TestShippedDevicesFile(t *testing.T) {
	d, err := LoadDevices("../../../deploy/devices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := d["17079"]; got.Company != "acme" || got.Site != "dyce" || got.Threshold == nil || *got.Threshold != 40 {
		t.Fatalf("devices[17079] = %+v, want acme/dyce threshold 40", got)
	}
	if len(d) != 5 {
		t.Fatalf("%d devices, want 5", len(d))
	}
}
