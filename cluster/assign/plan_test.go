package assign

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/eddy-iot/eddy/control"
)

// TestPlanner replays the scripts in testdata: membership and
// lease-table changes in, the planner's operations out. The script plays
// the Assigner's loop: it applies commands to a real FSM, hands the
// planner its input, and performs the planned operations against the same
// FSM (done), the lease clock included. Regenerate the expectations with
// go test ./control -run TestPlanner -rewrite, then read the diff.
//
// Commands (times t=, contact=, since= are offsets from a fixed origin):
//
//	init self=a [parallelism=N]    a new planner and FSM (default config)
//	job name=j partitions=N        JobPut
//	apply                          FSM commands, one a line:
//	    acquire j/P owner=N [prev=E] [takeover renew=I]
//	    release j/P owner=N epoch=E
//	    renew N                    LeaseRenew of N
//	    delete-job j
//	members                        the gossip view, one member a line:
//	    ID alive|failed|left [assignable] [leaving] [since=D]
//	plan t=D [contact=D|none] [unjoined]
//	                               one planner step (contact defaults to t:
//	                               this node is in contact with the majority)
//	done t=D                       perform every planned operation in flight;
//	                               input lines "j/P start-fails|handoff-fails"
//	                               inject a Runner failure
//	renew-self t=D                 this node's LeaseRenew, confirmed at t
//	drain                          Shutdown: hand everything over
//	state t=D                      the planner's slots and lease clock
func TestPlanner(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var h *planHarness
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "init" && h == nil {
				d.Fatalf(t, "init first")
			}
			switch d.Cmd {
			case "init":
				var self string
				d.ScanArgs(t, "self", &self)
				cfg := DefaultConfig()
				d.MaybeScanArgs(t, "parallelism", &cfg.Parallelism)
				h = &planHarness{t: t, self: self, fsm: control.NewFSM(nil), pending: map[pkey]op{}}
				h.planner = newPlanner(self, cfg.planConfig(), newLeaseClock(cfg.LeaseTTL, cfg.LeaseSafety))
				return ""
			case "job":
				var name string
				var n int
				d.ScanArgs(t, "name", &name)
				d.ScanArgs(t, "partitions", &n)
				return h.apply(control.JobPut{Name: name, Spec: "{}", Partitions: int32(n)})
			case "apply":
				var out []string
				for _, line := range lines(d.Input) {
					out = append(out, h.apply(parseCommand(t, d, line)))
				}
				return strings.Join(out, "\n")
			case "members":
				h.members = nil
				for _, line := range lines(d.Input) {
					h.members = append(h.members, parseMember(t, d, line))
				}
				return ""
			case "plan":
				return h.plan(d)
			case "done":
				return h.done(d)
			case "renew-self":
				now := at(t, d, "t")
				res, err := h.applyResult(control.LeaseRenew{Owner: h.self, TTLMs: 3000, SafetyMs: 500})
				if err != nil {
					return "error: " + err.Error()
				}
				h.planner.clock.renewed(res.Leases, now)
				var held []string
				for _, l := range res.Leases {
					held = append(held, fmt.Sprintf("%s/%d e%d", l.Job, l.Partition, l.Epoch))
				}
				return fmt.Sprintf("index %d: renewed, holds [%s]", h.index, strings.Join(held, " "))
			case "drain":
				h.planner.drain()
				return ""
			case "state":
				return h.state(at(t, d, "t"))
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

var planOrigin = time.Unix(1_700_000_000, 0)

type planHarness struct {
	t       *testing.T
	self    string
	fsm     *control.FSM
	index   uint64
	planner *planner
	members []control.Member
	pending map[pkey]op // planned operations not done yet
	cancel  map[pkey]bool
}

func (h *planHarness) applyResult(cmd control.Command) (control.Result, error) {
	h.index++
	return h.fsm.ApplyCommand(h.index, time.Time{}, cmd)
}

func (h *planHarness) apply(cmd control.Command) string {
	res, err := h.applyResult(cmd)
	if err != nil {
		return fmt.Sprintf("index %d: %T: %v", h.index, cmd, err)
	}
	if res.Lease != nil {
		return fmt.Sprintf("index %d: %s", h.index, fmtLease(*res.Lease))
	}
	return fmt.Sprintf("index %d: ok", h.index)
}

func fmtLease(l control.Lease) string {
	s := fmt.Sprintf("lease %s/%d owner=%s epoch=%d", l.Job, l.Partition, l.Owner, l.Epoch)
	if l.Released {
		s += " released"
	}
	return s
}

func (h *planHarness) plan(d *datadriven.TestData) string {
	t := h.t
	now := at(t, d, "t")
	contact := now
	if a, ok := d.Arg("contact"); ok {
		if a.SingleVal(t) == "none" {
			contact = time.Time{}
		} else {
			contact = at(t, d, "contact")
		}
	}
	view := h.fsm.View()
	counts := map[string]int32{}
	for _, j := range view.Jobs() {
		counts[j.Name] = j.Partitions
	}
	p := h.planner.plan(planInput{Now: now, View: view, Members: h.members, Joined: !d.HasArg("unjoined"),
		Contact: contact, Partitions: counts})
	var out []string
	if p.fence {
		out = append(out, fmt.Sprintf("fenced (busy=%v)", p.fenceBusy))
	}
	if p.unfence {
		out = append(out, "unfenced")
	}
	out = append(out, fmt.Sprintf("assignable=%v", p.assignable))
	for _, o := range p.ops {
		out = append(out, fmtOp(o))
		if o.kind == opCancel {
			if h.cancel == nil {
				h.cancel = map[pkey]bool{}
			}
			h.cancel[o.key] = true
			continue
		}
		if _, dup := h.pending[o.key]; dup {
			t.Fatalf("%s: a second operation planned while one is in flight", fmtOp(o))
		}
		h.pending[o.key] = o
	}
	if p.drained {
		out = append(out, "drained")
	}
	return strings.Join(out, "\n")
}

func fmtOp(o op) string {
	k := fmt.Sprintf("%s/%d", o.key.job, o.key.p)
	switch o.kind {
	case opStart:
		s := fmt.Sprintf("start %s prev=%d", k, o.acquire.PrevEpoch)
		if o.acquire.Takeover {
			s += fmt.Sprintf(" takeover holder-renew-index=%d dead-since=%s", o.acquire.HolderRenewIndex, o.deadSince.Sub(planOrigin))
		}
		return s
	case opHandoff, opRelease:
		return fmt.Sprintf("%s %s epoch=%d", o.kind, k, o.lease.Epoch)
	case opStop:
		return fmt.Sprintf("stop %s epoch=%d (%s)", k, o.lease.Epoch, o.reason)
	}
	return fmt.Sprintf("%s %s", o.kind, k)
}

// done performs the operations in flight as the Assigner's goroutines
// would, in key order, and feeds their results to the planner.
func (h *planHarness) done(d *datadriven.TestData) string {
	t := h.t
	now := at(t, d, "t")
	fail := map[pkey]string{}
	for _, line := range lines(d.Input) {
		f := strings.Fields(line)
		if len(f) != 2 {
			d.Fatalf(t, "want \"j/P start-fails|handoff-fails\": %q", line)
		}
		fail[parseKey(t, d, f[0])] = f[1]
	}
	keys := make([]pkey, 0, len(h.pending))
	for k := range h.pending {
		keys = append(keys, k)
	}
	sortPkeys(keys)
	var out []string
	for _, k := range keys {
		o := h.pending[k]
		delete(h.pending, k)
		r := opResult{key: k, kind: o.kind}
		var what string
		switch o.kind {
		case opStart:
			r.takeover, r.deadSince = o.acquire.Takeover, o.deadSince
			if h.cancel[k] {
				r.err, what = context.Canceled, "cancelled before the acquire"
				break
			}
			res, err := h.applyResult(o.acquire)
			if err != nil {
				r.err, what = fmt.Errorf("acquire lease: %w", err), "not granted: "+err.Error()
				break
			}
			r.granted, r.lease = true, *res.Lease
			h.planner.clock.granted(r.lease, now)
			what = "granted " + fmtLease(r.lease)
			if fail[k] == "start-fails" {
				r.err, what = errors.New("start: injected"), what+", Runner.Start failed"
			}
		case opHandoff:
			cmd := control.LeaseRelease{Job: k.job, Partition: k.p, Owner: o.lease.Owner, Epoch: o.lease.Epoch}
			if fail[k] != "handoff-fails" {
				cmd.Handoff = &control.HandoffPoint{Offset: 100, Snapshot: fmt.Sprintf("snap/%s/%d/%d", k.job, k.p, o.lease.Epoch)}
			}
			res, err := h.applyResult(cmd)
			if err != nil {
				r.err, what = err, "release failed: "+err.Error()
				break
			}
			r.index, what = res.Index, fmt.Sprintf("released at index %d", res.Index)
			if cmd.Handoff == nil {
				what += " without a handoff point"
			}
		case opRelease:
			res, err := h.applyResult(control.LeaseRelease{Job: k.job, Partition: k.p, Owner: o.lease.Owner, Epoch: o.lease.Epoch})
			if err != nil {
				r.err, what = err, "release failed: "+err.Error()
				break
			}
			r.index, what = res.Index, fmt.Sprintf("released at index %d", res.Index)
		case opStop:
			what = "stopped"
		}
		delete(h.cancel, k)
		if h.planner.finish(r, now) == nil {
			t.Fatalf("%s: the planner had no such operation in flight", fmtOp(o))
		}
		out = append(out, fmt.Sprintf("%s %s/%d: %s", o.kind, k.job, k.p, what))
	}
	return strings.Join(out, "\n")
}

func (h *planHarness) state(now time.Time) string {
	p := h.planner
	out := []string{fmt.Sprintf("fenced=%v draining=%v inflight=%d node-lease-valid=%v", p.fenced, p.draining, p.inflight, p.clock.nodeValid(now))}
	for _, k := range sortedKeys(p.slots) {
		s := p.slots[k]
		line := fmt.Sprintf("%s/%d", k.job, k.p)
		if s.running {
			line += fmt.Sprintf(" running epoch=%d lease-valid=%v", s.lease.Epoch, p.clock.valid(k.job, k.p, s.lease.Epoch, now))
		}
		if s.op != opNone {
			line += " in-flight=" + s.op.String()
		}
		if s.failures > 0 {
			line += fmt.Sprintf(" failures=%d retry-at=%s", s.failures, s.notBefore.Sub(planOrigin))
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func at(t *testing.T, d *datadriven.TestData, key string) time.Time {
	var s string
	d.ScanArgs(t, key, &s)
	return planOrigin.Add(dur(t, d, s))
}

func dur(t *testing.T, d *datadriven.TestData, s string) time.Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	return v
}

func parseKey(t *testing.T, d *datadriven.TestData, s string) pkey {
	job, p, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		d.Fatalf(t, "want job/partition: %q", s)
	}
	return pkey{job, int32(n)}
}

// kv splits "a b=c d" into positional words and key=value pairs.
func kv(line string) ([]string, map[string]string) {
	var pos []string
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	return pos, m
}

func num(t *testing.T, d *datadriven.TestData, s string) uint64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	return n
}

func parseCommand(t *testing.T, d *datadriven.TestData, line string) control.Command {
	pos, m := kv(line)
	switch {
	case len(pos) >= 2 && pos[0] == "acquire":
		k := parseKey(t, d, pos[1])
		c := control.LeaseAcquire{Job: k.job, Partition: k.p, Owner: m["owner"], PrevEpoch: num(t, d, m["prev"]), TTLMs: 3000, SafetyMs: 500}
		if len(pos) > 2 && pos[2] == "takeover" {
			c.Takeover, c.HolderRenewIndex = true, num(t, d, m["renew"])
		}
		return c
	case len(pos) == 2 && pos[0] == "release":
		k := parseKey(t, d, pos[1])
		return control.LeaseRelease{Job: k.job, Partition: k.p, Owner: m["owner"], Epoch: num(t, d, m["epoch"])}
	case len(pos) == 2 && pos[0] == "renew":
		return control.LeaseRenew{Owner: pos[1], TTLMs: 3000, SafetyMs: 500}
	case len(pos) == 2 && pos[0] == "delete-job":
		return control.JobDelete{Name: pos[1]}
	}
	d.Fatalf(t, "unknown command line %q", line)
	return nil
}

func parseMember(t *testing.T, d *datadriven.TestData, line string) control.Member {
	pos, m := kv(line)
	if len(pos) < 2 {
		d.Fatalf(t, "want \"ID alive|failed|left [assignable] [leaving] [since=D]\": %q", line)
	}
	mem := control.Member{Meta: control.Meta{ID: pos[0]}}
	switch pos[1] {
	case "alive":
		mem.Status = control.StatusAlive
	case "failed":
		mem.Status = control.StatusFailed
	case "left":
		mem.Status = control.StatusLeft
	default:
		d.Fatalf(t, "unknown status %q", pos[1])
	}
	for _, f := range pos[2:] {
		switch f {
		case "assignable":
			mem.Assignable = true
		case "leaving":
			mem.Leaving = true
		default:
			d.Fatalf(t, "unknown member flag %q", f)
		}
	}
	if s, ok := m["since"]; ok {
		mem.Since = planOrigin.Add(dur(t, d, s))
	}
	return mem
}
