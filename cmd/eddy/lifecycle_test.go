package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/cluster/jobs"
	"github.com/eddy-iot/eddy/control"
)

// eventually polls cond every 50 ms until it returns "" or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJobLifecycle runs real jobs (jobs.Service over a kfake broker) on a
// one-node cluster through eddy ctl: a bounded job ends finished with every
// partition at its end offset; a job whose MySQL sink is a closed port is
// failed with the error (password masked) and eddy ctl job wait exits 1;
// a running job cancelled stops and shows cancelled.
func TestJobLifecycle(t *testing.T) {
	node := startTestNode(t)
	svc, err := jobs.Start(node, jobs.Config{StateDir: t.TempDir(), Devices: node.Devices(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	addr := nodeHTTP(node)

	const records = 40
	dir, spec := replayedBroker(t, records)
	jobInfo := func(name string) control.JobInfo {
		t.Helper()
		out, err := ctl(addr, "job", "get", name, "-o", "json")
		if err != nil {
			t.Fatalf("job get %s: %v", name, err)
		}
		var j control.JobInfo
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatal(err)
		}
		return j
	}

	// A bounded job: finished, every partition at its end offset.
	if out, err := ctl(addr, "job", "submit", spec("bounded", "  bounded: true\nsink: \"sqlite:"+filepath.Join(dir, "out.db")+"\"\n"), "--partitions", "2"); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	out, err := ctl(addr, "job", "wait", "bounded", "--timeout", "60s")
	if err != nil || !strings.Contains(out, "job bounded finished") {
		t.Fatalf("job wait bounded: %v\n%s", err, out)
	}
	j := jobInfo("bounded")
	var sum int64
	for _, p := range j.Status.Partitions {
		if p.State != control.PartitionFinished || p.Owner != "n1" || p.Revision != j.ModifyIndex {
			t.Errorf("partition %+v, want finished on n1 at revision %d", p, j.ModifyIndex)
		}
		sum += p.Offset
	}
	if len(j.Status.Partitions) != 2 || sum != records {
		t.Errorf("end offsets sum to %d over %d partitions, want %d over 2", sum, len(j.Status.Partitions), records)
	}
	table, _ := ctl(addr, "partitions", "--job", "bounded")
	if strings.Count(table, " finished ") != 2 || strings.Contains(table, "owner_down") {
		t.Errorf("partitions of a finished job:\n%s", table)
	}
	if out, _ := ctl(addr, "job", "get", "bounded"); !strings.Contains(out, "job bounded: finished") {
		t.Errorf("job get:\n%s", out)
	}

	// A failing sink: failed, with the error, without the password.
	const pw = "pw-lifecycle-9431"
	if out, err := ctl(addr, "job", "submit", spec("badsink", "sink: \"mysql:eddy:"+pw+"@tcp(127.0.0.1:1)/eddy\"\n"), "--partitions", "2"); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	out, err = ctl(addr, "job", "wait", "badsink", "--timeout", "60s")
	if err == nil || !strings.Contains(err.Error(), "job badsink failed: partition") || strings.Contains(err.Error(), pw) {
		t.Fatalf("job wait of a failing job: %v\n%s", err, out)
	}
	j = jobInfo("badsink")
	if j.State != control.JobFailed || len(j.Status.Partitions) == 0 {
		t.Fatalf("failing job: %+v", j)
	}
	for _, p := range j.Status.Partitions {
		if p.State != control.PartitionFailed || !strings.Contains(p.Error, "127.0.0.1:1") || p.ErrorMs == 0 {
			t.Errorf("partition %+v: want failed with the sink's error and its time", p)
		}
	}
	out, _ = ctl(addr, "job", "get", "badsink")
	if strings.Contains(out, pw) || !strings.Contains(out, "failed") || !strings.Contains(out, "eddy:xxxxx@tcp(127.0.0.1:1)") {
		t.Errorf("job get of a failing job (must show the masked DSN, never the password):\n%s", out)
	}
	t.Logf("eddy ctl job get badsink:\n%s", out)

	// Cancel a running job: it stops, and shows cancelled.
	if out, err := ctl(addr, "job", "submit", spec("endless", "sink: discard\n"), "--partitions", "2"); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	if out, err := ctl(addr, "job", "wait", "endless", "--for", "running", "--timeout", "60s"); err != nil {
		t.Fatalf("wait running: %v\n%s", err, out)
	}
	if out, err := ctl(addr, "job", "cancel", "endless"); err != nil || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	eventually(t, 20*time.Second, func() string {
		for _, p := range svc.Assigner().Partitions() {
			if p.Job == "endless" {
				return fmt.Sprintf("partition %d still %s", p.Partition, p.State)
			}
		}
		return ""
	})
	if j := jobInfo("endless"); j.State != control.JobCancelled || j.Status.CancelledMs == 0 {
		t.Errorf("cancelled job: %+v", j)
	}
	if _, err := ctl(addr, "job", "wait", "endless"); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("wait on a cancelled job: %v", err)
	}
	if out, _ := ctl(addr, "job", "list"); !strings.Contains(out, "endless") || !strings.Contains(out, "cancelled") || !strings.Contains(out, "finished") {
		t.Errorf("job list:\n%s", out)
	}
}

// replayedBroker starts an embedded broker (iot-topic, 2 partitions, closed
// in t.Cleanup), replays records CSV readings of 7 devices into it with
// eddy replay (one a minute from 2019-03-01T00:00), and returns a temporary
// directory and spec, which writes dir/NAME.yaml: the job NAME reading that
// broker, with extra (more top-level YAML) appended.
func replayedBroker(t *testing.T, records int) (dir string, spec func(name, extra string) string) {
	t.Helper()
	b, err := devbroker.Start(devbroker.Config{Partitions: 2, Topics: []string{"iot-topic"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dir = t.TempDir()
	var csv strings.Builder
	csv.WriteString("pboxid,event_time,metric\n")
	for i := 0; i < records; i++ {
		fmt.Fprintf(&csv, "dev%d,2019-03-01T00:%02d:00,%d\n", i%7, i, 40+i)
	}
	data := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(data, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runEddy("replay", "--brokers", b.Addrs()[0], "--topic", "iot-topic", "--data", data); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	return dir, func(name, extra string) string {
		p := filepath.Join(dir, name+".yaml")
		s := fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\n%s", name, b.Addrs()[0], extra)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
