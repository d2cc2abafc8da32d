package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// lagOf reads what kafka-consumer-groups --describe shows for group on
// topic, with an independent sarama client: the committed offset and the
// lag (high watermark - committed) of every partition with a commit;
// empty maps for a group without commits.
func lagOf(t *testing.T, addr, group, topic string) (committed, lag map[int32]int64) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, lag = map[int32]int64{}, map[int32]int64{}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return committed, lag // kfake's answer for a group without commits (Kafka's: offsets -1)
	}
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range resp.Blocks[topic] {
		if !errors.Is(b.Err, sarama.ErrNoError) {
			t.Fatalf("group %s partition %d: %v", group, p, b.Err)
		}
		if b.Offset < 0 {
			continue
		}
		hw, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		committed[p], lag[p] = b.Offset, hw-b.Offset
	}
	return committed, lag
}

// TestRunCommitsCheckpointOffsets: `eddy run --bounded` with checkpoints
// against an `eddy dev broker` process leaves in the consumer group
// eddy-<name> exactly the offsets of its final checkpoint's manifest: lag
// 0 on every partition.
func TestRunCommitsCheckpointOffsets(t *testing.T) {
	s := seed(t)
	dir := t.TempDir()
	addr := harness.StartBroker(t, eddyBin, dir, 4)
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, synthetic(rand.New(rand.NewPCG(s, 11)), 800, ",", false), 0o644); err != nil {
		t.Fatal(err)
	}
	eddy(t, "replay", "--brokers", addr, "--topic", "iot-topic", "--data", data,
		"--map", "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon", "--quiet")
	spec := filepath.Join(dir, "job.yaml")
	storage := "file://" + filepath.Join(dir, "checkpoints")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf("name: lag-run\nsource:\n  brokers: [%q]\nsink: discard\ncheckpoint:\n  storage: %q\n  interval: 50ms\nstate:\n  dir: %q\n",
		addr, storage, filepath.Join(dir, "state"))), 0o644); err != nil {
		t.Fatal(err)
	}
	eddy(t, "run", "--job", spec, "--bounded", "--metrics-addr", "", "--quiet")

	st, err := checkpoint.OpenStorage(context.Background(), storage)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := checkpoint.NewCatalog(st, "lag-run").Complete(context.Background())
	if err != nil || len(ms) == 0 || !ms[0].Final {
		t.Fatalf("no final checkpoint: %v %v", ms, err)
	}
	want := map[int32]int64{}
	for _, a := range ms[0].Partitions {
		want[a.Partition] = a.Offset
	}
	got, lag := lagOf(t, addr, "eddy-lag-run", "iot-topic")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("group eddy-lag-run offsets %v, final checkpoint %s offsets %v", got, ms[0].Name(), want)
	}
	for p, l := range lag {
		if l != 0 {
			t.Errorf("partition %d: lag %d after a finished bounded run", p, l)
		}
	}
	t.Logf("group eddy-lag-run = %s offsets %v, lag %v", ms[0].Name(), got, lag)
}

// TestNodeCommitsCheckpointOffsets: a job inside `eddy node` commits the
// offsets of its newest complete checkpoint, as GET /v1/checkpoints shows
// it, to the group named in source.group_id.
func TestNodeCommitsCheckpointOffsets(t *testing.T) {
	dir := t.TempDir()
	addr := harness.StartBroker(t, eddyBin, dir, 3)
	s := seed(t)
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, synthetic(rand.New(rand.NewPCG(s, 12)), 600, ",", false), 0o644); err != nil {
		t.Fatal(err)
	}
	eddy(t, "replay", "--brokers", addr, "--topic", "iot-topic", "--data", data,
		"--map", "pboxid=box,event_time=when,metric=value,latitude=lat,longitude=lon", "--quiet")
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf("name: lag-node\nsource:\n  brokers: [%q]\n  group_id: lag.dashboard\nsink: discard\ncheckpoint:\n  storage: %q\n  interval: 200ms\n",
		addr, "file://"+filepath.Join(dir, "checkpoints"))), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := harness.FreeAddr(t)
	node := exec.Command(eddyBin, "node", "--id", "n1", "--data-dir", filepath.Join(dir, "n1"),
		"--http-addr", httpAddr, "--raft-addr", harness.FreeAddr(t), "--gossip-addr", harness.FreeAddr(t),
		"--actor-addr", harness.FreeAddr(t), "--bootstrap-expect", "1", "--job", spec, "--log-level", "warn")
	var nlog bytes.Buffer
	node.Stdout, node.Stderr = &nlog, &nlog
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { node.Process.Kill(); node.Wait() }()

	var produced int64
	{
		sc := sarama.NewConfig()
		sc.Version = sarama.V2_8_0_0
		c, err := sarama.NewClient([]string{addr}, sc)
		if err != nil {
			t.Fatal(err)
		}
		parts, _ := c.Partitions("iot-topic")
		for _, p := range parts {
			hw, err := c.GetOffset("iot-topic", p, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
			produced += hw
		}
		c.Close()
	}
	harness.Eventually(t, 60*time.Second, func() error {
		resp, err := http.Get("http://" + httpAddr + "/v1/checkpoints?job=lag-node")
		if err != nil {
			return err
		}
		var cps []control.Checkpoint
		err = json.NewDecoder(resp.Body).Decode(&cps)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var last *control.Checkpoint
		for i := range cps {
			if cps[i].Complete {
				last = &cps[i]
			}
		}
		if last == nil {
			return fmt.Errorf("no complete checkpoint yet: %d checkpoints", len(cps))
		}
		want := map[int32]int64{}
		var sum int64
		for _, a := range last.Acks {
			want[a.Partition] = a.Offset
			sum += a.Offset
		}
		if sum != produced {
			return fmt.Errorf("checkpoint %d covers %d of %d records", last.ID, sum, produced)
		}
		got, lag := lagOf(t, addr, "lag.dashboard", "iot-topic")
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("group lag.dashboard offsets %v, checkpoint %d offsets %v", got, last.ID, want)
		}
		t.Logf("group lag.dashboard = checkpoint %d offsets %v, lag %v", last.ID, got, lag)
		return nil
	})
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	// The leader's counter carries the job's label (promreg.ForJob).
	want := `eddy_offset_commits_total{eddy_job="lag-node",result="ok"}`
	if !bytes.Contains(body.Bytes(), []byte(want)) {
		t.Errorf("node /metrics lacks %s", want)
	}
}
