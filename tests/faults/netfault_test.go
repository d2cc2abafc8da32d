package faults

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

// netFaults cuts traffic between eddy nodes on 127.0.0.1 with iptables, in
// a chain of its own (EDDY-FAULTS-<pid>) that OUTPUT jumps to: on loopback
// every packet passes OUTPUT, so one chain sees both directions. A rule
// drops packets to one of the test's own ports (--dport) sent by a process
// of one node's group id (-m owner --gid-owner, see harness.Options.GidBase),
// so a cut matches a node's outbound connections whatever their ephemeral
// source port, and nothing else on the machine. The chain is flushed and
// deleted in t.Cleanup, also when the test fails.
type netFaults struct {
	t     *testing.T
	chain string
}

// Port kinds of a node.
const (
	portGossip = "gossip" // TCP and UDP
	portRaft   = "raft"   // TCP
	portHTTP   = "http"   // TCP
)

func newNetFaults(t *testing.T) *netFaults {
	t.Helper()
	n := &netFaults{t: t, chain: fmt.Sprintf("EDDY-FAULTS-%d", os.Getpid())}
	n.removeStale()
	n.ipt("-N", n.chain)
	t.Cleanup(n.remove)
	n.ipt("-I", "OUTPUT", "1", "-d", "127.0.0.1", "-j", n.chain)
	n.probe()
	return n
}

func (n *netFaults) ipt(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		n.t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the jump and the chain; errors are reported, not fatal.
func (n *netFaults) remove() {
	for _, err := range removeChain(n.chain) {
		n.t.Errorf("cleanup: %v", err)
	}
}

func removeChain(chain string) []error {
	var errs []error
	for _, args := range [][]string{{"-D", "OUTPUT", "-d", "127.0.0.1", "-j", chain}, {"-F", chain}, {"-X", chain}} {
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out))
		}
	}
	return errs
}

// removeStale removes the chains of earlier test processes that died
// before their cleanup ran (EDDY-FAULTS-<pid> with no process <pid>).
func (n *netFaults) removeStale() {
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		n.t.Fatalf("iptables -S: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		chain, ok := strings.CutPrefix(l, "-N EDDY-FAULTS-")
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + chain); err == nil {
			continue // its test is still running
		}
		n.t.Logf("removing stale chain EDDY-FAULTS-%s: %v", chain, removeChain("EDDY-FAULTS-"+chain))
	}
}

// probe checks that the owner match works here: a child process of group
// probeGid cannot connect to a listener of this test once a rule rejects
// its group, and a child of the test's own group still can.
func (n *netFaults) probe() {
	t := n.t
	t.Helper()
	const probeGid = 61099
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	n.ipt("-A", n.chain, "-p", "tcp", "--dport", port, "-m", "owner", "--gid-owner", fmt.Sprint(probeGid), "-j", "REJECT", "--reject-with", "tcp-reset")
	dial := func(gid uint32) bool {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), probeEnv+"="+l.Addr().String())
		if gid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: gid, NoSetGroups: true}}
		}
		return cmd.Run() == nil
	}
	blocked, open := !dial(probeGid), dial(0)
	n.ipt("-F", n.chain)
	if !blocked || !open {
		msg := fmt.Sprintf("iptables -m owner --gid-owner does not separate processes here (group %d blocked %v, own group open %v)", probeGid, blocked, open)
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("iptables chain %s: owner match probe ok", n.chain)
}

// ports returns node's ports of kind as (protocol, port) pairs.
func ports(node *harness.Node, kind string) [][2]string {
	addr := map[string]string{portGossip: node.GossipAddr, portRaft: node.RaftAddr, portHTTP: node.HTTPAddr}[kind]
	_, p, _ := net.SplitHostPort(addr)
	if kind == portGossip {
		return [][2]string{{"tcp", p}, {"udp", p}}
	}
	return [][2]string{{"tcp", p}}
}

// cut drops, in both directions, the traffic of the given port kinds
// between a and every node of others.
func (n *netFaults) cut(a *harness.Node, others []*harness.Node, kinds ...string) {
	n.t.Helper()
	n.drop(a, others, 1, true, kinds...)
}

// drop drops, with probability p (1 = every packet; below 1 with
// iptables' statistic match, independently per packet), the traffic of the
// given port kinds sent by a to every node of others, and the traffic they
// send to a when both is set (false: a one-way cut, a hears the others but
// they do not hear it).
func (n *netFaults) drop(a *harness.Node, others []*harness.Node, p float64, both bool, kinds ...string) {
	n.t.Helper()
	if a.Gid == 0 {
		n.t.Fatal("netFaults: nodes need their own group ids (harness.Options.GidBase)")
	}
	var match []string
	if p < 1 {
		match = []string{"-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.3f", p)}
	}
	for _, b := range others {
		if b == a {
			continue
		}
		dirs := [][2]*harness.Node{{a, b}}
		if both {
			dirs = append(dirs, [2]*harness.Node{b, a})
		}
		for _, kind := range kinds {
			for _, dir := range dirs {
				from, to := dir[0], dir[1]
				for _, pp := range ports(to, kind) {
					args := []string{"-A", n.chain, "-p", pp[0], "--dport", pp[1], "-m", "owner", "--gid-owner", fmt.Sprint(from.Gid)}
					n.ipt(append(append(args, match...), "-j", "DROP")...)
				}
			}
		}
	}
}

// heal removes every cut.
func (n *netFaults) heal() { n.ipt("-F", n.chain) }
