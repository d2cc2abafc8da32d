package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/cluster"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

func freeAddrs(t *testing.T, n int) []string { return freeport.Take(t, n) }

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("EDDY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// cluster1 is a one-node cluster with a job Service and a kfake broker.
type cluster1 struct {
	node   *control.Node
	svc    *Service
	broker *devbroker.Broker
	reg    *prometheus.Registry
}

func startCluster1(t *testing.T, partitions int) *cluster1 {
	t.Helper()
	b, err := devbroker.Start(devbroker.Config{Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	node, svc, reg := startMember(t, "n1", 1, nil)
	deadline := time.Now().Add(20 * time.Second)
	for !node.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &cluster1{node: node, svc: svc, broker: b, reg: reg}
}

// startMember starts a control-plane node with a job Service.
func startMember(t *testing.T, id string, expect int, join []string) (*control.Node, *Service, *prometheus.Registry) {
	t.Helper()
	addrs := freeAddrs(t, 3)
	cfg := control.DefaultConfig()
	cfg.ID, cfg.DataDir = id, t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = addrs[0], addrs[1], addrs[2]
	cfg.BootstrapExpect = expect
	cfg.Join = join
	cfg.Logger = testLogger()
	node, err := cluster.StartNode(cfg, cluster.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	reg := prometheus.NewRegistry()
	svc, err := Start(node, Config{StateDir: t.TempDir(), Logger: cfg.Logger, Registerer: reg, SnapshotGCInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return node, svc, reg
}

// spec is the spec of job reading c's broker (topic iot-topic) into sink,
// with checkpoints in dir every interval; more are further lines under
// checkpoint: (e.g. "  retain: 2\n").
func (c *cluster1) spec(job, sink, dir, interval, more string) string {
	return fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\n  topic: iot-topic\nsink: %q\ncheckpoint:\n  storage: \"file://%s\"\n  interval: %s\n%s",
		job, c.broker.Addrs()[0], sink, dir, interval, more)
}

func (c *cluster1) submit(t *testing.T, name, spec string) {
	t.Helper()
	c.submitN(t, name, spec, 2)
}

func (c *cluster1) submitN(t *testing.T, name, text string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := spec.Parse([]byte(text)); err != nil {
		t.Fatalf("spec: %v", err)
	}
	if _, err := c.node.Apply(ctx, control.JobPut{Name: name, Spec: text, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
}

// blockCheckpoints makes the snapshot uploads of checkpoints ids of job
// fail on every partition: a regular file where the checkpoint's
// directory must be created.
func blockCheckpoints(t *testing.T, dir, job string, ids ...uint64) {
	t.Helper()
	base := filepath.Join(dir, job, "cluster")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := os.WriteFile(filepath.Join(base, fmt.Sprintf("chk-%020d", id)), []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// watchComplete fails t if a published FSM view ever lacks a complete
// checkpoint of job after one existed (retention evicted the last
// complete checkpoint). It returns a func that stops watching.
func watchComplete(t *testing.T, fsm *control.FSM, job string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	seen := false
	go func() {
		defer close(done)
		_, _ = fsm.Wait(ctx, func(v control.View) bool {
			cp, ok := v.LastCompleteCheckpoint(job)
			if ok {
				seen = true
			} else if seen {
				t.Errorf("at index %d no complete checkpoint of %s is retained any more: %+v", v.Index(), job, v.Checkpoints(job))
				return true
			}
			_ = cp
			return false
		})
	}()
	return func() { cancel(); <-done }
}

// TestCheckpointAbortedAndRetried: uploads of checkpoints 3..6 fail on
// every partition. Each is aborted after the ack timeout (1 s) with its
// missing partitions recorded, the next one starts at once, checkpoint 7
// completes; through it all the last complete checkpoint (2) stays
// retained although retain is 2, and snapshots of evicted checkpoints are
// deleted from storage.
func TestCheckpointAbortedAndRetried(t *testing.T) {
	c := startCluster1(t, 2)
	dir := t.TempDir()
	const job = "abort-job"
	blockCheckpoints(t, dir, job, 3, 4, 5, 6)
	stop := watchComplete(t, c.node.FSM(), job)
	defer stop()
	c.submit(t, job, c.spec(job, "discard", dir, "100ms", "  ack_timeout: 1s\n  retain: 2\n"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The aborted ones are retained until a newer checkpoint completes
	// (checkpoint.Subsumed): look at them while 3..6 fail.
	var aborted []control.Checkpoint
	v, err := c.node.FSM().Wait(ctx, func(v control.View) bool {
		aborted = aborted[:0]
		for _, cp := range v.Checkpoints(job) {
			if cp.Aborted {
				aborted = append(aborted, cp)
			}
		}
		return len(aborted) > 0
	})
	if err != nil {
		t.Fatalf("no aborted checkpoint retained: %v; checkpoints %+v", err, v.Checkpoints(job))
	}
	v, err = c.node.FSM().Wait(ctx, func(v control.View) bool {
		cp, ok := v.LastCompleteCheckpoint(job)
		return ok && cp.ID >= 7
	})
	if err != nil {
		t.Fatalf("no checkpoint >= 7 completed: %v; checkpoints %+v", err, v.Checkpoints(job))
	}
	stop()
	for _, cp := range aborted {
		if cp.ID < 3 || cp.ID > 6 || !reflect.DeepEqual(cp.Missing, []int32{0, 1}) || cp.AbortReason != "acks missing after 1s" {
			t.Errorf("aborted checkpoint %d: missing %v reason %q, want one of 3..6 missing [0 1] after 1s", cp.ID, cp.Missing, cp.AbortReason)
		}
	}
	if n := counterValue(t, c.svc.metrics.aborts); n != 4 {
		t.Errorf("eddy_checkpoint_aborts_total = %v, want 4", n)
	}
	// Storage: once the newest checkpoints complete, the snapshots of the
	// evicted ones (1, 2) go; what the retained checkpoints reference stays.
	harness.Eventually(t, 20*time.Second, func() error {
		v := c.node.FSM().View()
		keep := map[string]bool{}
		for _, cp := range v.Checkpoints(job) {
			for _, a := range cp.Acks {
				k, _, _, _ := actors.ParseSnapshotRef(a.Snapshot)
				keep[k] = true
			}
		}
		for _, id := range []uint64{1, 2} {
			matches, _ := filepath.Glob(filepath.Join(dir, job, "cluster", fmt.Sprintf("chk-%020d", id), "*.snap"))
			for _, m := range matches {
				if rel, _ := filepath.Rel(dir, m); !keep[filepath.ToSlash(rel)] {
					return fmt.Errorf("snapshot %s of an evicted checkpoint is still stored", rel)
				}
			}
		}
		for k := range keep {
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(k))); err != nil {
				return fmt.Errorf("a retained snapshot is gone: %v", err)
			}
		}
		return nil
	})
	if n := counterValue(t, c.svc.metrics.snapshotsDeleted); n == 0 {
		t.Error("eddy_checkpoint_snapshots_deleted_total is 0")
	}
}

// TestCheckpointAbortRestartsTransactionalPartitions: with the Kafka
// transactional sink, an aborted checkpoint restarts the partitions that
// pre-committed it (their open transaction is aborted, not left to the
// broker's transaction timeout), and later checkpoints complete and commit.
func TestCheckpointAbortRestartsTransactionalPartitions(t *testing.T) {
	c := startCluster1(t, 2)
	dir := t.TempDir()
	const job = "txn-job"
	blockCheckpoints(t, dir, job, 3)
	c.submit(t, job, c.spec(job, "kafka://"+c.broker.Addrs()[0]+"?create_topics=true&partitions=2&replication=1", dir, "100ms", "  ack_timeout: 1s\n"))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	v, err := c.node.FSM().Wait(ctx, func(v control.View) bool {
		cp, ok := v.LastCompleteCheckpoint(job)
		return ok && cp.ID >= 5
	})
	if err != nil {
		t.Fatalf("no checkpoint >= 5 completed: %v; checkpoints %+v", err, v.Checkpoints(job))
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if n := counterValue(t, c.svc.metrics.restarts.WithLabelValues("checkpoint_aborted")); n < 2 {
			return fmt.Errorf("eddy_partition_restarts_total{reason=checkpoint_aborted} = %v, want >= 2 (both partitions pre-committed checkpoint 3)", n)
		}
		return nil
	})
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestDeletedJobSnapshotsCollected: after JobDelete the leader deletes
// every snapshot of the job from checkpoint storage.
func TestDeletedJobSnapshotsCollected(t *testing.T) {
	c := startCluster1(t, 2)
	dir := t.TempDir()
	const job = "gone-job"
	c.submit(t, job, c.spec(job, "discard", dir, "100ms", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.node.FSM().Wait(ctx, func(v control.View) bool {
		cp, ok := v.LastCompleteCheckpoint(job)
		return ok && cp.ID >= 2
	}); err != nil {
		t.Fatal(err)
	}
	snaps := func() []string {
		var out []string
		filepath.Walk(filepath.Join(dir, job), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	if len(snaps()) == 0 {
		t.Fatal("no snapshot stored before the delete")
	}
	if _, err := c.node.Apply(ctx, control.JobDelete{Name: job}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		if left := snaps(); len(left) > 0 {
			return fmt.Errorf("%d snapshots of the deleted job left, e.g. %s", len(left), left[0])
		}
		return nil
	})
	if v := c.node.FSM().View(); len(v.Checkpoints(job)) != 0 {
		t.Errorf("checkpoints of the deleted job retained: %+v", v.Checkpoints(job))
	}
}

// TestHandoffSnapshotsCollected: partitions move n1 → n2 when n2 joins and
// back when n2 drains, each time by a live handoff with a snapshot. Once
// the leases moved on, the leader deletes the handoff snapshots of older
// epochs that are not a lease's handoff point, and keeps the ones that are.
func TestHandoffSnapshotsCollected(t *testing.T) {
	const partitions = 8
	c := startCluster1(t, partitions)
	dir := t.TempDir()
	const job = "handoff-job"
	c.submitN(t, job, c.spec(job, "discard", dir, "1s", ""), partitions)
	leases := func() []control.Lease { return c.node.FSM().View().Leases(job) }
	harness.Eventually(t, 20*time.Second, func() error {
		if n := len(leases()); n != partitions {
			return fmt.Errorf("%d leases", n)
		}
		return nil
	})
	var join []string
	for _, m := range c.node.Membership().Members() {
		join = append(join, m.GossipAddr)
	}
	_, svc2, _ := startMember(t, "n2", 0, join)
	harness.Eventually(t, 30*time.Second, func() error {
		for _, l := range leases() {
			if l.Owner == "n2" && !l.Released && l.Handoff != nil {
				return nil
			}
		}
		return fmt.Errorf("no partition handed off to n2 yet: %+v", leases())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := svc2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Every partition is back on n1; those that moved twice have a handoff
	// point of their second epoch, and their first one is garbage.
	handoff := func(p int32, epoch uint64) string {
		return filepath.Join(dir, job, "cluster", "handoff", fmt.Sprintf("p%05d-e%d.snap", p, epoch))
	}
	harness.Eventually(t, 30*time.Second, func() error {
		moved := 0
		for _, l := range leases() {
			if l.Owner != "n1" || l.Released {
				return fmt.Errorf("partition %d: %+v, want held by n1", l.Partition, l)
			}
			if l.Handoff == nil || l.Epoch < 3 {
				continue
			}
			moved++
			if _, err := os.Stat(handoff(l.Partition, l.Handoff.Epoch)); err != nil {
				return fmt.Errorf("the handoff point of partition %d is gone: %v", l.Partition, err)
			}
			for e := uint64(1); e < l.Handoff.Epoch; e++ {
				if _, err := os.Stat(handoff(l.Partition, e)); err == nil {
					return fmt.Errorf("handoff snapshot of partition %d epoch %d still stored (lease epoch %d, handoff point epoch %d)", l.Partition, e, l.Epoch, l.Handoff.Epoch)
				}
			}
		}
		if moved == 0 {
			return fmt.Errorf("no partition moved there and back: %+v", leases())
		}
		return nil
	})
}

// TestOffsetsCommittedToGroup: on a two-node cluster, the leader commits
// the resume offsets of the newest complete checkpoint — of the
// partitions of both nodes, in one commit — to the job's consumer group
// (default eddy-<job>): an independent sarama ClusterAdmin reads exactly
// the offsets the FSM's complete checkpoint holds, which cover every
// produced record. The follower commits nothing.
func TestOffsetsCommittedToGroup(t *testing.T) {
	const partitions, records = 4, 400
	c := startCluster1(t, partitions)
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	prod, err := sarama.NewSyncProducer(c.broker.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*sarama.ProducerMessage
	for i := range records {
		dev := fmt.Sprintf("dev-%d", i%10)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "iot-topic", Key: sarama.StringEncoder(dev),
			Value: sarama.StringEncoder(fmt.Sprintf(`{"event_time":"2019-03-01 00:%02d:%02d","metric":%d,"pboxid":%q,"latitude":57.1,"longitude":-2.1}`, i/60%60, i%60, i%100, dev))})
	}
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	var join []string
	for _, m := range c.node.Membership().Members() {
		join = append(join, m.GossipAddr)
	}
	_, svc2, _ := startMember(t, "n2", 0, join)
	const job = "lag-job"
	c.submitN(t, job, c.spec(job, "discard", t.TempDir(), "200ms", ""), partitions)

	admin, err := sarama.NewClusterAdmin(c.broker.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var last control.Checkpoint
	harness.Eventually(t, 60*time.Second, func() error {
		cp, ok := c.node.FSM().View().LastCompleteCheckpoint(job)
		if !ok {
			return fmt.Errorf("no complete checkpoint")
		}
		want := map[int32]int64{}
		var sum int64
		for _, a := range cp.Acks {
			want[a.Partition] = a.Offset
			sum += a.Offset
		}
		if sum != records {
			return fmt.Errorf("checkpoint %d covers %d of %d records", cp.ID, sum, records)
		}
		resp, err := admin.ListConsumerGroupOffsets("eddy-"+job, map[string][]int32{"iot-topic": {0, 1, 2, 3}})
		if err != nil {
			return err
		}
		got := map[int32]int64{}
		for p, b := range resp.Blocks["iot-topic"] {
			if b.Offset >= 0 {
				got[p] = b.Offset
			}
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("group eddy-%s offsets %v, checkpoint %d offsets %v", job, got, cp.ID, want)
		}
		last = cp
		return nil
	})
	owners := map[string]bool{}
	for _, a := range c.node.FSM().View().Leases(job) {
		owners[a.Owner] = true
	}
	t.Logf("group eddy-%s = checkpoint %d (%+v); partition owners %v", job, last.ID, last.Acks, owners)
	if n := counterValue(t, c.svc.metrics.offsetCommits.WithLabelValues(job, "ok")); n < 1 {
		t.Errorf("leader: eddy_offset_commits_total{eddy_job,result=ok} = %v", n)
	}
	if n := counterValue(t, c.svc.metrics.offsetCommits.WithLabelValues(job, "error")); n != 0 {
		t.Errorf("leader: eddy_offset_commits_total{eddy_job,result=error} = %v", n)
	}
	if n := counterValue(t, svc2.metrics.offsetCommits.WithLabelValues(job, "ok")); n != 0 {
		t.Errorf("follower: eddy_offset_commits_total{eddy_job,result=ok} = %v, want 0", n)
	}
}
