package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
)

func startKeyed(t *testing.T, id string, key []byte, logs *bytes.Buffer) *Membership {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Meta = control.Meta{ID: id, GossipAddr: freeAddr(t), HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.SecretKey = key
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// TestGossipEncryption: members sharing a SecretKey meet; a member with
// another key, or with none, cannot join them; the key is never logged.
func TestGossipEncryption(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	var logs bytes.Buffer
	a := startKeyed(t, "a", key, &logs)
	b := startKeyed(t, "b", key, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Join(ctx, []string{a.cfg.Meta.GossipAddr}); err != nil {
		t.Fatalf("join with the same key: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if status(a, "b") != "alive" {
			return fmt.Errorf("a sees b %s", status(a, "b"))
		}
		return nil
	})
	for name, k := range map[string][]byte{"other key": other, "no key": nil} {
		c := startKeyed(t, "c-"+name[:2], k, &logs)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Join(ctx, []string{a.cfg.Meta.GossipAddr})
		cancel()
		if err == nil {
			t.Errorf("%s: join succeeded", name)
		}
		time.Sleep(300 * time.Millisecond) // gossip rounds that would spread c if it got in
		if got := status(a, c.cfg.Meta.ID); got != "unknown" {
			t.Errorf("%s: a sees %s as %s, want unknown", name, c.cfg.Meta.ID, got)
		}
		if len(c.Members()) != 1 {
			t.Errorf("%s: c sees %d members, want only itself", name, len(c.Members()))
		}
		c.Shutdown()
	}
	if bytes.Contains(logs.Bytes(), key) || bytes.Contains(logs.Bytes(), other) {
		t.Fatal("a gossip key appears in the logs")
	}
}

func TestSecretKeyLength(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Meta = control.Meta{ID: "a", GossipAddr: "127.0.0.1:7946"}
	cfg.SecretKey = []byte("short")
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("5-byte key: %v, want ErrInvalidConfig", err)
	}
}
