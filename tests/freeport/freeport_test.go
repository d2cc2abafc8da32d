package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrsAreBindableAndOutsideTheEphemeralRange: every address is
// distinct, below the kernel's ephemeral range, and can be bound for TCP
// and UDP once Addrs returns.
func TestAddrsAreBindableAndOutsideTheEphemeralRange(t *testing.T) {
	addrs := Take(t, 8)
	seen := map[string]bool{}
	low := ephemeralLow()
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s handed out twice in %v", a, addrs)
		}
		seen[a] = true
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := strconv.Atoi(ps); p >= low || p < low-span {
			t.Errorf("%s: port outside %d..%d", a, low-span, low-1)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s not bindable for TCP: %v", a, err)
		}
		u, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Fatalf("%s not bindable for UDP: %v", a, err)
		}
		l.Close()
		u.Close()
	}
}
