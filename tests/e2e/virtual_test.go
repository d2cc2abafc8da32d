package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// TestPartitionsAreVirtualActors: with virtual actors on (the default; the
// test gives --actor-addr explicit free ports) every device partition
// is a protoactor-go virtual actor addressable by identity from any node:
// asking either node for iot-work/<p> is answered by the partition's lease
// holder.
func TestPartitionsAreVirtualActors(t *testing.T) {
	const parts = 8
	broker, err := devbroker.Start(devbroker.Config{Listen: "127.0.0.1:0", Partitions: parts, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	dir := t.TempDir()
	spec := filepath.Join(dir, "job.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf("name: iot-work\nsource:\n  brokers: [%q]\nsink: discard\n", broker.Addrs()[0])), 0o644)

	type node struct{ id, http, gossip string }
	nodes := []node{{"n1", harness.FreeAddr(t), harness.FreeAddr(t)}, {"n2", harness.FreeAddr(t), harness.FreeAddr(t)}}
	for i, n := range nodes {
		args := []string{"node", "--id", n.id, "--data-dir", filepath.Join(dir, n.id), "--http-addr", n.http,
			"--raft-addr", harness.FreeAddr(t), "--gossip-addr", n.gossip, "--actor-addr", harness.FreeAddr(t), "--log-level", "warn"}
		if i == 0 {
			args = append(args, "--bootstrap-expect", "1", "--job", spec)
		} else {
			args = append(args, "--join", nodes[0].gossip)
		}
		cmd := exec.Command(eddyBin, args...)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", n.id, log.String())
			}
		})
	}

	type status struct {
		Node, Owner       string
		Epoch             uint64
		NotOwner, Running bool
	}
	ask := func(api string, p int) (status, error) {
		var st status
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/partitions/iot-work/%d", api, p))
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return st, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b.String())
		}
		return st, json.NewDecoder(resp.Body).Decode(&st)
	}
	owners := map[string]int{}
	harness.Eventually(t, 60*time.Second, func() error {
		clear(owners)
		for p := 0; p < parts; p++ {
			var first status
			for i, n := range nodes {
				st, err := ask(n.http, p)
				if err != nil {
					return fmt.Errorf("%s asked for iot-work/%d: %v", n.id, p, err)
				}
				if st.NotOwner || !st.Running || st.Node != st.Owner || st.Owner == "" {
					return fmt.Errorf("%s asked for iot-work/%d: answered %+v, want the running lease holder", n.id, p, st)
				}
				if i == 0 {
					first = st
				} else if st.Node != first.Node || st.Epoch != first.Epoch {
					return fmt.Errorf("iot-work/%d: n1 reached %s@%d, n2 reached %s@%d", p, first.Node, first.Epoch, st.Node, st.Epoch)
				}
			}
			owners[first.Owner]++
		}
		if len(owners) < 2 {
			return fmt.Errorf("all partitions on one node (%v): placement has not spread them yet", owners)
		}
		return nil
	})
	t.Logf("partitions per owner: %v; every identity reached its holder from both nodes", owners)

	resp, err := http.Get(fmt.Sprintf("http://%s/v1/partitions/iot-work/x", nodes[0].http))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /v1/partitions/iot-work/x: HTTP %d, want 400", resp.StatusCode)
	}
}
