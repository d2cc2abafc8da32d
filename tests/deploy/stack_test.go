package deploy

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/eddy-iot/eddy/control"
)

// composeStack drives one docker-compose project of deploy/docker-compose.yml.
type composeStack struct {
	t       *testing.T
	project string
	env     []string
	bin     string
	args    []string
}

func (c *composeStack) run(timeout time.Duration, args ...string) (string, error) {
	all := append(append(slices.Clone(c.args), "-p", c.project, "-f", deployPath(composeFile)), args...)
	return run(c.t, timeout, deployPath(), c.env, c.bin, all...)
}

func (c *composeStack) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// container returns the id of the service's container.
func (c *composeStack) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.must(time.Minute, "ps", "-q", service))
	if id == "" {
		c.t.Fatalf("service %s has no container", service)
	}
	return id
}

// state returns docker's State.Status, exit code and health of a container.
func (c *composeStack) state(id string) (status string, exit int, health string) {
	out, err := run(c.t, time.Minute, "", nil, "docker", "inspect", "--format",
		"{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", id)
	if err != nil {
		c.t.Fatalf("docker inspect %s: %v\n%s", id, err, out)
	}
	f := strings.Fields(out)
	exit, _ = strconv.Atoi(f[1])
	return f[0], exit, f[2]
}

// scrape returns the samples of a /metrics page, by series text
// (name{labels}).
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// TestComposeStack brings up the compose stack (broker, replay, three
// nodes, unbounded job), waits until the job has processed the replayed
// dataset and checkpointed it, takes a savepoint, restarts the job (it must
// restore, not re-read), checks that the nodes have a leader, submits the
// job to the nodes (cluster path) and kills one of them, then runs the job
// bounded in the job service and checks its summary and the SQLite tables
// of both paths on their volumes.
func TestComposeStack(t *testing.T) {
	requireDocker(t)
	if testing.Short() {
		t.Skip("-short: skipping the compose stack")
	}
	bin, args := composeCLI()
	if bin == "" {
		t.Skip("neither docker-compose nor the docker compose plugin is installed")
	}
	buildImage(t)

	nodePort, jobPort := freePort(t), freePort(t)
	c := &composeStack{
		t: t, bin: bin, args: args,
		project: fmt.Sprintf("eddytest%d", os.Getpid()),
		env: []string{
			"EDDY_IMAGE=" + testImage,
			fmt.Sprintf("EDDY_NODE1_HTTP_PORT=%d", nodePort),
			fmt.Sprintf("EDDY_JOB_METRICS_PORT=%d", jobPort),
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run(time.Minute, "logs", "--no-color", "--tail=30")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.run(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "20"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})

	start := time.Now()
	c.must(5*time.Minute, "up", "-d")
	t.Logf("compose up -d: %s", time.Since(start).Round(time.Second))

	// The replay ends with exit 0.
	replay := c.container("replay")
	eventually(t, 3*time.Minute, "replay exited", func() error {
		if st, code, _ := c.state(replay); st != "exited" {
			return fmt.Errorf("replay is %s", st)
		} else if code != 0 {
			t.Fatalf("replay exited with %d", code)
		}
		return nil
	})
	t.Logf("replay done: %s", time.Since(start).Round(time.Second))

	// The unbounded job has read and written every record. Its metrics
	// carry eddy_job, the job's name (iot-work-compose.yaml: iot-work).
	jobMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", jobPort)
	eventually(t, 3*time.Minute, "job processed the dataset", func() error {
		mm, err := scrape(jobMetrics)
		if err != nil {
			return err
		}
		if got := mm[`eddy_records_received_total{eddy_job="iot-work"}`]; got != aberdeenInput {
			return fmt.Errorf("eddy_records_received_total = %v", got)
		}
		if got := mm[`eddy_sink_rows_written_total{eddy_job="iot-work",sink="sqlite",table="readings"}`]; got != aberdeenValid {
			return fmt.Errorf("readings rows = %v", got)
		}
		return nil
	})
	mm, _ := scrape(jobMetrics)
	if got := mm[`eddy_records_failed_total{eddy_job="iot-work",reason="invalid_metric"}`]; got != aberdeenDeadLetters {
		t.Errorf(`eddy_records_failed_total{reason="invalid_metric"} = %v, want %d`, got, aberdeenDeadLetters)
	}
	t.Logf("job processed the dataset: %s", time.Since(start).Round(time.Second))

	// Checkpoints complete on the job's volume; a restarted job container
	// restores them and does not read the topic again.
	eventually(t, time.Minute, "a checkpoint completed", func() error {
		mm, err := scrape(jobMetrics)
		if err != nil {
			return err
		}
		if got := mm[`eddy_checkpoints_total{eddy_job="iot-work",kind="checkpoint",result="completed"}`]; got < 1 {
			return fmt.Errorf("completed checkpoints = %v", got)
		}
		return nil
	})
	// A savepoint through the job's API, with eddy inside the container.
	if out, err := c.run(2*time.Minute, "exec", "-T", "job", "/eddy", "savepoint", "--addr", "127.0.0.1:9464"); err != nil || !strings.Contains(out, "complete") {
		t.Errorf("eddy savepoint in the job container: %v\n%s", err, out)
	}
	c.must(2*time.Minute, "restart", "job")
	eventually(t, time.Minute, "restarted job restored its checkpoint", func() error {
		mm, err := scrape(jobMetrics)
		if err != nil {
			return err
		}
		if got := mm[`eddy_checkpoint_restore_duration_seconds_count{eddy_job="iot-work"}`]; got < 1 {
			return fmt.Errorf("no partition restored yet (%v)", got)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // time to (wrongly) read the topic again
	if mm, err := scrape(jobMetrics); err != nil {
		t.Error(err)
	} else if got := mm[`eddy_records_received_total{eddy_job="iot-work"}`]; got != 0 {
		t.Errorf("restarted job read %v records again; it should go on from its checkpoint", got)
	}
	t.Logf("job restarted from its checkpoint: %s", time.Since(start).Round(time.Second))

	// The control plane: one leader, three voters, three alive members,
	// every node and the broker healthy by their healthchecks.
	eventually(t, 2*time.Minute, "cluster formed", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/cluster/raft", nodePort))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st control.RaftStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.LeaderID == "" || len(st.Voters) != 3 {
			return fmt.Errorf("leader %q, voters %v", st.LeaderID, st.Voters)
		}
		nm, err := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", nodePort))
		if err != nil {
			return err
		}
		if got := nm[`eddy_members{status="alive"}`]; got != 3 {
			return fmt.Errorf(`eddy_members{status="alive"} = %v`, got)
		}
		for _, svc := range []string{"broker", "node1", "node2", "node3"} {
			if _, _, h := c.state(c.container(svc)); h != "healthy" {
				return fmt.Errorf("%s is %s", svc, h)
			}
		}
		return nil
	})
	// eddy ctl inside a node container (the README's way in).
	if out, err := c.run(time.Minute, "exec", "-T", "node1", "/eddy", "ctl", "--addr", "http://node1:8080", "members"); err != nil ||
		strings.Count(out, "alive") != 3 {
		t.Errorf("eddy ctl members in node1: %v\n%s", err, out)
	}
	t.Logf("cluster healthy: %s", time.Since(start).Round(time.Second))

	// The cluster path: the same job submitted to the nodes, which share
	// the partitions; one node is killed and its partitions move on.
	c.must(2*time.Minute, "stop", "job") // leave the CPU to the nodes
	c.must(2*time.Minute, "--profile", "cluster-job", "run", "--rm", "-T", "submit")
	clusterDone := func(alive ...string) func() error {
		return func() error {
			out, err := c.run(time.Minute, "exec", "-T", alive[0], "/eddy", "ctl", "--addr", "http://"+alive[0]+":8080", "partitions", "-o", "json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			var parts []struct {
				Job       string `json:"job"`
				Partition int32  `json:"partition"`
				Owner     string `json:"owner"`
				State     string `json:"state"`
				Progress  *struct {
					Offset int64 `json:"offset"`
					Lag    int64 `json:"lag"`
				} `json:"progress"`
			}
			if err := json.Unmarshal([]byte(out), &parts); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			var offsets int64
			owners := map[string]int{}
			for _, p := range parts {
				if p.Job != "iot-work-cluster" {
					continue
				}
				if p.State != "running" || p.Progress == nil || p.Progress.Lag != 0 || !slices.Contains(alive, p.Owner) {
					return fmt.Errorf("partition %d: %s on %s, progress %+v", p.Partition, p.State, p.Owner, p.Progress)
				}
				offsets += p.Progress.Offset
				owners[p.Owner]++
			}
			if offsets != aberdeenInput {
				return fmt.Errorf("offsets add up to %d of %d (owners %v)", offsets, aberdeenInput, owners)
			}
			t.Logf("cluster job: every partition at the end, owners %v", owners)
			return nil
		}
	}
	eventually(t, 3*time.Minute, "cluster job read the topic", clusterDone("node1", "node2", "node3"))
	t.Logf("cluster job done: %s", time.Since(start).Round(time.Second))
	c.must(time.Minute, "kill", "node3")
	eventually(t, 2*time.Minute, "node3's partitions taken over", clusterDone("node1", "node2"))
	t.Logf("node3 killed, partitions taken over: %s", time.Since(start).Round(time.Second))
	c.must(2*time.Minute, "stop", "node1", "node2") // hand over, flush, close the SQLite file
	holder := strings.TrimSpace(mustRun(t, "docker", "create", "-v", c.project+"_shared:/shared", testImage))
	defer run(t, time.Minute, "", nil, "docker", "rm", "-f", "-v", holder)
	clusterDir := t.TempDir()
	mustRun(t, "docker", "cp", holder+":/shared/iot-work-cluster.db", clusterDir)
	for _, suffix := range []string{"-wal", "-shm"} {
		run(t, time.Minute, "", nil, "docker", "cp", holder+":/shared/iot-work-cluster.db"+suffix, clusterDir)
	}
	countRows(t, filepath.Join(clusterDir, "iot-work-cluster.db"), map[string]int64{"readings": aberdeenValid, "dead_letters": aberdeenDeadLetters, "late_records": 0})

	// A bounded run in the job service, from the start (fresh checkpoint
	// storage): the summary and the tables.
	out := c.must(4*time.Minute, "run", "--rm", "-T", "job", "run", "--job", "/jobs/iot-work-compose.yaml",
		"--bounded", "--quiet", "--metrics-addr=", "--log-level=warn", "--checkpoint-storage=file:///data/checkpoints-bounded")
	t.Logf("bounded run in the job service:\n%s", lastLines(out, 9))
	if !strings.Contains(out, fmt.Sprintf("valid + late + dead letters = %d (ok)", aberdeenInput)) {
		t.Errorf("bounded summary does not balance:\n%s", out)
	}
	if got := summaryValue(t, out, "work periods"); got != aberdeenWorkPeriods {
		t.Errorf("work periods = %d, want %d", got, aberdeenWorkPeriods)
	}

	// Copy the database off the volume (the image has no sqlite3 and no shell).
	dir := t.TempDir()
	jobHolder := strings.TrimSpace(mustRun(t, "docker", "create", "-v", c.project+"_job-data:/data", testImage))
	defer run(t, time.Minute, "", nil, "docker", "rm", "-f", "-v", jobHolder)
	mustRun(t, "docker", "cp", jobHolder+":/data/iot-work.db", dir)
	for _, suffix := range []string{"-wal", "-shm"} { // present only if not checkpointed
		run(t, time.Minute, "", nil, "docker", "cp", jobHolder+":/data/iot-work.db"+suffix, dir)
	}
	countRows(t, filepath.Join(dir, "iot-work.db"), map[string]int64{"readings": aberdeenValid, "work_periods": aberdeenWorkPeriods, "dead_letters": aberdeenDeadLetters, "late_records": 0})
	t.Logf("compose stack checked in %s", time.Since(start).Round(time.Second))
}

// countRows checks the row counts of tables of an SQLite file.
func countRows(t *testing.T, path string, want map[string]int64) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table, w := range want {
		var n int64
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Errorf("%s: %s: %v", path, table, err)
		} else if n != w {
			t.Errorf("%s: %s has %d rows, want %d", filepath.Base(path), table, n, w)
		}
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, 2*time.Minute, "", nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
