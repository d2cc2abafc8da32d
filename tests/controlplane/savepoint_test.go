package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// TestSavepointOnCluster drives cluster savepoints through eddy ctl on 3
// real eddy node processes with an API token: a job bounded at the
// end_offsets of the whole input runs over its first half (the second is
// not produced yet); eddy ctl savepoint create takes a savepoint, list
// shows it complete with every partition's offset (together exactly the
// records produced); ten later checkpoints with checkpoint.retain 2 evict
// neither its record nor its snapshots (while the leader's collection
// deletes those of evicted checkpoints); savepoint create --cancel stops
// the job with a second savepoint; the second half is produced and the job
// submitted again with --from-savepoint of the first: every partition
// restores it (not the newer second one), the job finishes and MySQL equals the
// oracle of the whole input. Then the API's error cases: unknown job and
// savepoint 404, a write without the token 401, and savepoint delete.
func TestSavepointOnCluster(t *testing.T) {
	const token = "sp-token-77120"
	t.Setenv("EDDY_TOKEN", token) // eddy ctl (and the nodes) read it
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := writeFile(tokenFile, token); err != nil {
		t.Fatal(err)
	}
	dsn := mariadbtest.DSN(t)
	c := startCluster(t, 3, 0, "--api-token-file", tokenFile)
	url := c.Nodes[1].URL() // a follower most likely: writes are forwarded
	dir := t.TempDir()
	const partitions, rows, job = 6, 4000, "spjob"
	broker := harness.StartBroker(t, binary, dir, partitions)

	// Input: 17 devices, a reading every 2 s, metrics crossing the
	// threshold (work periods), in two halves.
	var all, first, second strings.Builder
	for _, b := range []*strings.Builder{&all, &first, &second} {
		b.WriteString("pboxid,event_time,metric\n")
	}
	base := time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		line := fmt.Sprintf("dev%d,%s,%d\n", i%17, base.Add(time.Duration(i)*2*time.Second).Format("2006-01-02T15:04:05"), 20+(i*13)%60)
		all.WriteString(line)
		if i < rows/2 {
			first.WriteString(line)
		} else {
			second.WriteString(line)
		}
	}
	paths := map[string]string{}
	for name, b := range map[string]*strings.Builder{"all": &all, "first": &first, "second": &second} {
		paths[name] = filepath.Join(dir, name+".csv")
		if err := writeFile(paths[name], b.String()); err != nil {
			t.Fatal(err)
		}
	}
	opts := oracle.DefaultOptions()
	opts.Partitions = partitions
	want, err := oracle.ComputeFile(paths["all"], opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.StartReplay(t, binary, broker, "--data", paths["first"]).Wait(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}

	storage := filepath.Join(dir, "ckpt")
	var ends strings.Builder
	for p, n := range want.PartitionRecords {
		fmt.Fprintf(&ends, "    %d: %d\n", p, n)
	}
	specPath := filepath.Join(dir, "job.yaml")
	spec := fmt.Sprintf("name: %s\nsource:\n  brokers: [%q]\n  end_offsets:\n%ssink: %q\ncheckpoint:\n  storage: %q\n  interval: 300ms\n  retain: 2\nbatch_size: 256\n",
		job, broker, ends.String(), "mysql:"+dsn, "file://"+storage)
	if err := writeFile(specPath, spec); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, url, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	checkpoints := func() []control.Checkpoint {
		t.Helper()
		var cps []control.Checkpoint
		if err := json.Unmarshal([]byte(run("checkpoints", "--job", job, "-o", "json")), &cps); err != nil {
			t.Fatal(err)
		}
		return cps
	}
	sum := func(cp control.Checkpoint) (n int64) {
		for _, a := range cp.Acks {
			n += a.Offset
		}
		return n
	}
	run("job", "submit", specPath, "--partitions", fmt.Sprint(partitions))
	harness.Eventually(t, 90*time.Second, func() error {
		for _, cp := range checkpoints() {
			if cp.Complete && sum(cp) == rows/2 {
				return nil
			}
		}
		return fmt.Errorf("no complete checkpoint at the end of the first half (%d records) yet", rows/2)
	})

	// The savepoint: every partition at its end of the first half.
	var sp control.Checkpoint
	if err := json.Unmarshal([]byte(run("savepoint", "create", job, "-o", "json")), &sp); err != nil {
		t.Fatal(err)
	}
	if !sp.Savepoint || !sp.Complete || len(sp.Acks) != partitions || sum(sp) != rows/2 {
		t.Fatalf("savepoint %+v: want complete, savepoint, %d acks summing to %d", sp, partitions, rows/2)
	}
	list := run("savepoint", "list", job)
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+%d\s.*6/6\s+complete\s+0:\d+ 1:\d+ 2:\d+ 3:\d+ 4:\d+ 5:\d+`, job, sp.ID)).MatchString(list) {
		t.Fatalf("savepoint list does not show savepoint %d complete with its offsets:\n%s", sp.ID, list)
	}
	spDir := filepath.Join(storage, job, "cluster", fmt.Sprintf("chk-%020d", sp.ID))
	nextDir := filepath.Join(storage, job, "cluster", fmt.Sprintf("chk-%020d", sp.ID+1))
	// Ten later checkpoints, retain 2, and a snapshot collection that
	// deleted the next checkpoint's snapshots: the savepoint stays.
	harness.Eventually(t, 60*time.Second, func() error {
		cps := checkpoints()
		if newest := cps[len(cps)-1].ID; newest < sp.ID+10 {
			return fmt.Errorf("newest checkpoint %d", newest)
		}
		if files, _ := os.ReadDir(nextDir); len(files) > 0 {
			return fmt.Errorf("the snapshots of checkpoint %d are not collected yet", sp.ID+1)
		}
		return nil
	})
	cps := checkpoints()
	if len(cps) > 4 || cps[0].ID != sp.ID || !cps[0].Savepoint {
		t.Fatalf("retained checkpoints %v: want savepoint %d and at most 3 more (retain 2 + the newest complete)", checkpointIDs(cps), sp.ID)
	}
	if files, _ := os.ReadDir(spDir); len(files) != partitions {
		t.Fatalf("savepoint snapshots in %s: %d files, want %d", spDir, len(files), partitions)
	}

	// Stop with a second savepoint (cancelled with it), produce the rest,
	// start again from the first savepoint: not the second, newer one.
	var sp2 control.Checkpoint
	if err := json.Unmarshal([]byte(run("savepoint", "create", job, "--cancel", "-o", "json")), &sp2); err != nil {
		t.Fatal(err)
	}
	if !sp2.Complete || !sp2.CancelJob || sp2.ID <= sp.ID || sum(sp2) != rows/2 {
		t.Fatalf("stop with savepoint: %+v", sp2)
	}
	if _, err := ctl(t, url, "job", "wait", job); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("job after stop with savepoint: %v, want cancelled", err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		for _, nd := range c.Nodes {
			var list []control.PartitionStatus
			resp, err := http.Get(nd.URL() + "/v1/local/partitions")
			if err != nil {
				return err
			}
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err != nil {
				return err
			}
			for _, p := range list {
				if p.Job == job {
					return fmt.Errorf("%s still runs %s/%d", nd.ID, job, p.Partition)
				}
			}
		}
		return nil
	})
	if out := run("savepoint", "list", job); strings.Count(out, " complete ") != 2 {
		t.Fatalf("the savepoints of the cancelled job are not both listed:\n%s", out)
	}
	if err := harness.StartReplay(t, binary, broker, "--data", paths["second"]).Wait(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	logAt := map[string]int64{}
	for _, nd := range c.Nodes {
		if st, err := os.Stat(nd.LogPath); err == nil {
			logAt[nd.ID] = st.Size()
		}
	}
	run("job", "submit", specPath, "--partitions", fmt.Sprint(partitions), "--from-savepoint", fmt.Sprint(sp.ID))
	if out := run("job", "wait", job, "--timeout", "120s"); !strings.Contains(out, "finished") {
		t.Fatalf("job wait: %s", out)
	}
	harness.WaitOracle(t, ctxTimeout(t, 2*time.Minute), dsn, want, 30*time.Second)
	restored := regexp.MustCompile(`partition restored.*\bpartition[=":]+(\d+).*\bfrom[=":]+checkpoint (\d+)`)
	fromSP := map[string]bool{}
	for _, nd := range c.Nodes {
		b, err := os.ReadFile(nd.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range restored.FindAllStringSubmatch(string(b[logAt[nd.ID]:]), -1) {
			if m[2] == fmt.Sprint(sp.ID) {
				fromSP[m[1]] = true
			}
		}
	}
	if len(fromSP) != partitions {
		t.Errorf("partitions restored from savepoint %d: %v, want all %d", sp.ID, fromSP, partitions)
	}

	// The API's error cases.
	post := func(path, tok string) int {
		req, _ := http.NewRequest(http.MethodPost, url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/v1/jobs/"+job+"/savepoints", ""); code != http.StatusUnauthorized {
		t.Errorf("savepoint without the token: HTTP %d, want 401", code)
	}
	if code := post("/v1/jobs/nope/savepoints", token); code != http.StatusNotFound {
		t.Errorf("savepoint of an unknown job: HTTP %d, want 404", code)
	}
	for _, args := range [][]string{
		{"savepoint", "list", "nope"},
		{"savepoint", "delete", job, "999999"},
		{"job", "submit", specPath, "--from-savepoint", "999999"},
	} {
		if out, err := ctl(t, url, args...); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
			t.Errorf("eddy ctl %v: %v %s, want HTTP 404", args, err, out)
		}
	}
	run("savepoint", "delete", job, fmt.Sprint(sp.ID))
	run("savepoint", "delete", job, fmt.Sprint(sp2.ID))
	if out := run("savepoint", "list", job, "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("savepoints after delete: %s", out)
	}
	harness.Eventually(t, 60*time.Second, func() error {
		if files, _ := os.ReadDir(spDir); len(files) > 0 {
			return fmt.Errorf("%d snapshots of the deleted savepoint are still in %s", len(files), spDir)
		}
		return nil
	})
}

func checkpointIDs(cps []control.Checkpoint) []uint64 {
	out := make([]uint64, len(cps))
	for i, cp := range cps {
		out[i] = cp.ID
	}
	return out
}
