package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-iot/eddy/actors/spec"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
)

// chaosSchedule is the parsed --schedule of eddy chaos.
type chaosSchedule struct {
	Seed                 uint64
	Kills, Pauses, Joins int
	// Interval: the wait before each event is seeded in [Interval, 2×Interval).
	Interval time.Duration
	// Pause: a SIGSTOP lasts a seeded [Pause/2, 3/2×Pause).
	Pause time.Duration
	// Down: a killed node is restarted after a seeded [Down/2, 3/2×Down).
	Down time.Duration
}

// parseChaosSchedule parses "seed=N,kills=K,pauses=P,joins=J[,interval=D]
// [,pause=D][,down=D]"; seed 0 or absent = random. Counts >= 0, at most 100
// events; durations > 0 (defaults interval 3s, pause 6s, down 1s).
func parseChaosSchedule(s string) (chaosSchedule, error) {
	sc := chaosSchedule{Interval: 3 * time.Second, Pause: 6 * time.Second, Down: time.Second}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return sc, fmt.Errorf("--schedule: %q is not key=value", kv)
		}
		var err error
		switch k {
		case "seed":
			sc.Seed, err = strconv.ParseUint(v, 10, 64)
		case "kills", "pauses", "joins":
			var n int
			n, err = strconv.Atoi(v)
			if err == nil && n < 0 {
				err = errors.New("must be >= 0")
			}
			switch k {
			case "kills":
				sc.Kills = n
			case "pauses":
				sc.Pauses = n
			default:
				sc.Joins = n
			}
		case "interval", "pause", "down":
			var d time.Duration
			d, err = time.ParseDuration(v)
			if err == nil && d <= 0 {
				err = errors.New("must be > 0")
			}
			switch k {
			case "interval":
				sc.Interval = d
			case "pause":
				sc.Pause = d
			default:
				sc.Down = d
			}
		default:
			return sc, fmt.Errorf("--schedule: unknown key %q (want seed, kills, pauses, joins, interval, pause, down)", k)
		}
		if err != nil {
			return sc, fmt.Errorf("--schedule: %s=%s: %v", k, v, err)
		}
	}
	if n := sc.Kills + sc.Pauses + sc.Joins; n == 0 || n > 100 {
		return sc, fmt.Errorf("--schedule: %d events; want 1 to 100 (kills + pauses + joins)", n)
	}
	if sc.Seed == 0 {
		sc.Seed = rand.Uint64()
	}
	return sc, nil
}

// events returns the seeded order of the schedule's events: one of the
// kills (when there are two or more) is of the Raft leader.
func (sc chaosSchedule) events(rng *rand.Rand) []string {
	var ev []string
	for i := 0; i < sc.Kills; i++ {
		if i == 1 {
			ev = append(ev, "kill-leader")
		} else {
			ev = append(ev, "kill")
		}
	}
	for i := 0; i < sc.Pauses; i++ {
		ev = append(ev, "pause")
	}
	for i := 0; i < sc.Joins; i++ {
		ev = append(ev, "join")
	}
	rng.Shuffle(len(ev), func(i, j int) { ev[i], ev[j] = ev[j], ev[i] })
	return ev
}

// jitter returns a seeded duration in [d/2, 3d/2).
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return d/2 + time.Duration(rng.Int64N(int64(d)))
}

// chaosTarget is one node as eddy chaos acts on it: a local process or a
// Docker container.
type chaosTarget interface {
	kill() error
	restart() error
	stop() error // SIGSTOP / docker pause
	cont() error // SIGCONT / docker unpause
	String() string
}

// processTarget is a node process on this machine, found by the pid its
// /healthz reports. It is restarted with the command line, working
// directory and environment it had (read from /proc before the kill),
// detached, its output appended to log.
type processTarget struct {
	pid  int
	exe  string
	argv []string
	env  []string
	dir  string
	log  string
}

func newProcessTarget(pid int, logPath string) (*processTarget, error) {
	proc := fmt.Sprintf("/proc/%d", pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w (eddy chaos signals processes on this machine; for containers give --docker)", pid, err)
	}
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	dir, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	exe, err := os.Readlink(proc + "/exe")
	if err != nil || strings.HasSuffix(exe, " (deleted)") {
		exe = argv[0]
		if !filepath.IsAbs(exe) && strings.Contains(exe, "/") {
			exe = filepath.Join(dir, exe)
		}
	}
	var env []string
	for _, e := range strings.Split(string(environ), "\x00") {
		if e != "" {
			env = append(env, e)
		}
	}
	return &processTarget{pid: pid, exe: exe, argv: argv, env: env, dir: dir, log: logPath}, nil
}

func (p *processTarget) String() string { return fmt.Sprintf("pid %d", p.pid) }

func (p *processTarget) signal(sig syscall.Signal) error { return syscall.Kill(p.pid, sig) }

func (p *processTarget) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL %s: %w", p, err)
	}
	// Gone, or a zombie its parent has not reaped yet: either way its
	// ports are closed.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
		if err != nil {
			return nil
		}
		// The state follows the ")" that ends the comm field.
		stat := string(b)
		if f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return nil
		}
	}
	return fmt.Errorf("%s still runs 10s after SIGKILL", p)
}

func (p *processTarget) restart() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(p.exe, p.argv[1:]...)
	cmd.Args[0] = p.argv[0]
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = p.dir, p.env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart %s: %w", strings.Join(p.argv, " "), err)
	}
	p.pid = cmd.Process.Pid
	go cmd.Wait() //nolint:errcheck // reaped only; the node outlives eddy chaos
	return nil
}

func (p *processTarget) stop() error { return p.signal(syscall.SIGSTOP) }
func (p *processTarget) cont() error { return p.signal(syscall.SIGCONT) }

// dockerTarget is a node in a Docker container, acted on with the docker
// CLI: kill -s KILL, start, pause, unpause.
type dockerTarget struct{ name string }

func (d dockerTarget) String() string { return "container " + d.name }

func (d dockerTarget) docker(args ...string) error {
	out, err := exec.Command("docker", append(args, d.name)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s %s: %v: %s", strings.Join(args, " "), d.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d dockerTarget) kill() error    { return d.docker("kill", "--signal", "KILL") }
func (d dockerTarget) restart() error { return d.docker("start") }
func (d dockerTarget) stop() error    { return d.docker("pause") }
func (d dockerTarget) cont() error    { return d.docker("unpause") }

// chaosNode is one node of the cluster under test.
type chaosNode struct {
	id, url string
	target  chaosTarget
}

// chaosRun is what the checks of a chaos run share.
type chaosRun struct {
	cl     *client.Client
	hc     *http.Client // to each node, with --ca
	scheme string       // of the --cluster URLs: http or https
	job    string
}

type chaosFlags struct {
	cluster, docker, schedule, join, logDir string
	settle                                  time.Duration
	verify                                  verifyFlags
	ctl                                     ctlOptions
}

func newChaosCmd() *cobra.Command {
	var f chaosFlags
	cmd := &cobra.Command{
		Use:   "chaos --cluster URLS --schedule seed=N,kills=K,pauses=P,joins=J --job FILE",
		Short: "Run a seeded fault schedule against your test cluster, then verify the job's sink",
		Long: `Chaos injects faults from outside into a test cluster you started — node
processes on this machine, or the Docker containers of a compose deployment —
while a bounded job runs on it, and ends with eddy verify of the job's sink.

The schedule is seeded: the same seed gives the same order of events, the same
victims (chosen among the nodes in --cluster order) and the same waits. Events:

  kill    SIGKILL a node (one of the kills, with two or more, is the Raft
          leader), restart it after --schedule down=D with the command line,
          directory and environment it had (containers: docker start)
  pause   SIGSTOP a node for pause=D (docker pause), then SIGCONT
  join    run the --join command once more ({n} becomes 1, 2, ...)

After each event chaos waits until the node answers again and every partition
of the job runs (or finished) before the next. At the end it checks the Raft
lease history (one holder per partition at every Raft index) and runs the
verification (the verify flags below are eddy verify's). Exit status 0 only
when the lease history holds and the sink equals the oracle.

Local nodes are found by the pid in GET /healthz: run chaos on the machine of
the processes. Restarted processes are detached; their output goes to
--log-dir/NODE.log. With --token-file/EDDY_TOKEN and --ca as for eddy ctl.`,
		Example: `  # three local nodes, a bounded job replayed from the embedded data
  eddy chaos --cluster http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
      --schedule seed=42,kills=3,pauses=1,joins=1 \
      --join 'eddy node --id j{n} --data-dir /tmp/j{n} --http-addr 127.0.0.1:809{n} --raft-addr 127.0.0.1:839{n} --gossip-addr 127.0.0.1:849{n} --actor-addr 127.0.0.1:859{n} --join 127.0.0.1:8401' \
      --job iot-work.yaml --wait 5m

  # the compose cluster of deploy/
  eddy chaos --cluster http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
      --docker eddy-node1-1,eddy-node2-1,eddy-node3-1 --schedule seed=7,kills=2,pauses=1 \
      --job deploy/jobs/iot-work-compose.yaml --sink 'mysql:eddy:eddy@tcp(127.0.0.1:3306)/eddy'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runChaos(ctx, &f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster, "cluster", "", "the nodes' HTTP API URLs, comma-separated; required")
	fl.StringVar(&f.docker, "docker", "", "the nodes' Docker container names, in --cluster order (default: local processes)")
	fl.StringVar(&f.schedule, "schedule", "", "seed=N,kills=K,pauses=P,joins=J[,interval=3s][,pause=6s][,down=1s]; seed 0 or absent = random (printed)")
	fl.StringVar(&f.join, "join", "", "shell command that starts one more node, {n} = 1, 2, ... (required with joins > 0)")
	fl.StringVar(&f.logDir, "log-dir", "eddy-chaos-logs", "directory for the output of restarted and joined nodes")
	fl.DurationVar(&f.settle, "settle", 90*time.Second, "how long to wait after an event for the node to answer and every partition to run; > 0")
	fl.StringVar(&f.ctl.tokenFile, "token-file", "", "file with the API bearer token (or env EDDY_TOKEN)")
	fl.StringVar(&f.ctl.caFile, "ca", "", "PEM file of the CA of the nodes' certificates, for https:// URLs")
	f.verify.register(fl)
	f.verify.wait = 3 * time.Minute
	fl.Lookup("wait").DefValue = "3m0s"
	return cmd
}

func runChaos(ctx context.Context, f *chaosFlags, out io.Writer) error {
	if f.cluster == "" || f.verify.job == "" {
		return errors.New("chaos: --cluster and --job are required")
	}
	sc, err := parseChaosSchedule(f.schedule)
	if err != nil {
		return err
	}
	if sc.Joins > 0 && f.join == "" {
		return fmt.Errorf("chaos: the schedule has %d joins: give --join with the command that starts a node", sc.Joins)
	}
	if f.settle <= 0 {
		return errors.New("chaos: --settle must be > 0")
	}
	specYAML, err := os.ReadFile(f.verify.job)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	// Run: the spec is verified as eddy verify reads it (both modes).
	js, _, err := spec.Load(specYAML, spec.Options{Mode: spec.Run})
	if err != nil {
		return err
	}
	urls := strings.Split(f.cluster, ",")
	f.ctl.addr, f.ctl.output, f.ctl.timeout = f.cluster, "table", f.settle
	cl, err := f.ctl.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	tc, err := f.ctl.tlsConfig()
	if err != nil {
		return err
	}
	scheme, _, _ := strings.Cut(urls[0], "://")
	r := &chaosRun{cl: cl, job: js.Name, scheme: scheme, hc: &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}}
	if err := os.MkdirAll(f.logDir, 0o755); err != nil {
		return fmt.Errorf("chaos: --log-dir: %w", err)
	}
	var containers []string
	if f.docker != "" {
		if containers = strings.Split(f.docker, ","); len(containers) != len(urls) {
			return fmt.Errorf("chaos: --docker names %d containers for %d --cluster URLs", len(containers), len(urls))
		}
	}
	var nodes []*chaosNode
	for i, u := range urls {
		h, err := r.health(ctx, u)
		if err != nil {
			return fmt.Errorf("chaos: %s: %w", u, err)
		}
		n := &chaosNode{id: h.ID, url: u}
		if containers != nil {
			n.target = dockerTarget{containers[i]}
		} else if h.PID <= 1 {
			return fmt.Errorf("chaos: %s reports pid %d (a container?): give --docker", u, h.PID)
		} else if n.target, err = newProcessTarget(h.PID, filepath.Join(f.logDir, h.ID+".log")); err != nil {
			return fmt.Errorf("chaos: %s (%s): %w", u, h.ID, err)
		}
		nodes = append(nodes, n)
	}

	rng := rand.New(rand.NewPCG(sc.Seed, 0x6368616f73))
	events := sc.events(rng)
	fmt.Fprintf(out, "chaos: seed %d, %d nodes, job %s, schedule %v (replay with --schedule seed=%d,kills=%d,pauses=%d,joins=%d,interval=%s,pause=%s,down=%s)\n",
		sc.Seed, len(nodes), js.Name, events, sc.Seed, sc.Kills, sc.Pauses, sc.Joins, sc.Interval, sc.Pause, sc.Down)
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "%7.1fs  %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	if err := r.settled(ctx, f.settle); err != nil {
		return fmt.Errorf("chaos: before the first event: %w", err)
	}
	joins := 0
	for i, ev := range events {
		if err := sleepCtx(ctx, sc.Interval+time.Duration(rng.Int64N(int64(sc.Interval)))); err != nil {
			return err
		}
		at := fmt.Sprintf("event %d/%d", i+1, len(events))
		switch ev {
		case "kill", "kill-leader":
			victim := nodes[rng.IntN(len(nodes))]
			if ev == "kill-leader" {
				if victim, err = leaderOf(ctx, cl, nodes); err != nil {
					return fmt.Errorf("chaos: %s: %w", at, err)
				}
			}
			down := jitter(rng, sc.Down)
			if err := victim.target.kill(); err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			logf("%s: SIGKILL %s (%s%s), restart in %s", at, victim.id, victim.target, map[bool]string{true: ", the Raft leader"}[ev == "kill-leader"], down.Round(time.Millisecond))
			if err := sleepCtx(ctx, down); err != nil {
				return err
			}
			if err := victim.target.restart(); err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			if err := r.waitHealthy(ctx, victim.url, f.settle); err != nil {
				return fmt.Errorf("chaos: %s: %s after its restart: %w", at, victim.id, err)
			}
			logf("%s: %s restarted (%s), answering", at, victim.id, victim.target)
		case "pause":
			victim := nodes[rng.IntN(len(nodes))]
			d := jitter(rng, sc.Pause)
			if err := victim.target.stop(); err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			logf("%s: SIGSTOP %s (%s) for %s", at, victim.id, victim.target, d.Round(time.Millisecond))
			err := sleepCtx(ctx, d)
			if cerr := victim.target.cont(); cerr != nil {
				return fmt.Errorf("chaos: %s: %w", at, cerr)
			}
			if err != nil {
				return err
			}
			logf("%s: SIGCONT %s", at, victim.id)
		case "join":
			joins++
			before, err := cl.Members(ctx)
			if err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			if err := startJoin(f.join, joins, f.logDir); err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			logf("%s: join %d started: %s", at, joins, strings.ReplaceAll(f.join, "{n}", strconv.Itoa(joins)))
			if err := waitMembers(ctx, cl, alive(before)+1, f.settle); err != nil {
				return fmt.Errorf("chaos: %s: %w", at, err)
			}
			logf("%s: %d members alive", at, alive(before)+1)
		}
		t0 := time.Now()
		if err := r.settled(ctx, f.settle); err != nil {
			return fmt.Errorf("chaos: %s: %w", at, err)
		}
		logf("%s: every partition of %s runs again after %s", at, js.Name, time.Since(t0).Round(time.Millisecond))
	}

	hist, err := cl.LeaseHistory(ctx, js.Name, -1)
	if err != nil {
		return fmt.Errorf("chaos: lease history: %w", err)
	}
	kinds, herr := control.CheckLeaseHistory(hist)
	if herr != nil {
		fmt.Fprintf(out, "lease history: VIOLATED:\n%v\n", herr)
	} else {
		fmt.Fprintf(out, "lease history: %d events %v, one holder per partition at every Raft index\n", len(hist), kinds)
	}
	fmt.Fprintf(out, "verify (waiting up to %s for the job to finish):\n", f.verify.wait)
	verr := runVerify(ctx, &f.verify, out)
	fmt.Fprintf(out, "chaos: seed %d done in %s\n", sc.Seed, time.Since(began).Round(time.Second))
	if herr != nil {
		return errors.Join(errors.New("chaos: the lease history has two holders of a partition at once"), verr)
	}
	return verr
}

func (r *chaosRun) health(ctx context.Context, url string) (control.Health, error) {
	var h control.Health
	return h, r.getJSON(ctx, strings.TrimSuffix(url, "/")+"/healthz", &h)
}

func (r *chaosRun) waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if _, err = r.health(ctx, url); err == nil {
			return nil
		}
		if serr := sleepCtx(ctx, 200*time.Millisecond); serr != nil {
			return serr
		}
	}
	return fmt.Errorf("not answering after %s: %w", timeout, err)
}

// settled waits until every partition of job that has not finished runs
// on exactly one node, by the nodes' own reports (GET /v1/local/partitions
// of every alive member), not by the leases alone.
func (r *chaosRun) settled(ctx context.Context, timeout time.Duration) error {
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if last = r.unsettled(ctx); last == "" {
			return nil
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("job %s not running everywhere after %s: %s", r.job, timeout, last)
}

// unsettled returns why the job is not settled, "" when it is.
func (r *chaosRun) unsettled(ctx context.Context) string {
	ps, err := r.cl.Partitions(ctx, r.job)
	if err != nil {
		return err.Error()
	}
	if len(ps) == 0 {
		return "no partitions yet (is the job submitted?)"
	}
	ms, err := r.cl.Members(ctx)
	if err != nil {
		return err.Error()
	}
	running := map[int32][]string{}
	for _, m := range ms {
		if m.Status != "alive" {
			continue
		}
		var local []control.PartitionStatus
		if err := r.getJSON(ctx, r.scheme+"://"+m.HTTPAddr+"/v1/local/partitions", &local); err != nil {
			return fmt.Sprintf("%s: %v", m.ID, err)
		}
		for _, l := range local {
			if l.Job == r.job && l.State == "running" {
				running[l.Partition] = append(running[l.Partition], l.Node)
			}
		}
	}
	for _, p := range ps {
		if p.State != "finished" && len(running[p.Partition]) != 1 {
			return fmt.Sprintf("partition %d runs on %v (lease holder %q, state %s)", p.Partition, running[p.Partition], p.Owner, p.State)
		}
	}
	return ""
}

func (r *chaosRun) getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func leaderOf(ctx context.Context, cl *client.Client, nodes []*chaosNode) (*chaosNode, error) {
	st, err := cl.Raft(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.id == st.LeaderID {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the Raft leader %q is not among the --cluster nodes", st.LeaderID)
}

func alive(ms []control.MemberInfo) int {
	n := 0
	for _, m := range ms {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

func waitMembers(ctx context.Context, cl *client.Client, want int, timeout time.Duration) error {
	got := 0
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if ms, err := cl.Members(ctx); err == nil {
			if got = alive(ms); got >= want {
				return nil
			}
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%d members alive after %s, want %d", got, timeout, want)
}

// startJoin runs the --join command for join n, detached, its output in
// logDir/join-N.log.
func startJoin(tmpl string, n int, logDir string) error {
	f, err := os.OpenFile(filepath.Join(logDir, fmt.Sprintf("join-%d.log", n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(tmpl, "{n}", strconv.Itoa(n)))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--join: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped only
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
