package actors

import "testing"

func TestSnapshotRef(t *testing.T) {
	for _, c := range []struct {
		key   string
		bytes int64
		crc   uint32
	}{
		{"iot-work/cluster/chk-00000000000000000007/p00003-e2.snap", 1234, 0xdeadbeef},
		{"a#b/c.snap", 0, 0}, // '#' inside the key
	} {
		ref := FormatSnapshotRef(c.key, c.bytes, c.crc)
		k, b, crc, err := ParseSnapshotRef(ref)
		if err != nil || k != c.key || b != c.bytes || crc != c.crc {
			t.Errorf("ParseSnapshotRef(%q) = %q, %d, %x, %v; want %q, %d, %x", ref, k, b, crc, err, c.key, c.bytes, c.crc)
		}
	}
	for _, bad := range []string{"", "key", "key#12", "key#x#00", "#1#2", "key#1#zz"} {
		if _, _, _, err := ParseSnapshotRef(bad); err == nil {
			t.Errorf("ParseSnapshotRef(%q) accepted a malformed reference", bad)
		}
	}
}
