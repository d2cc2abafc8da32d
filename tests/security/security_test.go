// Package security holds the multi-process tests of eddy's control-plane
// security: the API token on writes (forwarded by followers to the
// leader), gossip encryption, and secrets kept out of the logs. `go test
// -short` skips them.
package security

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("security: skipping multi-process tests in -short mode")
		os.Exit(0)
	}
	harness.Main(m, &binary)
}

const (
	token    = "tok-9f2c1e7a55d04b8e"
	gossipA  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	gossipB  = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=" // another 32 bytes
	keyBytes = "0123456789abcdef0123456789abcdef"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTokenAndGossipKey runs 3 nodes sharing an API token and a gossip key:
// writes without the token (or with a wrong one) get 401 on every node,
// writes with it succeed through a follower (forwarded to the leader),
// reads need no token, a node with another gossip key never joins, and
// neither secret appears in any node's output.
func TestTokenAndGossipKey(t *testing.T) {
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", token)
	keyFile := writeFile(t, dir, "gossip.key", gossipA)
	c := harness.Start(t, harness.Options{
		Binary: binary, Dir: dir, Nodes: 3, BootstrapExpect: 3, Token: token,
		Args: []string{"--api-token-file", tokenFile, "--gossip-key-file", keyFile},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, _, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower *harness.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}

	for _, n := range c.Nodes {
		for _, auth := range []string{"", "Bearer wrong-token", "Bearer " + token + "x", token} {
			for _, req := range []struct{ method, path, body string }{
				{http.MethodPut, "/v1/config/devices/17079", `{"company":"c","site":"s"}`},
				{http.MethodDelete, "/v1/config/devices/17079", ""},
				{http.MethodPost, "/v1/jobs/iot-work/cancel", ""},
				{http.MethodPost, "/v1/cluster/raft/remove", `{"id":"n3"}`},
			} {
				r, _ := http.NewRequestWithContext(ctx, req.method, n.URL()+req.path, strings.NewReader(req.body))
				if auth != "" {
					r.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s %s with Authorization %q: HTTP %d, want 401", n.ID, req.method, req.path, auth, resp.StatusCode)
				}
			}
		}
	}

	anon, _ := client.New(client.Config{Addrs: []string{follower.URL()}, RetryTimeout: 5 * time.Second})
	if _, err := anon.Put(ctx, "devices/17079", []byte(`{"company":"c","site":"s"}`)); !errors.Is(err, control.ErrUnauthorized) {
		t.Fatalf("put without token: %v, want ErrUnauthorized", err)
	}
	authed, _ := client.New(client.Config{Addrs: []string{follower.URL()}, RetryTimeout: 10 * time.Second, Token: token})
	if _, err := authed.Put(ctx, "devices/17079", []byte(`{"company":"ACME","site":"Aberdeen"}`)); err != nil {
		t.Fatalf("put with token through follower %s: %v", follower.ID, err)
	}
	for _, n := range c.Nodes {
		harness.Eventually(t, 10*time.Second, func() error {
			e, err := n.Client(5*time.Second).Get(ctx, "devices/17079", client.ReadOptions{})
			if err != nil {
				return err
			}
			if !strings.Contains(e.Value, "ACME") {
				return fmt.Errorf("%s reads %s", n.ID, e.Value)
			}
			return nil
		})
	}

	// A node with another gossip key cannot join.
	strangerKey := writeFile(t, dir, "other.key", gossipB)
	stranger, err := c.AddNode("--api-token-file", tokenFile, "--gossip-key-file", strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	// Its own --gossip-key-file comes last and wins over the shared one.
	if err := stranger.Start(binary); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // many gossip rounds and join retries
	members, err := c.Nodes[0].Client(5 * time.Second).Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == stranger.ID {
			t.Errorf("node %s with another gossip key is a member: %+v", stranger.ID, m)
		}
	}
	if len(members) != 3 {
		t.Errorf("%d members, want the 3 sharing the key: %+v", len(members), members)
	}
	if err := stranger.Stop(10 * time.Second); err != nil {
		t.Logf("stop %s: %v", stranger.ID, err)
	}

	for _, n := range c.Nodes {
		log, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{token, gossipA, gossipB, keyBytes} {
			if bytes.Contains(log, []byte(s)) {
				t.Errorf("%s's output contains the secret %q", n.ID, s)
			}
		}
	}
}
