package controlplane

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// TestJobLifecycleOnCluster runs the job lifecycle on 3 real eddy node
// processes through the eddy binary: a bad spec is refused with the field;
// a bounded job into MariaDB ends finished (eddy ctl job wait exits 0) with
// every reading stored; a new revision of a running job reaches every
// partition on every node; a job whose sink refuses connections is failed
// with the error, its password (from the nodes' environment, ${ENV}) masked
// in every output and node log; a cancelled job stops on every node.
func TestJobLifecycleOnCluster(t *testing.T) {
	const pw = "cluster-pw-5521-Xq"
	t.Setenv("EDDY_LIFECYCLE_TEST_PW", pw) // the node processes inherit it
	dsn := mariadbtest.DSN(t)
	c := startCluster(t, 3, 0)
	url := c.Nodes[0].URL()
	dir := t.TempDir()
	const partitions = 6
	broker := harness.StartBroker(t, binary, dir, partitions)
	var csv strings.Builder
	csv.WriteString("pboxid,event_time,metric\n")
	const rows = 300
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&csv, "dev%d,2019-03-01T%02d:%02d:00,%d\n", i%17, i/60, i%60, 20+i%60)
	}
	data := filepath.Join(dir, "in.csv")
	if err := writeFile(data, csv.String()); err != nil {
		t.Fatal(err)
	}
	if err := harness.StartReplay(t, binary, broker, "--data", data).Wait(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	var outputs strings.Builder
	run := func(args ...string) (string, error) {
		out, err := ctl(t, url, args...)
		fmt.Fprintln(&outputs, out, err)
		return out, err
	}
	spec := func(name, body string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := writeFile(p, fmt.Sprintf("name: %s\ncheckpoint:\n  storage: %q\n  interval: 1s\n%s", name, "file://"+filepath.Join(dir, "ckpt"), body)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := fmt.Sprintf("source:\n  brokers: [%q]\n", broker)
	info := func(name string) control.JobInfo {
		t.Helper()
		out, err := run("job", "get", name, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var j control.JobInfo
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatal(err)
		}
		return j
	}

	// A spec every node would refuse.
	if _, err := run("job", "submit", "../../cmd/eddy/testdata/jobs/devices_file.bad.yml"); err == nil ||
		!strings.Contains(err.Error(), "broadcast.devices_file (line 6)") || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("bad spec: %v", err)
	}

	// A bounded job into MariaDB: finished, every reading stored.
	if out, err := run("job", "submit", spec("bounded", src+"  bounded: true\nsink: \"mysql:"+dsn+"\"\n"), "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	if out, err := run("job", "wait", "bounded", "--timeout", "120s"); err != nil || !strings.Contains(out, "finished") {
		t.Fatalf("job wait bounded: %v\n%s", err, out)
	}
	if out, _ := run("partitions", "--job", "bounded"); strings.Count(out, " finished ") != partitions {
		t.Errorf("partitions of the finished job:\n%s", out)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM readings").Scan(&n); err != nil || n != rows {
		t.Errorf("readings: %d rows (%v), want %d", n, err, rows)
	}

	// A running job gets a new revision: every partition, on every node.
	if out, err := run("job", "submit", spec("roll", src+"sink: discard\nbatch_size: 100\n"), "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	if out, err := run("job", "wait", "roll", "--for", "running", "--timeout", "60s"); err != nil {
		t.Fatalf("wait running: %v\n%s", err, out)
	}
	if out, err := run("job", "submit", spec("roll", src+"sink: discard\nbatch_size: 64\n"), "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	rev := info("roll").ModifyIndex
	harness.Eventually(t, 60*time.Second, func() error {
		j := info("roll")
		owners := map[string]bool{}
		for _, p := range j.Status.Partitions {
			if p.Revision != rev || p.State != control.PartitionRunning {
				return fmt.Errorf("partition %d on %s: %s at revision %d, want running at %d", p.Partition, p.Owner, p.State, p.Revision, rev)
			}
			owners[p.Owner] = true
		}
		if len(j.Status.Partitions) != partitions || len(owners) < 2 {
			return fmt.Errorf("%d partitions reported, on %v", len(j.Status.Partitions), owners)
		}
		return nil
	})

	// A sink that refuses connections, its password from the environment.
	if out, err := run("job", "submit", spec("badsink", src+"sink: \"mysql:eddy:${EDDY_LIFECYCLE_TEST_PW}@tcp(127.0.0.1:1)/eddy\"\n"), "--partitions", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	if _, err := run("job", "wait", "badsink", "--timeout", "60s"); err == nil || !strings.Contains(err.Error(), "job badsink failed") {
		t.Errorf("wait on a failing job: %v", err)
	}
	if j := info("badsink"); j.State != control.JobFailed || !strings.Contains(j.Spec, "${EDDY_LIFECYCLE_TEST_PW}") {
		t.Errorf("failing job: state %s, stored spec %q", j.State, j.Spec)
	}
	if out, _ := run("job", "get", "badsink"); !strings.Contains(out, "eddy:xxxxx@tcp(127.0.0.1:1)") {
		t.Errorf("job get of the failing job:\n%s", out)
	}

	// Cancel: the job stops on every node.
	if out, err := run("job", "cancel", "roll"); err != nil {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		for _, nd := range c.Nodes {
			resp, err := http.Get(nd.URL() + "/v1/local/partitions")
			if err != nil {
				return err
			}
			var list []control.PartitionStatus
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err != nil {
				return err
			}
			for _, p := range list {
				if p.Job == "roll" {
					return fmt.Errorf("%s still runs roll/%d (%s)", nd.ID, p.Partition, p.State)
				}
			}
		}
		return nil
	})
	if _, err := run("job", "wait", "roll"); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("wait on a cancelled job: %v", err)
	}

	if strings.Contains(outputs.String(), pw) {
		t.Errorf("eddy ctl printed the password:\n%s", outputs.String())
	}
	for _, nd := range c.Nodes {
		b, err := os.ReadFile(nd.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), pw) {
			t.Errorf("the log of %s shows the password", nd.ID)
		}
		if !strings.Contains(string(b), "job runtime opened") {
			t.Errorf("the log of %s shows no job", nd.ID)
		}
	}
}
