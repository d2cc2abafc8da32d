// Package freeport hands tests loopback addresses to bind: free for both
// TCP and UDP when checked (memberlist gossip binds both on one port).
//
// A port from net.Listen("127.0.0.1:0") comes out of the kernel's
// ephemeral range, the range it also draws the source ports of outgoing
// connections from: between the check and the test's own bind another
// process's connection may take it ("address already in use", seen in CI).
// Ports here are drawn at random from the 12,000 ports just below that
// range (/proc/sys/net/ipv4/ip_local_port_range, 32768–60999 by default),
// which the kernel never hands out by itself.
package freeport

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// span is how many ports below the ephemeral range are drawn from.
const span = 12000

// Addrs returns n distinct 127.0.0.1:port addresses, each free for TCP
// and UDP when checked (all n are held until the last is found, then
// released). It fails after 50·n draws find nothing free.
func Addrs(n int) ([]string, error) {
	lo := ephemeralLow() - span
	var out []string
	var hold []io.Closer
	defer func() {
		for _, h := range hold {
			h.Close()
		}
	}()
	for try := 0; len(out) < n; try++ {
		if try >= 50*n {
			return nil, fmt.Errorf("freeport: found %d of %d free ports in %d..%d", len(out), n, lo, lo+span-1)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(span)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			l.Close()
			continue
		}
		hold = append(hold, l, u)
		out = append(out, addr)
	}
	return out, nil
}

// Addr returns one address as Addrs does, or fails t.
func Addr(t testing.TB) string {
	t.Helper()
	a, err := Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return a[0]
}

// Port returns the port of Addr(t).
func Port(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(Addr(t))
	port, _ := strconv.Atoi(p)
	return port
}

// ephemeralLow is the first port of the kernel's ephemeral range
// (Linux's default 32768 when the file cannot be read).
func ephemeralLow() int {
	const def = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return def
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return def
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v <= span+1024 {
		return def
	}
	return v
}

// Take returns n addresses as Addrs does, or fails t.
func Take(t testing.TB, n int) []string {
	t.Helper()
	a, err := Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
