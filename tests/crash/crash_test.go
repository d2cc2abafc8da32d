// Package crash is eddy's kill -9 test with real processes: a broker process
// (eddy dev broker), MariaDB, and eddy run on a bounded replay of the
// Aberdeen data, killed with SIGKILL at seeded random moments — during a
// checkpoint, during the sink pre-commit flush, right after a checkpoint
// completed (while the Kafka transactions commit), during start-up, or
// anywhere — and restarted each time. At the end the MySQL tables and the
// read_committed Kafka output must equal the independent batch computation
// of cmd/eddy/oracle exactly: no missing row, no duplicate.
// TestCorruptSnapshotFallsBack damages the newest checkpoint before a
// restart; TestSavepointCommands drives eddy savepoint, list, delete and
// eddy run --from-savepoint.
//
//	go test ./tests/crash -v                      # a random seed, printed
//	go test ./tests/crash -v -seed 42 -kills 8    # replay a seed
//	go test ./tests/crash -v -records 200000      # a shorter replay
//
// Timing comes from the job's own log lines ("checkpoint started",
// "checkpoint complete"), plus the test hook actors.TestCheckpointDelayEnv
// in some runs: each partition then waits 300 ms between writing its
// snapshot and acknowledging the checkpoint, so a kill lands inside a
// checkpoint on purpose rather than by luck.
package crash

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/checkpoint"
	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

var (
	seedFlag    = flag.Uint64("seed", 0, "seed of the kill schedule (0 = random; printed)")
	killsFlag   = flag.Int("kills", 6, "SIGKILLs before the run that may finish (>= 5 covers every kind)")
	recordsFlag = flag.Int64("records", 0, "replay only the first N Aberdeen records (0 = all 929,022)")
	eddyBin     string
)

func TestMain(m *testing.M) { harness.Main(m, &eddyBin) }

// oracleOf computes what a bounded run over the first records Aberdeen
// records (all when 0) must leave in its sinks.
func oracleOf(t *testing.T, records int64) *oracle.Result {
	t.Helper()
	opts := oracle.AberdeenOptions()
	opts.Limit = records
	res, err := oracle.Compute(aberdeen.Open(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// startBroker runs `eddy dev broker` as a process until the test ends.
func startBroker(t *testing.T, dir string) string {
	t.Helper()
	return harness.StartBroker(t, eddyBin, dir, 12)
}

// run is one eddy run process; its stderr lines are delivered on lines.
type run struct {
	cmd    *exec.Cmd
	lines  chan string
	stdout bytes.Buffer
	mu     sync.Mutex
	log    []string // every stderr line
	exited chan struct{}
	err    error
}

// startRun starts eddy run --bounded; metricsAddr "" serves no metrics.
func startRun(t *testing.T, spec, metricsAddr string, env ...string) *run {
	t.Helper()
	cmd := exec.Command(eddyBin, "run", "--job", spec, "--bounded", "--quiet", "--metrics-addr", metricsAddr, "--log-level", "debug")
	cmd.Env = append(os.Environ(), env...)
	r := &run{cmd: cmd, lines: make(chan string, 4096), exited: make(chan struct{})}
	cmd.Stdout = &r.stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			r.mu.Lock()
			r.log = append(r.log, l)
			r.mu.Unlock()
			select {
			case r.lines <- l:
			default: // nobody waits for lines now
			}
		}
		r.err = cmd.Wait()
		close(r.exited)
	}()
	return r
}

// waitLine waits for a stderr line containing substr; false when the process
// exited first or timeout passed.
func (r *run) waitLine(substr string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-r.lines:
			if strings.Contains(l, substr) {
				return true
			}
		case <-r.exited:
			return false
		case <-deadline:
			return false
		}
	}
}

// drain forgets the stderr lines delivered so far.
func (r *run) drain() {
	for {
		select {
		case <-r.lines:
		default:
			return
		}
	}
}

// waitReceived waits until the run's eddy_records_received_total reaches n;
// false when the process exited first.
func (r *run) waitReceived(addr string, n int64) bool {
	for {
		if received(addr) >= n {
			return true
		}
		select {
		case <-r.exited:
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (r *run) kill() bool {
	select {
	case <-r.exited:
		return false
	default:
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	return true
}

func (r *run) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdout.String() + "\n" + strings.Join(r.log, "\n")
}

// count returns how many stderr lines so far contain substr.
func (r *run) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.log {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// The kinds of kill moment.
const (
	killInCheckpoint = "during a checkpoint (snapshot written, ack delayed)"
	killInPreCommit  = "during the sink pre-commit flush of a checkpoint"
	killAfterCommit  = "right after a checkpoint completed (Kafka commits)"
	killInRestore    = "during start-up (restore, first batches)"
	killAnywhere     = "at a random moment"
)

var killKinds = []string{killInCheckpoint, killInPreCommit, killAfterCommit, killInRestore, killAnywhere}

func writeSpec(t *testing.T, dir, broker, dsn string, kafka bool) string {
	t.Helper()
	sinksLine := ""
	if kafka {
		sinksLine = fmt.Sprintf("sinks: [%q]\n", "kafka://"+broker+
			"?tables=window_aggregates,work_periods,late_records,dead_letters&create_topics=true&partitions=12")
	}
	spec := filepath.Join(dir, "job.yaml")
	err := os.WriteFile(spec, []byte(fmt.Sprintf(`name: iot-work
source:
  brokers: [%q]
sink: %q
%scheckpoint:
  storage: %q
  interval: 500ms
  retain: 3
state:
  dir: %q
  cache_devices: 8
`, broker, "mysql:"+dsn, sinksLine, "file://"+filepath.Join(dir, "checkpoints"), filepath.Join(dir, "state"))), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func replay(t *testing.T, broker string, records int64) {
	t.Helper()
	args := []string{"replay", "--brokers", broker, "--quiet"}
	if records > 0 {
		args = append(args, "--limit", fmt.Sprint(records))
	}
	out, err := exec.Command(eddyBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy replay: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// finish runs the job to its end and returns its output.
func finish(t *testing.T, spec string) string {
	t.Helper()
	r := startRun(t, spec, "")
	select {
	case <-r.exited:
	case <-time.After(5 * time.Minute):
		r.kill()
		t.Fatalf("final run did not finish in 5 minutes:\n%s", r.output())
	}
	if r.err != nil {
		t.Fatalf("final run: %v\n%s", r.err, r.output())
	}
	return r.output()
}

// TestKillNineExactlyOnce: see the package documentation.
func TestKillNineExactlyOnce(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with: go test ./tests/crash -run TestKillNineExactlyOnce -v -seed %d -kills %d -records %d)",
		seed, seed, *killsFlag, *recordsFlag)
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	began := time.Now()
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := startBroker(t, dir)
	replay(t, broker, *recordsFlag)
	want := oracleOf(t, *recordsFlag)
	spec := writeSpec(t, dir, broker, dsn, true)

	// Every kind once, in a seeded order, then random kinds.
	kinds := rng.Perm(len(killKinds))
	inCheckpoint := 0
	for i := 0; i < *killsFlag; i++ {
		kind := killKinds[rng.IntN(len(killKinds))]
		if i < len(kinds) {
			kind = killKinds[kinds[i]]
		}
		var env []string
		if kind == killInCheckpoint {
			env = append(env, actors.TestCheckpointDelayEnv+"=300ms")
		}
		// Each run may use up to a third of the records left (counted from
		// the newest complete checkpoint), whatever the machine's speed:
		// the kills never finish the job.
		left := want.Records - checkpointedRecords(t, dir)
		gate := int64(rng.Float64() * float64(left) / 3)
		addr := harness.FreeAddr(t)
		r := startRun(t, spec, addr, env...)
		var delay time.Duration
		ok := true
		switch kind {
		case killInCheckpoint, killInPreCommit, killAfterCommit:
			// After some progress, the next checkpoint's start (or end).
			// killInCheckpoint runs ack 300 ms after their snapshots are
			// written.
			ok = r.waitReceived(addr, gate)
			r.drain()
			line := `msg="checkpoint started"`
			if kind == killAfterCommit {
				line = `msg="checkpoint complete"`
			}
			ok = ok && r.waitLine(line, time.Minute)
			delay = map[string]time.Duration{
				killInCheckpoint: time.Duration(rng.IntN(250)) * time.Millisecond,
				killInPreCommit:  time.Duration(rng.IntN(3000)) * time.Microsecond,
				killAfterCommit:  time.Duration(rng.IntN(5000)) * time.Microsecond,
			}[kind]
		case killInRestore:
			delay = time.Duration(rng.IntN(200)) * time.Millisecond
		case killAnywhere:
			ok = r.waitReceived(addr, gate)
			delay = time.Duration(rng.IntN(5000)) * time.Microsecond
		}
		if !ok {
			r.kill()
			t.Fatalf("kill %d (%s): the run ended before its trigger:\n%s", i+1, kind, r.output())
		}
		if kind == killInCheckpoint && r.count("test hook: every partition delays its checkpoint ack") == 0 {
			r.kill()
			t.Fatalf("kill %d: the eddy binary ignored %s (built without -tags eddy_failpoints?):\n%s", i+1, actors.TestCheckpointDelayEnv, r.output())
		}
		time.Sleep(delay)
		started, completed := r.count(`msg="checkpoint started"`), r.count(`msg="checkpoint complete"`)+r.count(`msg="checkpoint aborted"`)
		if !r.kill() {
			t.Fatalf("kill %d (%s): the run exited by itself before the kill (%v); use more records:\n%s", i+1, kind, r.err, r.output())
		}
		if started > completed {
			inCheckpoint++
		}
		restored := r.count(`msg="partition restored"`)
		fallbacks := r.count("falling back")
		t.Logf("kill %d: SIGKILL %s, %s after its trigger (%d of %d records left at start); %d partitions had restored a checkpoint, %d checkpoints started, %d ended, %d fallbacks",
			i+1, kind, delay, left, want.Records, restored, started, completed, fallbacks)
		if fallbacks > 0 {
			t.Errorf("kill %d: a restart found a corrupt snapshot (none was damaged):\n%s", i+1, r.output())
		}
	}
	if inCheckpoint == 0 && *killsFlag >= len(killKinds) {
		t.Errorf("no kill landed while a checkpoint was in progress")
	}

	out := finish(t, spec)
	t.Logf("final run:\n%s", lastLines(out, "summary:", 14))
	if !strings.Contains(out, "(ok)") || !strings.Contains(out, fmt.Sprintf("input          %d", want.Records)) {
		t.Errorf("final summary does not count each of the %d records once:\n%s", want.Records, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := oracle.LoadMySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if d := oracle.Compare(got, want); !d.Equal() {
		t.Errorf("MySQL differs from the oracle after %d kills:\n%s", *killsFlag, d.Format(10))
	} else {
		t.Logf("MySQL equals the oracle: %d readings, %d windows, %d work periods, %d dead letters",
			got.Readings, len(got.Windows), len(got.WorkPeriods), got.DeadLetters)
	}

	kgot, err := harness.LoadKafka(ctx, broker, "iot-work")
	if err != nil {
		t.Fatal(err)
	}
	kgot.Readings = want.Readings // readings go to MySQL only
	if d := oracle.Compare(kgot, want); !d.Equal() {
		t.Errorf("read_committed Kafka output differs from the oracle after %d kills (duplicates are extras):\n%s", *killsFlag, d.Format(10))
	} else {
		t.Logf("Kafka (read_committed) equals the oracle: %d windows, %d work periods, %d dead letters, no duplicate",
			len(kgot.Windows), len(kgot.WorkPeriods), kgot.DeadLetters)
	}
	t.Logf("seed %d: %d kills (%d inside a checkpoint), exact; %s", seed, *killsFlag, inCheckpoint, time.Since(began).Round(time.Second))
}

// TestCorruptSnapshotFallsBack damages the newest checkpoint after a kill —
// one partition's snapshot truncated, another's bytes flipped — and checks
// that the restart restores those partitions from the previous checkpoint
// and that MySQL still equals the oracle.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	records := int64(300_000)
	if *recordsFlag > 0 {
		records = min(records, *recordsFlag)
	}
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := startBroker(t, dir)
	replay(t, broker, records)
	want := oracleOf(t, records)
	spec := writeSpec(t, dir, broker, dsn, false)

	r := startRun(t, spec, "")
	for n := 0; n < 3; n++ {
		if !r.waitLine(`msg="checkpoint complete"`, time.Minute) {
			r.kill()
			t.Fatalf("the run ended before 3 checkpoints:\n%s", r.output())
		}
	}
	if !r.kill() {
		t.Fatalf("the run ended before the kill:\n%s", r.output())
	}

	// The newest complete checkpoint: the largest chk-* with a MANIFEST.
	root := filepath.Join(dir, "checkpoints", "iot-work")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	newest := ""
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "MANIFEST")); err == nil && e.Name() > newest {
			newest = e.Name()
		}
	}
	if newest == "" {
		t.Fatal("no complete checkpoint")
	}
	truncated := filepath.Join(root, newest, "p-00003.snap")
	flipped := filepath.Join(root, newest, "p-00007.snap")
	b, err := os.ReadFile(truncated)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(truncated, b[:len(b)*2/3], 0o644)
	b, err = os.ReadFile(flipped)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+4; i++ {
		b[i] ^= 0xa5
	}
	os.WriteFile(flipped, b, 0o644)
	t.Logf("damaged %s: truncated p-00003.snap, flipped 4 bytes of p-00007.snap", newest)

	out := finish(t, spec)
	for _, p := range []string{"partition=3", "partition=7"} {
		if !strings.Contains(out, "falling back") || !containsLine(out, "falling back", p) {
			t.Errorf("no fallback logged for %s:\n%s", p, out)
		}
		if !containsLine(out, `msg="partition restored"`, p) || containsLine(out, `msg="partition restored"`, p+" checkpoint="+newest) {
			t.Errorf("%s was not restored from an older checkpoint than %s:\n%s", p, newest, out)
		}
	}
	if !containsLine(out, `msg="partition restored"`, "partition=0 checkpoint="+newest) {
		t.Errorf("partition 0 did not restore the newest checkpoint %s:\n%s", newest, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := oracle.LoadMySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if d := oracle.Compare(got, want); !d.Equal() {
		t.Fatalf("MySQL differs from the oracle after the fallback:\n%s", d.Format(10))
	}
	t.Logf("exact after falling back: %d readings, %d windows, %d work periods", got.Readings, len(got.Windows), len(got.WorkPeriods))
}

// checkpointedRecords returns the records the newest complete checkpoint
// of the job in dir covers (the sum of its partitions' offsets).
func checkpointedRecords(t *testing.T, dir string) int64 {
	t.Helper()
	ctx := context.Background()
	st, err := checkpoint.OpenStorage(ctx, "file://"+filepath.Join(dir, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := checkpoint.NewCatalog(st, "iot-work").Complete(ctx)
	if err != nil || len(ms) == 0 {
		return 0
	}
	var n int64
	for _, a := range ms[0].Partitions {
		n += a.Offset
	}
	return n
}

func containsLine(out string, all ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, s := range all {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}

func lastLines(out, from string, n int) string {
	i := strings.LastIndex(out, from)
	if i < 0 {
		return out
	}
	ls := strings.SplitN(out[i:], "\n", n+1)
	return strings.Join(ls[:min(n, len(ls))], "\n")
}

// TestSavepointCommands drives savepoints through the CLI: eddy savepoint
// against a running unbounded eddy run, eddy savepoint --stop (stop with a
// second savepoint: the run ends by itself), eddy savepoint list, a restart
// with --from-savepoint of the first that runs to the end (MySQL equals the
// oracle), and eddy savepoint delete.
func TestSavepointCommands(t *testing.T) {
	records := int64(100_000)
	dsn := mariadbtest.DSN(t)
	dir := t.TempDir()
	broker := startBroker(t, dir)
	replay(t, broker, records)
	want := oracleOf(t, records)
	spec := writeSpec(t, dir, broker, dsn, false)
	addr := harness.FreeAddr(t)

	cmd := exec.Command(eddyBin, "run", "--job", spec, "--quiet", "--metrics-addr", addr, "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eddy := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(eddyBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	// Some progress first: the savepoint then holds open state mid-stream.
	deadline := time.Now().Add(time.Minute)
	for received(addr) < records/3 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var sp string
	for sp == "" {
		b, err := exec.Command(eddyBin, "savepoint", "--addr", addr).CombinedOutput()
		if err == nil {
			sp = string(b)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("eddy savepoint: %v\n%s\njob:\n%s", err, b, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s", sp)
	var id int64
	if _, err := fmt.Sscanf(sp, "savepoint %d", &id); err != nil {
		t.Fatalf("cannot read the savepoint id from %q", sp)
	}
	// Stop with a second savepoint: the run ends by itself, as on SIGTERM.
	stopOut := eddy("savepoint", "--addr", addr, "--stop")
	var id2 int64
	if _, err := fmt.Sscanf(stopOut, "savepoint %d", &id2); err != nil || id2 <= id || !strings.Contains(stopOut, "the job stops now") {
		t.Fatalf("eddy savepoint --stop: %q", stopOut)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("eddy run after savepoint --stop: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("eddy run did not stop after savepoint --stop:\n%s", out.String())
	}

	list := eddy("savepoint", "list", "--job", spec)
	if !strings.Contains(list, fmt.Sprintf("sp-%020d", id)) || !strings.Contains(list, "complete") {
		t.Fatalf("eddy savepoint list does not show savepoint %d:\n%s", id, list)
	}
	// Start over from the savepoint and run to the end.
	b, err := exec.Command(eddyBin, "run", "--job", spec, "--bounded", "--quiet", "--metrics-addr", "",
		"--log-level", "info", "--from-savepoint", fmt.Sprint(id)).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy run --from-savepoint: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), fmt.Sprintf(`"starting from savepoint" savepoint=sp-%020d`, id)) || !strings.Contains(string(b), fmt.Sprintf("input          %d", records)) {
		t.Fatalf("run from the savepoint:\n%s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := oracle.LoadMySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if d := oracle.Compare(got, want); !d.Equal() {
		t.Fatalf("MySQL differs from the oracle:\n%s", d.Format(10))
	}
	eddy("savepoint", "delete", fmt.Sprint(id), "--job", spec)
	if list := eddy("savepoint", "list", "--job", spec); strings.Contains(list, fmt.Sprintf("sp-%020d", id)) {
		t.Fatalf("savepoint %d still listed after delete:\n%s", id, list)
	}
	if b, err := exec.Command(eddyBin, "savepoint", "delete", fmt.Sprint(id), "--job", spec).CombinedOutput(); err == nil {
		t.Fatalf("deleting a deleted savepoint succeeded:\n%s", b)
	}
}

// received reads eddy_records_received_total from a job's /metrics; -1 when
// unreachable.
func received(addr string) int64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		// eddy_records_received_total{eddy_job="..."} N
		line := sc.Text()
		if !strings.HasPrefix(line, "eddy_records_received_total{") && !strings.HasPrefix(line, "eddy_records_received_total ") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			return int64(v)
		}
	}
	return -1
}
