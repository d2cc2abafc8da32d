// Package harness runs eddy control-plane clusters as real processes on
// 127.0.0.1 for multi-process tests and benchmarks: it builds the eddy
// binary, allocates free ports, gives every node its own data dir and log
// file, and can SIGKILL, SIGTERM and restart nodes.
//
//	bin, _ := harness.Build(dir)
//	c, _ := harness.New(harness.Options{Binary: bin, Dir: dir, Nodes: 3, BootstrapExpect: 3})
//	defer c.Close()
//	_ = c.StartAll()
//	leader, _ := c.WaitLeader(ctx)
//	leader.Kill()          // SIGKILL
//	leader.Start()         // same id, addresses and data dir
package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
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

	"github.com/eddy-iot/eddy/tests/freeport"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
)

// Build compiles ./cmd/eddy of the enclosing module into dir/eddy and
// returns its path, with -tags eddy_failpoints (the fault-injection hooks,
// e.g. actors.TestCheckpointDelayEnv). Must run with a working directory
// inside the module.
// With EDDY_RACE=1 in the environment the binary is built with -race (node
// logs then contain any race report).
func Build(dir string) (string, error) {
	out := filepath.Join(dir, "eddy")
	args := []string{"build", "-tags", "eddy_failpoints", "-o", out}
	if os.Getenv("EDDY_RACE") != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/eddy-iot/eddy/cmd/eddy")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/eddy: %v\n%s", err, b)
	}
	return out, nil
}

// UseDefaultToken sets $EDDY_TOKEN of the test process to DefaultToken
// (and clears $EDDY_API_TOKEN), so that the eddy commands a test runs
// itself (eddy ctl, eddy run, eddy savepoint, a node started without the
// harness) share the token of the harness clusters.
func UseDefaultToken() {
	os.Setenv("EDDY_TOKEN", DefaultToken)
	os.Unsetenv("EDDY_API_TOKEN")
}

// Main is the TestMain of a process-level test package: it parses the
// flags, calls UseDefaultToken, builds the eddy binary into a temporary
// directory (Build), stores its path in *bin, runs the tests, removes the
// directory and exits with the tests' code.
func Main(m *testing.M, bin *string) {
	flag.Parse()
	UseDefaultToken()
	dir, err := os.MkdirTemp("", "eddy-test-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building eddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// BuildRetry is Build retried for up to total (other packages of the binary
// may be briefly broken while people edit them).
func BuildRetry(dir string, total time.Duration, logf func(string, ...any)) (string, error) {
	deadline := time.Now().Add(total)
	for {
		bin, err := Build(dir)
		if err == nil || time.Now().After(deadline) {
			return bin, err
		}
		logf("build failed, retrying in 20s: %v", err)
		time.Sleep(20 * time.Second)
	}
}

// Eventually polls fn every 50 ms until it returns nil, and fails t with
// fn's last error when timeout passes first (nats-server's checkFor).
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreeAddr returns a 127.0.0.1:port address free for TCP and UDP, or fails t.
func FreeAddr(t testing.TB) string {
	t.Helper()
	a, err := FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return a[0]
}

// FreeAddrs returns n distinct 127.0.0.1:port addresses that were free for
// both TCP and UDP (freeport.Addrs: below the ephemeral port range).
func FreeAddrs(n int) ([]string, error) { return freeport.Addrs(n) }

// Options configure a Cluster.
type Options struct {
	Binary string // path of the eddy binary (see Build)
	Dir    string // base directory: <Dir>/<id>/data and <Dir>/<id>.log
	// Nodes started by StartAll, with --bootstrap-expect BootstrapExpect.
	Nodes           int
	BootstrapExpect int
	// Args are extra flags for every node, e.g. --raft-snapshot-threshold.
	Args []string
	// Token is the API token every node gets through $EDDY_TOKEN (API
	// writes need one) and that Node.Client and Cluster.Client send;
	// "" = DefaultToken. NoToken starts the nodes without one (every
	// write is refused).
	Token   string
	NoToken bool
	// Logf receives harness events (default: discard).
	Logf func(format string, args ...any)
	// GidBase, when > 0, runs node i (n1, n2, ...; joined nodes too) with
	// primary group GidBase+i (uid stays 0; needs root), so that iptables
	// can match its outbound packets with `-m owner --gid-owner`. 0 =
	// the test's own group.
	GidBase uint32
}

// DefaultToken is the API token of a harness cluster unless
// Options.Token says otherwise.
const DefaultToken = "harness-api-token-5c1f"

// Cluster is a set of eddy node processes.
type Cluster struct {
	opts  Options
	mu    sync.Mutex
	Nodes []*Node
}

// Node is one eddy node process (possibly stopped).
type Node struct {
	ID, HTTPAddr, RaftAddr, GossipAddr string
	// ActorAddr is the node's --actor-addr (virtual actors are on by
	// default in eddy node; the harness gives each node its own free port).
	ActorAddr        string
	DataDir, LogPath string
	Args             []string
	// Token is the API token the process gets as $EDDY_TOKEN and Client
	// sends ("" = none).
	Token string
	// Gid is the primary group the process runs with (0 = inherited); see
	// Options.GidBase.
	Gid uint32

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf func(string, ...any)
}

// Start is Launch followed by a wait for a Raft leader (at most a minute,
// over plain HTTP); t fails on any error.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := Launch(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch prepares and starts opts.Nodes nodes (New, StartAll) without
// waiting for a leader (for clusters the harness cannot poll, e.g. over
// HTTPS); t fails on any error. The nodes are stopped in t.Cleanup, which
// prints their log tails when t failed.
func Launch(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("---- %s log tail:\n%s", n.ID, n.LogTail(30))
			}
		}
		c.Close()
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

// New prepares opts.Nodes nodes (n1, n2, ...), each joining all the others.
// Nothing is started.
func New(opts Options) (*Cluster, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.NoToken {
		opts.Token = ""
	}
	c := &Cluster{opts: opts}
	addrs, err := FreeAddrs(4 * opts.Nodes)
	if err != nil {
		return nil, err
	}
	var gossip []string
	for i := 0; i < opts.Nodes; i++ {
		gossip = append(gossip, addrs[4*i+2])
	}
	for i := 0; i < opts.Nodes; i++ {
		var join []string
		for j, g := range gossip {
			if j != i {
				join = append(join, g)
			}
		}
		c.Nodes = append(c.Nodes, c.newNode(i+1, addrs[4*i:4*i+4], opts.BootstrapExpect, join))
	}
	return c, nil
}

func (c *Cluster) newNode(i int, addrs []string, expect int, join []string) *Node {
	id := fmt.Sprintf("n%d", i)
	n := &Node{
		ID: id, HTTPAddr: addrs[0], RaftAddr: addrs[1], GossipAddr: addrs[2], ActorAddr: addrs[3],
		DataDir: filepath.Join(c.opts.Dir, id, "data"),
		LogPath: filepath.Join(c.opts.Dir, id+".log"),
		Token:   c.opts.Token,
		logf:    c.opts.Logf,
	}
	if c.opts.GidBase > 0 {
		n.Gid = c.opts.GidBase + uint32(i)
	}
	n.Args = []string{"node", "--id", id, "--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr, "--raft-addr", n.RaftAddr, "--gossip-addr", n.GossipAddr,
		"--actor-addr", n.ActorAddr, "--bootstrap-expect", strconv.Itoa(expect), "--log-level", "info"}
	if len(join) > 0 {
		n.Args = append(n.Args, "--join", strings.Join(join, ","))
	}
	n.Args = append(n.Args, c.opts.Args...)
	return n
}

// AddNode prepares a new node that joins the cluster without
// --bootstrap-expect (it becomes a non-voter). Not started.
func (c *Cluster) AddNode(extraArgs ...string) (*Node, error) {
	addrs, err := FreeAddrs(4)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var join []string
	for _, n := range c.Nodes {
		join = append(join, n.GossipAddr)
	}
	n := c.newNode(len(c.Nodes)+1, addrs, 0, join)
	n.Args = append(n.Args, extraArgs...)
	c.Nodes = append(c.Nodes, n)
	return n, nil
}

// StartAll starts every node that is not running.
func (c *Cluster) StartAll() error {
	for _, n := range c.Nodes {
		if n.Running() {
			continue
		}
		if err := n.Start(c.opts.Binary); err != nil {
			return err
		}
	}
	return nil
}

// Start launches the node process (same id, addresses and data dir as
// before). Output is appended to LogPath.
func (n *Node) Start(binary string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.done:
		default:
			return fmt.Errorf("harness: %s already running", n.ID)
		}
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== harness: start %s at %s\n", n.ID, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary, n.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "EDDY_TOKEN="+n.Token, "EDDY_API_TOKEN=")
	if n.Gid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(os.Getuid()), Gid: n.Gid, NoSetGroups: true}}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("harness: start %s: %w", n.ID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.logf("started %s (pid %d)", n.ID, cmd.Process.Pid)
	return nil
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id of the running process, 0 when not running.
func (n *Node) Pid() int {
	if !n.Running() {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Signal sends sig (e.g. SIGSTOP, SIGCONT) without waiting; it does
// nothing when the process is not running.
func (n *Node) Signal(sig syscall.Signal) error {
	if !n.Running() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() error { return n.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to timeout, then SIGKILLs.
func (n *Node) Stop(timeout time.Duration) error { return n.signal(syscall.SIGTERM, timeout) }

func (n *Node) signal(sig syscall.Signal, timeout time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	if timeout > 0 {
		select {
		case <-done:
			n.logf("stopped %s (%v)", n.ID, sig)
			return nil
		case <-time.After(timeout):
			_ = cmd.Process.Kill()
		}
	}
	<-done
	n.logf("stopped %s (%v)", n.ID, sig)
	return nil
}

// Wait waits for the process to exit on its own (e.g. after leave).
func (n *Node) Wait(timeout time.Duration) error {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("harness: %s still running after %v", n.ID, timeout)
	}
}

// URL is the node's API base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Client returns a client of this node only.
func (n *Node) Client(retry time.Duration) *client.Client {
	c, _ := client.New(client.Config{Addrs: []string{n.URL()}, RetryTimeout: retry, Token: n.Token})
	return c
}

// URLs returns the API URLs of all nodes, starting with the i-th.
func (c *Cluster) URLs(start int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i := range c.Nodes {
		out = append(out, c.Nodes[(start+i)%len(c.Nodes)].URL())
	}
	return out
}

// Client returns a client of all nodes, starting with the i-th.
func (c *Cluster) Client(start int, retry time.Duration) *client.Client {
	cl, _ := client.New(client.Config{Addrs: c.URLs(start), RetryTimeout: retry, Token: c.opts.Token})
	return cl
}

var statusClient = &http.Client{Timeout: time.Second}

// Status reads GET /v1/cluster/raft of the node (one attempt).
func (n *Node) Status() (control.RaftStatus, error) {
	var st control.RaftStatus
	resp, err := statusClient.Get(n.URL() + "/v1/cluster/raft")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Leader returns the running node that reports itself leader and whose
// leadership a majority of the running nodes agree on, if any.
func (c *Cluster) Leader() (*Node, control.RaftStatus, error) {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if !n.Running() {
			continue
		}
		st, err := n.Status()
		if err == nil && st.State == "leader" {
			return n, st, nil
		}
	}
	return nil, control.RaftStatus{}, errors.New("no leader")
}

// WaitLeader polls until a leader is found or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*Node, control.RaftStatus, error) {
	for {
		n, st, err := c.Leader()
		if err == nil {
			return n, st, nil
		}
		select {
		case <-ctx.Done():
			return nil, st, fmt.Errorf("harness: no leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Node returns the node with the given id.
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Token returns the cluster's API token ("" with Options.NoToken).
func (c *Cluster) Token() string { return c.opts.Token }

// Binary returns the eddy binary path.
func (c *Cluster) Binary() string { return c.opts.Binary }

// Close SIGKILLs every node.
func (c *Cluster) Close() {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		_ = n.Kill()
	}
}
