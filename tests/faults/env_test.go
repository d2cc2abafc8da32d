package faults

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

var (
	seedFlag    = flag.Uint64("seed", 0, "seed of the fault schedules and the dataset (0 = random; printed)")
	recordsFlag = flag.Int("records", 24000, "records of the generated dataset")
	eddyBin     string
)

const (
	job        = "iot-work"
	partitions = 12
	// eventStep is the event-time distance between consecutive records
	// before displacement.
	eventStep = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(probeEnv); addr != "" {
		os.Exit(probeDial(addr))
	}
	harness.Main(m, &eddyBin)
}

// inCI reports whether CI=true (or 1): missing tooling is then a failure.
func inCI() bool { v := os.Getenv("CI"); return v == "true" || v == "1" }

// require skips t (fails it in CI) unless it runs as root with every tool
// of tools on PATH.
func require(t *testing.T, tools ...string) {
	t.Helper()
	miss := func(format string, a ...any) {
		t.Helper()
		if inCI() {
			t.Fatalf(format+" (CI=true: the fault tests must run; see .ci/run)", a...)
		}
		t.Skipf(format, a...)
	}
	if os.Geteuid() != 0 {
		miss("%s needs root (iptables, per-node group ids, mariadbd --user=root)", t.Name())
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			miss("%s not found: %v (apt-get install iptables iproute2 mariadb-server)", tool, err)
		}
	}
}

// seeded returns the test's random source, printing the seed and how to
// replay it.
func seeded(t *testing.T) *rand.Rand {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with: go test ./tests/faults -v -run '^%s$' -seed %d -records %d)", seed, t.Name(), seed, *recordsFlag)
	return rand.New(rand.NewPCG(seed, 0x6661756c7473))
}

// between returns a seeded duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// writeDataset writes n seeded seed-schema NDJSON records of 48 devices to
// path. Record i has event time T0 + i·eventStep, displaced backwards for
// one record in five by up to 20 s (within the allowed lateness: windows
// that fired fire again) and for one in a hundred by 40–90 s (late
// records). Metrics are per-device random walks around the threshold 50, so
// work periods start and end often.
func writeDataset(path string, n int, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	const devices = 48
	metric := make([]float64, devices)
	for d := range metric {
		metric[d] = 40 + 20*rng.Float64()
	}
	t0 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		d := rng.IntN(devices)
		metric[d] = math.Max(0, math.Min(120, metric[d]+rng.NormFloat64()*6))
		at := t0.Add(time.Duration(i) * eventStep)
		switch r := rng.Float64(); {
		case i == 0:
		case r < 0.01:
			at = at.Add(-between(rng, 40*time.Second, 90*time.Second))
		case r < 0.21:
			at = at.Add(-between(rng, 0, 20*time.Second))
		}
		fmt.Fprintf(w, `{"pboxid":"dev-%02d","event_time":%q,"metric":%.2f,"latitude":57.1,"longitude":-2.1}`+"\n",
			d, at.Format("2006-01-02 15:04:05.000"), metric[d])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// jobEventTime is the event-time section of the job spec with allowed
// lateness lateness; oracleOptions matches it.
func jobEventTime(lateness time.Duration) string {
	return fmt.Sprintf("event_time:\n  out_of_orderness: 5s\n  allowed_lateness: %s\n", lateness)
}

func oracleOptions(lateness time.Duration) oracle.Options {
	o := oracle.DefaultOptions()
	o.Format = oracle.FormatNDJSON
	o.Partitions = partitions
	o.OutOfOrderness = 5 * time.Second
	o.AllowedLateness = lateness
	return o
}

// envConfig configures newEnv.
type envConfig struct {
	rng *rand.Rand
	// dsn of the sink database; "" = a fresh database of tests/mariadbtest.
	dsn string
	// replayFor is how long the replay runs (sets --speed).
	replayFor time.Duration
	// lateness is the job's allowed lateness: > 0 makes windows fire again
	// when a record within it arrives (different rows under one key over
	// time, what a stale writer can get wrong); 0 makes every window fire
	// once (a Kafka sink then has one message per key).
	lateness time.Duration
	// gidBase: see harness.Options.GidBase.
	gidBase uint32
	// nodeArgs are extra flags of every node.
	nodeArgs []string
	// kafkaSink adds eddy's transactional Kafka sink (harness.KafkaSinkURL)
	// on the test's broker to the MySQL sink.
	kafkaSink bool
	// checkpointYAML are more lines of the spec's checkpoint section
	// (indented two spaces), e.g. "  ack_timeout: 2s\n".
	checkpointYAML string
	// beforeStart, if set, runs before the nodes start, with the test's
	// directory (node i keeps its data in dir/n<i>/data).
	beforeStart func(dir string)
	// dataset, if set, replaces the generated dataset: it writes the input
	// under the test's directory and returns its path, the oracle options
	// that match the job and the job spec's event_time and format sections
	// (replacing jobEventTime(lateness)). The test replays it itself
	// (startReplay paces by event time for the generated dataset only).
	dataset func(dir string) (path string, opts oracle.Options, specYAML string)
}

// env is one test's cluster: broker, 3 nodes, the job submitted and
// running, the observer, the dataset and its oracle.
type env struct {
	t              *testing.T
	ctx            context.Context
	dir, dsn, data string
	broker         string
	brokerProc     *harness.Broker
	checkpoints    string // checkpoint storage directory
	want           *oracle.Result
	c              *harness.Cluster
	cl             *client.Client
	obs            *harness.Observer
	speed          float64
	replay         *harness.Replay
	began          time.Time
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), dsn: cfg.dsn, began: time.Now()}
	if e.dsn == "" {
		e.dsn = mariadbtest.DSN(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	e.ctx = ctx
	opts, extra := oracleOptions(cfg.lateness), jobEventTime(cfg.lateness)
	if cfg.dataset != nil {
		e.data, opts, extra = cfg.dataset(e.dir)
	} else {
		e.data = filepath.Join(e.dir, "readings.ndjson")
		if err := writeDataset(e.data, *recordsFlag, cfg.rng); err != nil {
			t.Fatal(err)
		}
		span := time.Duration(*recordsFlag) * eventStep
		e.speed = span.Seconds() / cfg.replayFor.Seconds()
	}
	var err error
	if e.want, err = oracle.ComputeFile(e.data, opts); err != nil {
		t.Fatal(err)
	}
	t.Logf("oracle: %s", e.want.Summary())
	e.brokerProc = harness.StartBrokerProcess(t, eddyBin, e.dir, partitions)
	e.broker = e.brokerProc.Addr
	e.checkpoints = filepath.Join(e.dir, "checkpoints")
	if cfg.kafkaSink {
		extra += fmt.Sprintf("sinks: [%q]\n", harness.KafkaSinkURL(e.broker, partitions))
	}
	spec := harness.BoundedSpec(job, e.broker, e.want, "mysql:"+e.dsn, "file://"+e.checkpoints, extra)
	spec = strings.Replace(spec, "\ncheckpoint:\n", "\ncheckpoint:\n"+cfg.checkpointYAML, 1)

	if cfg.beforeStart != nil {
		cfg.beforeStart(e.dir)
	}
	e.c = harness.Start(t, harness.Options{Binary: eddyBin, Dir: e.dir, Nodes: 3, BootstrapExpect: 3,
		Args: cfg.nodeArgs, GidBase: cfg.gidBase, Logf: t.Logf})
	e.cl = e.c.Client(0, 30*time.Second)
	if _, err := e.cl.SubmitJob(ctx, job, []byte(spec), partitions); err != nil {
		t.Fatal(err)
	}
	e.obs = harness.StartObserver(t, e.c, partitions)
	harness.Eventually(t, 60*time.Second, func() error { return e.obs.AllRunning("") })
	t.Logf("all %d partitions run after %s", partitions, time.Since(e.began).Round(time.Millisecond))
	return e
}

// startReplay starts the continuous input.
func (e *env) startReplay() {
	e.replay = harness.StartReplay(e.t, eddyBin, e.broker, "--data", e.data, "--speed", fmt.Sprintf("%.3f", e.speed))
	e.t.Logf("replay started: %d records at %.0fx (about %s)", *recordsFlag, e.speed,
		(time.Duration(*recordsFlag) * eventStep / time.Duration(e.speed)).Round(time.Second))
}

// running returns the running nodes, by id.
func (e *env) running() []*harness.Node {
	var out []*harness.Node
	for _, n := range e.c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// leaderAndFollowers waits for a Raft leader and returns it with the other
// running nodes.
func (e *env) leaderAndFollowers() (*harness.Node, []*harness.Node) {
	e.t.Helper()
	leader, _, err := e.c.WaitLeader(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var followers []*harness.Node
	for _, n := range e.running() {
		if n != leader {
			followers = append(followers, n)
		}
	}
	return leader, followers
}

// ownerOfSome picks, seeded, a running node that owns at least one
// partition, and returns it with its partitions.
func (e *env) ownerOfSome(rng *rand.Rand) (*harness.Node, map[int32]uint64) {
	e.t.Helper()
	n := e.ownerOtherThan(rng, "")
	return n, e.obs.OwnedBy(n.ID)
}

// ownerOtherThan picks, seeded, a running node other than the node with id
// not ("" = any) that owns at least one partition.
func (e *env) ownerOtherThan(rng *rand.Rand, not string) *harness.Node {
	e.t.Helper()
	var cands []*harness.Node
	harness.Eventually(e.t, 30*time.Second, func() error {
		cands = cands[:0]
		for _, n := range e.running() {
			if n.ID != not && len(e.obs.OwnedBy(n.ID)) > 0 {
				cands = append(cands, n)
			}
		}
		if len(cands) == 0 {
			return fmt.Errorf("no running node other than %q owns a partition", not)
		}
		return nil
	})
	return cands[rng.IntN(len(cands))]
}

// finish waits for the replay and for every partition to reach its end
// offset, then checks the tables against the oracle, the lease history and
// the observer.
func (e *env) finish() {
	t := e.t
	t.Helper()
	if err := e.replay.Wait(e.ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("replay finished after %s", time.Since(e.began).Round(time.Second))
	harness.Eventually(t, 2*time.Minute, func() error { return e.obs.AtOffsets(e.want.PartitionRecords) })
	t.Logf("every partition at its end offset after %s", time.Since(e.began).Round(time.Second))
	harness.WaitOracle(t, e.ctx, e.dsn, e.want, 60*time.Second)
	hist := e.leaseHistory()
	harness.CheckLeaseHistory(t, hist)
	vs := e.obs.Violations(hist)
	for i, v := range vs {
		if i == 20 {
			t.Errorf("observed: ... and %d more", len(vs)-i)
			break
		}
		t.Errorf("observed: %s", v)
	}
	for _, n := range e.c.Nodes {
		if b, err := os.ReadFile(n.LogPath); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race (EDDY_RACE=1 build); see %s", n.ID, n.LogPath)
		}
	}
}

// leaseHistory returns the job's lease history once the answering node's
// replica has every epoch the observer saw running. A node answers from its
// own replica: one restarted shortly before may not have applied the log
// yet and answer an empty history, which would make the lease checks pass
// on nothing (seen with n1 restarted 2 s before the end).
func (e *env) leaseHistory() []control.LeaseEvent {
	e.t.Helper()
	var hist []control.LeaseEvent
	harness.Eventually(e.t, 30*time.Second, func() error {
		var err error
		if hist, err = e.cl.LeaseHistory(e.ctx, job, -1); err != nil {
			return err
		}
		granted := map[int32]uint64{}
		for _, ev := range hist {
			granted[ev.Partition] = max(granted[ev.Partition], ev.Epoch)
		}
		for p, s := range e.obs.Snapshot() {
			if granted[p] < s.Epoch {
				return fmt.Errorf("lease history (%d events) has partition %d up to epoch %d, the observer saw %s run epoch %d", len(hist), p, granted[p], s.Node, s.Epoch)
			}
		}
		return nil
	})
	return hist
}

// openDB opens dsn with parseTime.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}
