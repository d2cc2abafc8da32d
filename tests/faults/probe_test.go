package faults

import (
	"net"
	"time"
)

// probeEnv makes the test binary a probe: it dials the address in it and
// exits 0 if the connection was made, 1 if not (see netFaults.probe).
const probeEnv = "EDDY_FAULTS_PROBE_DIAL"

func probeDial(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 1
	}
	c.Close()
	return 0
}
