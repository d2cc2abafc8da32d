package devbroker

import (
	"encoding/binary"
	"testing"
)

func frame(key int16, body int) []byte {
	b := make([]byte, 4+2+body)
	binary.BigEndian.PutUint32(b, uint32(2+body))
	binary.BigEndian.PutUint16(b[4:], uint16(key))
	return b
}

// TestGuardScanSplits feeds valid and invalid streams to scan cut at every
// possible point: the verdict must not depend on how reads split the stream.
func TestGuardScanSplits(t *testing.T) {
	valid := append(append(frame(0, 20), frame(18, 8)...), frame(1, 100)...)
	bad := append(frame(3, 30), frame(9999, 8)...)
	for cut := 0; cut <= len(valid); cut++ {
		var g guardConn
		if err := g.scan(valid[:cut]); err != nil {
			t.Fatalf("valid stream, cut %d, first part: %v", cut, err)
		}
		if err := g.scan(valid[cut:]); err != nil {
			t.Fatalf("valid stream, cut %d, second part: %v", cut, err)
		}
		if g.left != 0 || g.hdrN != 0 {
			t.Fatalf("valid stream, cut %d: state left=%d hdrN=%d after complete frames", cut, g.left, g.hdrN)
		}
	}
	for cut := 0; cut <= len(bad); cut++ {
		var g guardConn
		err1 := g.scan(bad[:cut])
		err2 := error(nil)
		if err1 == nil {
			err2 = g.scan(bad[cut:])
		}
		if err1 == nil && err2 == nil {
			t.Fatalf("stream with unknown api key, cut %d: accepted", cut)
		}
	}
	// Byte by byte.
	var g guardConn
	for i := range valid {
		if err := g.scan(valid[i : i+1]); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
}
