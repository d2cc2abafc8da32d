package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/control"
)

func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string { return freeport.Addr(t) }

func start(t *testing.T, id string, reg prometheus.Registerer) *Membership {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Meta = control.Meta{ID: id, GossipAddr: freeAddr(t), HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Registerer = reg
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func status(m *Membership, id string) string {
	mem, ok := m.Member(id)
	if !ok {
		return "unknown"
	}
	return mem.Status.String()
}

func TestMembershipJoinMetaFailLeave(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := start(t, "a", reg)
	b := start(t, "b", nil)
	c := start(t, "c", nil)
	events, cancel := a.Subscribe(64)
	defer cancel()
	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	for _, m := range []*Membership{b, c} {
		if err := m.Join(ctx, []string{a.LocalMeta().GossipAddr}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() error {
		for _, m := range []*Membership{a, b, c} {
			if n := len(m.Alive()); n != 3 {
				return fmt.Errorf("%s sees %d alive", m.LocalMeta().ID, n)
			}
		}
		return nil
	})
	if got := aliveGauge(t, reg); got != 3 {
		t.Errorf("eddy_members{status=alive} = %v, want 3", got)
	}

	// Metadata changes propagate.
	meta := b.LocalMeta()
	meta.Voter = true
	if err := b.SetMeta(meta, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() error {
		if m, _ := a.Member("b"); !m.Voter {
			return errors.New("a does not see b as voter")
		}
		return nil
	})
	if err := b.SetMeta(control.Meta{ID: "other"}, time.Second); err == nil {
		t.Error("SetMeta changed the node id")
	}

	// A node that stops without leaving is detected as failed in ~1 s.
	killed := time.Now()
	c.Shutdown()
	eventually(t, 4*time.Second, func() error {
		if s := status(a, "c"); s != "failed" {
			return fmt.Errorf("c is %s", s)
		}
		return nil
	})
	t.Logf("failure detected after %v", time.Since(killed))

	// A node that leaves is reported as left, not failed.
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()
	eventually(t, 3*time.Second, func() error {
		if s := status(a, "b"); s != "left" {
			return fmt.Errorf("b is %s", s)
		}
		return nil
	})

	// The subscriber saw joins, b's update, c's failure and b's leave.
	seen := map[string]bool{}
	for {
		select {
		case ev := <-events:
			seen[ev.Type.String()+":"+ev.Member.ID] = true
			continue
		default:
		}
		break
	}
	for _, want := range []string{"join:b", "join:c", "update:b", "fail:c", "leave:b"} {
		if !seen[want] {
			t.Errorf("event %s not delivered; got %v", want, seen)
		}
	}
	if got := aliveGauge(t, reg); got != 1 {
		t.Errorf("eddy_members{status=alive} = %v, want 1", got)
	}
}

func TestMembershipJoinRetriesUntilContext(t *testing.T) {
	a := start(t, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := a.Join(ctx, []string{freeAddr(t)}) // nobody there
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join of a dead address: %v, want deadline exceeded", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no id", func(c *Config) { c.Meta.ID = "" }, "Meta.ID"},
		{"bad gossip addr", func(c *Config) { c.Meta.GossipAddr = "localhost" }, "GossipAddr"},
		{"probe timeout >= interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "ProbeTimeout"},
		{"meta too large", func(c *Config) { c.Meta.HTTPAddr = strings.Repeat("h", 600) }, "bytes"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		cfg.Meta = control.Meta{ID: "a", GossipAddr: "127.0.0.1:7946"}
		c.mod(&cfg)
		err := cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig mentioning %q", c.name, err, c.want)
		}
	}
}

// aliveGauge reads eddy_members{status="alive"} from reg.
func aliveGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eddy_members" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == "alive" {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal("eddy_members{status=alive} not found")
	return 0
}

// TestJoinListNamingSelf: every node of a StatefulSet gets the same --join
// list, itself included. Contacting itself must not count as joining: the
// node keeps trying the others until one answers, and a list of only itself
// means it is the seed.
func TestJoinListNamingSelf(t *testing.T) {
	a := start(t, "a", nil)
	b := start(t, "b", nil)
	self := a.LocalMeta().GossipAddr
	if err := a.Join(context.Background(), []string{self}); err != nil {
		t.Fatalf("join of only itself: %v, want nil (seed)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := a.Join(ctx, []string{self, freeAddr(t)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join of itself and a dead address: %v, want deadline exceeded (itself is no contact)", err)
	}
	if err := a.Join(context.Background(), []string{self, b.LocalMeta().GossipAddr}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if s := status(a, "b"); s != "alive" {
			return fmt.Errorf("b is %q in a's view", s)
		}
		return nil
	})
}
