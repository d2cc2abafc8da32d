package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
)

// Config configures a Membership. Start from DefaultConfig; the zero value
// is not valid (Meta.ID and Meta.GossipAddr are required).
type Config struct {
	// Meta is what this node advertises. Meta.ID is the memberlist node name
	// and must be unique in the cluster; Meta.GossipAddr (host:port) is the
	// address memberlist binds (TCP and UDP) and advertises, unless BindAddr
	// is set. The encoded Meta must fit in MaxMetaBytes.
	Meta control.Meta

	// BindAddr (host:port) overrides the bind address, e.g. 0.0.0.0:7946
	// while Meta.GossipAddr stays the advertised address. Default: "" (bind
	// Meta.GossipAddr).
	BindAddr string

	// ProbeInterval is the interval between failure probes of a random
	// member; default 200 ms (memberlist's LAN default is 1 s).
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack before indirect
	// probes; default 100 ms. Must be < ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionMult scales the time a suspected node has to refute before it
	// is declared failed (SuspicionMult · log10(n) · ProbeInterval, at
	// least SuspicionMult · ProbeInterval); default 2.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout when few members
	// confirm it (multiplier of the minimum); default 2.
	SuspicionMaxTimeoutMult int
	// GossipInterval is the interval between gossip rounds; default 100 ms.
	GossipInterval time.Duration
	// PushPullInterval is the interval of full state syncs; default 15 s.
	PushPullInterval time.Duration
	// TCPTimeout bounds TCP pushes/pulls and fallback pings; default 2 s.
	TCPTimeout time.Duration

	// SecretKey, when set, encrypts and authenticates all gossip
	// (memberlist's AES-GCM keyring): 16, 24 or 32 bytes (AES-128/192/256),
	// the same on every node. A node with another key, or none, cannot
	// join. Default none (plaintext gossip). It is a secret: never logged.
	SecretKey []byte

	// ReapAfter is how long a failed or left member stays in Members;
	// default 1 h. A member that comes back is alive again at once.
	ReapAfter time.Duration

	// Logger receives memberlist's log lines at their own level (DEBUG
	// lines become slog.LevelDebug, and so on). Default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; default: none (a private registry).
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config tuned for a LAN or loopback: a SIGKILLed
// member is declared failed in about one second. Meta must still be set.
func DefaultConfig() Config {
	return Config{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          100 * time.Millisecond,
		PushPullInterval:        15 * time.Second,
		TCPTimeout:              2 * time.Second,
		ReapAfter:               time.Hour,
	}
}

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("cluster: invalid config")

// Validate checks the configuration and returns an error wrapping
// ErrInvalidConfig that says which field to fix.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Meta.ID == "" {
		return bad("Meta.ID (the node id) must be set")
	}
	if _, _, err := splitHostPort(c.Meta.GossipAddr); err != nil {
		return bad("Meta.GossipAddr %q: %v (want host:port, e.g. 127.0.0.1:7946)", c.Meta.GossipAddr, err)
	}
	if c.BindAddr != "" {
		if _, _, err := splitHostPort(c.BindAddr); err != nil {
			return bad("BindAddr %q: %v (want host:port)", c.BindAddr, err)
		}
	}
	if b, err := encodeMeta(c.Meta); err != nil {
		return bad("Meta: %v", err)
	} else if len(b) > MaxMetaBytes {
		return bad("Meta encodes to %d bytes, more than %d: shorten the id or addresses", len(b), MaxMetaBytes)
	}
	if c.ProbeInterval <= 0 || c.ProbeTimeout <= 0 || c.ProbeTimeout >= c.ProbeInterval {
		return bad("ProbeTimeout (%v) must be > 0 and < ProbeInterval (%v)", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 || c.SuspicionMaxTimeoutMult < 1 {
		return bad("SuspicionMult (%d) and SuspicionMaxTimeoutMult (%d) must be >= 1", c.SuspicionMult, c.SuspicionMaxTimeoutMult)
	}
	if c.GossipInterval <= 0 || c.PushPullInterval <= 0 || c.TCPTimeout <= 0 {
		return bad("GossipInterval (%v), PushPullInterval (%v) and TCPTimeout (%v) must be > 0", c.GossipInterval, c.PushPullInterval, c.TCPTimeout)
	}
	if n := len(c.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return bad("SecretKey is %d bytes; must be 16, 24 or 32 (e.g. 32 random bytes, base64: openssl rand -base64 32)", n)
	}
	if c.ReapAfter <= 0 {
		return bad("ReapAfter (%v) must be > 0", c.ReapAfter)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 1..65535", port)
	}
	if host == "" {
		return "", 0, errors.New("host is empty")
	}
	return host, p, nil
}
