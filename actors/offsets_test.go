package actors

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-iot/eddy/actors/checkpoint"
)

// groupOffsets reads the committed offsets of group for topic with an
// independent sarama ClusterAdmin, as kafka-consumer-groups --describe
// does: partition → committed offset (partitions without one left out).
func groupOffsets(t *testing.T, brokers []string, group, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var ps []int32
	for p := int32(0); p < partitions; p++ {
		ps = append(ps, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, b := range resp.Blocks[topic] {
		if !errors.Is(b.Err, sarama.ErrNoError) {
			t.Fatalf("group %s partition %d: %v", group, p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out
}

// newestManifest reads the newest complete checkpoint of job from the
// checkpoint storage at url.
func newestManifest(t *testing.T, url, job string) *checkpoint.Manifest {
	t.Helper()
	ctx := context.Background()
	st, err := checkpoint.OpenStorage(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := checkpoint.NewCatalog(st, job).Complete(ctx)
	if err != nil || len(ms) == 0 {
		t.Fatalf("complete checkpoints: %v %v", ms, err)
	}
	return ms[0]
}

func ackOffsets(m *checkpoint.Manifest) map[int32]int64 {
	out := map[int32]int64{}
	for _, a := range m.Partitions {
		out[a.Partition] = a.Offset
	}
	return out
}

// TestOffsetsCommittedToGroup: after a bounded run with checkpoints, the
// job's consumer group (default eddy-<name>) holds exactly the resume
// offsets of the final checkpoint — the partitions' end offsets, the next
// offset to read — read back by a separate admin client.
func TestOffsetsCommittedToGroup(t *testing.T) {
	msgs := readingsFor([]string{"a", "b", "c", "d", "e"}, 60)
	brokers := startBroker(t, 3, msgs)
	dir := t.TempDir()
	cfg := crashConfig(brokers, dir)
	cfg.Name = "lagjob"
	reg := newTestRegistry()
	job, err := NewJob(cfg, &memSink{}, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := newestManifest(t, cfg.Checkpoint.Storage, cfg.Name)
	if m.ID != sum.FinalCheckpoint || !m.Final {
		t.Fatalf("newest manifest %s final=%v, the run's final checkpoint %d", m.Name(), m.Final, sum.FinalCheckpoint)
	}
	want := ackOffsets(m)
	var total int64
	for _, o := range want {
		total += o
	}
	if total != int64(len(msgs)) {
		t.Fatalf("final checkpoint offsets %v sum to %d, want %d records", want, total, len(msgs))
	}
	got := groupOffsets(t, brokers, "eddy-lagjob", cfg.Source.Topic, 3)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("group eddy-lagjob offsets %v, checkpoint %s offsets %v", got, m.Name(), want)
	}
	if ok, bad := commitCount(t, reg, "ok"), commitCount(t, reg, "error"); ok < 1 || bad != 0 {
		t.Fatalf("eddy_offset_commits_total ok=%v error=%v", ok, bad)
	}
	t.Logf("group eddy-lagjob = checkpoint %s offsets %v after %v commits", m.Name(), got, commitCount(t, reg, "ok"))
}

// TestOffsetCommitsOff: source.group_id "-" commits nothing; a named group
// gets the offsets under its own name.
func TestOffsetCommitsOff(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b"}, 30))
	for _, tc := range []struct{ group, listed string }{{GroupIDOff, ""}, {"lag.tools_1", "lag.tools_1"}} {
		cfg := crashConfig(brokers, t.TempDir())
		cfg.Name = "offjob"
		cfg.Source.GroupID = tc.group
		runJob(t, cfg, nil, &memSink{})
		sc := sarama.NewConfig()
		sc.Version = sarama.V2_8_0_0
		admin, err := sarama.NewClusterAdmin(brokers, sc)
		if err != nil {
			t.Fatal(err)
		}
		groups, err := admin.ListConsumerGroups()
		admin.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := groups["eddy-offjob"]; ok {
			t.Errorf("group %q: the default group eddy-offjob was committed to", tc.group)
		}
		if _, ok := groups[tc.listed]; tc.listed != "" && !ok {
			t.Errorf("group %q not on the broker (groups %v)", tc.listed, groups)
		}
		if tc.listed != "" {
			m := newestManifest(t, cfg.Checkpoint.Storage, cfg.Name)
			if got, want := groupOffsets(t, brokers, tc.listed, cfg.Source.Topic, 2), ackOffsets(m); !reflect.DeepEqual(got, want) {
				t.Errorf("group %s offsets %v, checkpoint %v", tc.listed, got, want)
			}
		}
	}
}

// TestOffsetCommitRefusedIsOnlyAWarning: while another consumer is an
// active member of the group, the broker refuses eddy's simple commits
// (UNKNOWN_MEMBER_ID); the job still finishes, the failures are counted,
// and the group keeps the member's offsets, not eddy's.
func TestOffsetCommitRefusedIsOnlyAWarning(t *testing.T) {
	brokers := startBroker(t, 2, readingsFor([]string{"a", "b"}, 30))
	member, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("busy"), kgo.ConsumeTopics("iot-topic"),
		kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		member.PollFetches(pctx) // joins the group
		cancel()
		ds, err := admin.DescribeConsumerGroups([]string{"busy"})
		if err == nil && len(ds) == 1 && ds[0].State == "Stable" && len(ds[0].Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member never joined group busy: %v %v", ds, err)
		}
	}
	cfg := crashConfig(brokers, t.TempDir())
	cfg.Source.GroupID = "busy"
	reg := newTestRegistry()
	job, err := NewJob(cfg, &memSink{}, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := job.Run(ctx); err != nil {
		t.Fatalf("a refused offset commit failed the job: %v", err)
	}
	if ok, bad := commitCount(t, reg, "ok"), commitCount(t, reg, "error"); ok != 0 || bad < 1 {
		t.Fatalf("eddy_offset_commits_total ok=%v error=%v, want 0 and >= 1", ok, bad)
	}
	if got := groupOffsets(t, brokers, "busy", "iot-topic", 2); len(got) != 0 {
		t.Fatalf("group busy has offsets %v; the member committed none", got)
	}
}

// commitCount is eddy_offset_commits_total{result} in reg.
func commitCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eddy_offset_commits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("eddy_offset_commits_total is not registered")
	return 0
}

func TestValidateGroupID(t *testing.T) {
	for _, tc := range []struct {
		id, err string
	}{
		{"eddy-iot-work", ""},
		{"team.lag_tools-1", ""},
		{"", "must not be empty"},
		{"has space", "whitespace"},
		{"tab\there", "whitespace"},
		{"bad\xffutf8", "invalid UTF-8"},
		{strings.Repeat("g", MaxGroupIDBytes), ""},
		{strings.Repeat("g", MaxGroupIDBytes+1), "at most 249"},
	} {
		err := ValidateGroupID(tc.id)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ValidateGroupID(%q) = %v, want %q", tc.id, err, tc.err)
		}
	}
}

// TestOffsetCommitterBrokerDown: with no broker listening, a commit fails
// within the committer's timeouts, is counted as an error, and Close (which
// sends the pending commit) returns; Submit after Close does nothing.
func TestOffsetCommitterBrokerDown(t *testing.T) {
	cfg := testConfig([]string{"127.0.0.1:1"}) // nothing listens on port 1
	reg := newTestRegistry()
	commits := NewOffsetCommitMetrics(reg)
	c, err := NewOffsetCommitter(cfg, commits, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	c.Submit(1, map[int32]int64{0: 10, 1: 20})
	c.Submit(2, map[int32]int64{0: 11, 1: 21})
	c.Close()
	c.Close()
	c.Submit(3, map[int32]int64{0: 12})
	took := time.Since(began)
	if ok, bad := commitCount(t, reg, "ok"), commitCount(t, reg, "error"); ok != 0 || bad < 1 || bad > 2 {
		t.Fatalf("eddy_offset_commits_total ok=%v error=%v, want 0 and 1..2", ok, bad)
	}
	if took > 30*time.Second {
		t.Fatalf("Close took %v with the broker down", took)
	}
	t.Logf("broker down: %v errors, Close after %v", commitCount(t, reg, "error"), took.Round(time.Millisecond))
	var nilC *OffsetCommitter
	nilC.Submit(1, map[int32]int64{0: 1}) // commits off: no-ops
	nilC.Close()
}
