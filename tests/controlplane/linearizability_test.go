package controlplane

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
)

var linRounds = flag.Int("lin-rounds", 4, "leader kill+restart rounds of TestLinearizability")

// kvInput/kvOutput are the operations of the porcupine key/value model.
// Every written value is unique, so a value identifies the write (and its
// revision): a CAS on revision r succeeds iff the current value is the one
// read together with r. absent stands for "no such key".
const (
	opGet = iota
	opPut
	opCAS
)

const absent = "\x00absent"

type kvInput struct {
	Op       int
	Key      string
	Value    string // put/cas: the value written
	Expected string // cas: the value whose revision was compared
}

type kvOutput struct {
	Value   string // get: value read (absent if none)
	OK      bool   // cas: comparison succeeded
	Unknown bool   // write whose outcome is unknown (may or may not have happened)
}

// kvModel is a sequential key/value store with compare-and-set, partitioned
// by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return absent },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(string), input.(kvInput), output.(kvOutput)
		switch in.Op {
		case opGet:
			return out.Value == st, st
		case opPut:
			return true, in.Value
		case opCAS:
			match := st == in.Expected
			if out.Unknown { // if it happened, it did what CAS does
				if match {
					return true, in.Value
				}
				return true, st
			}
			if out.OK {
				return match, in.Value
			}
			return !match, st
		}
		return false, st
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(kvInput), output.(kvOutput)
		show := func(v string) string {
			if v == absent {
				return "∅"
			}
			return v
		}
		switch in.Op {
		case opGet:
			return fmt.Sprintf("get(%s) → %s", in.Key, show(out.Value))
		case opPut:
			if out.Unknown {
				return fmt.Sprintf("put(%s, %s) → ?", in.Key, in.Value)
			}
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		default:
			res := fmt.Sprint(out.OK)
			if out.Unknown {
				res = "?"
			}
			return fmt.Sprintf("cas(%s, %s → %s) → %s", in.Key, show(in.Expected), in.Value, res)
		}
	},
	DescribeState: func(state interface{}) string {
		if state.(string) == absent {
			return "∅"
		}
		return state.(string)
	},
}

// TestKVModelRejectsViolations shows the checker can fail: classic
// non-linearizable histories are rejected, their linearizable twins pass.
func TestKVModelRejectsViolations(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
	}
	put := kvInput{Op: opPut, Key: "x", Value: "a"}
	cases := []struct {
		name    string
		history []porcupine.Operation
		want    bool
	}{
		{"stale read after acknowledged write", []porcupine.Operation{
			op(0, 0, 10, put, kvOutput{}),
			op(1, 20, 30, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: absent}),
		}, false},
		{"read concurrent with write may miss it", []porcupine.Operation{
			op(0, 0, 10, put, kvOutput{}),
			op(1, 5, 30, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: absent}),
		}, true},
		{"two CAS from the same state both succeed", []porcupine.Operation{
			op(0, 0, 10, put, kvOutput{}),
			op(1, 20, 30, kvInput{Op: opCAS, Key: "x", Expected: "a", Value: "b"}, kvOutput{OK: true}),
			op(2, 20, 30, kvInput{Op: opCAS, Key: "x", Expected: "a", Value: "c"}, kvOutput{OK: true}),
		}, false},
		{"unknown write seen later is fine", []porcupine.Operation{
			op(0, 0, math.MaxInt64, put, kvOutput{Unknown: true}),
			op(1, 20, 30, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: "a"}),
			op(1, 40, 50, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: "a"}),
		}, true},
		{"unknown write seen then unseen is not", []porcupine.Operation{
			op(0, 0, math.MaxInt64, put, kvOutput{Unknown: true}),
			op(1, 20, 30, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: "a"}),
			op(1, 40, 50, kvInput{Op: opGet, Key: "x"}, kvOutput{Value: absent}),
		}, false},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(kvModel, c.history); got != c.want {
			t.Errorf("%s: linearizable = %v, want %v", c.name, got, c.want)
		}
	}
}

// history collects operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	stats map[string]int
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(client int, call int64, in kvInput, out kvOutput, ret int64, stat string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats[stat]++
	if stat == "dropped" {
		return
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out})
}

// notApplied reports errors after which a write certainly did not happen.
func notApplied(err error) bool {
	return errors.Is(err, control.ErrNoLeader) || errors.Is(err, control.ErrNotLeader) ||
		errors.Is(err, control.ErrClosed) || errors.Is(err, control.ErrInvalid)
}

// worker runs random get (consistent) / put / cas operations on a few keys
// until ctx ends. The sequence of choices is determined by rng.
func worker(ctx context.Context, id int, cl *client.Client, rng *rand.Rand, keys []string, h *history) {
	type seen struct {
		value string
		rev   uint64
	}
	known := map[string]seen{} // last value+revision this worker observed per key
	for seq := 0; ctx.Err() == nil; seq++ {
		key := keys[rng.IntN(len(keys))]
		value := fmt.Sprintf("c%d-%d", id, seq)
		octx, cancel := context.WithTimeout(ctx, 4*time.Second)
		call := h.now()
		switch r := rng.IntN(10); {
		case r < 4:
			in := kvInput{Op: opGet, Key: key}
			e, err := cl.Get(octx, key, client.ReadOptions{Consistent: true})
			ret := h.now()
			switch {
			case err == nil:
				h.add(id, call, in, kvOutput{Value: e.Value}, ret, "get ok")
				known[key] = seen{e.Value, e.ModifyIndex}
			case errors.Is(err, control.ErrNotFound):
				h.add(id, call, in, kvOutput{Value: absent}, ret, "get ok")
				known[key] = seen{absent, 0}
			default:
				h.add(id, call, in, kvOutput{}, ret, "dropped") // a failed read has no effect
			}
		case r < 7:
			in := kvInput{Op: opPut, Key: key, Value: value}
			e, err := cl.Put(octx, key, []byte(value))
			ret := h.now()
			switch {
			case err == nil:
				h.add(id, call, in, kvOutput{}, ret, "put ok")
				known[key] = seen{value, e.ModifyIndex}
			case notApplied(err) && ctx.Err() == nil && octx.Err() == nil:
				h.add(id, call, in, kvOutput{}, ret, "dropped")
			default:
				h.add(id, call, in, kvOutput{Unknown: true}, math.MaxInt64, "put unknown")
			}
		default:
			k, ok := known[key]
			if !ok {
				k = seen{absent, 0}
			}
			in := kvInput{Op: opCAS, Key: key, Value: value, Expected: k.value}
			e, err := cl.CAS(octx, key, []byte(value), k.rev)
			ret := h.now()
			switch {
			case err == nil:
				h.add(id, call, in, kvOutput{OK: true}, ret, "cas ok")
				known[key] = seen{value, e.ModifyIndex}
			case errors.Is(err, control.ErrConflict):
				h.add(id, call, in, kvOutput{OK: false}, ret, "cas conflict")
				delete(known, key)
			case notApplied(err) && ctx.Err() == nil && octx.Err() == nil:
				h.add(id, call, in, kvOutput{}, ret, "dropped")
			default:
				h.add(id, call, in, kvOutput{Unknown: true}, math.MaxInt64, "cas unknown")
			}
		}
		cancel()
		// Re-learn a key's revision after a failed CAS.
		if _, ok := known[key]; !ok && rng.IntN(2) == 0 {
			continue
		}
	}
}

// TestLinearizability: concurrent clients do consistent get / put / cas on
// three keys through all nodes while the leader is SIGKILLed and restarted,
// several rounds; the history must be linearizable (porcupine, key/value
// model). The workload and the kill schedule come from the seed.
func TestLinearizability(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	c := startCluster(t, 3, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := []string{"lin/a", "lin/b", "lin/c"}
	h := &history{start: time.Now(), stats: map[string]int{}}

	const workers = 6
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		cl := c.Client(i%len(c.Nodes), 3*time.Second)
		wrng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, i, cl, wrng, keys, h)
		}()
	}

	var failovers []time.Duration
	probe := c.Client(0, 20*time.Second)
	var probeSeq atomic.Int64
	for round := 0; round < *linRounds; round++ {
		time.Sleep(time.Duration(1500+rng.IntN(1500)) * time.Millisecond)
		leader, _, err := c.WaitLeader(ctxTimeout(t, 20*time.Second))
		if err != nil {
			cancel()
			wg.Wait()
			t.Fatal(err)
		}
		killed := time.Now()
		if err := leader.Kill(); err != nil {
			t.Fatal(err)
		}
		// Failover time: SIGKILL → next acknowledged write.
		// A put of a fresh value is safe to repeat after an unknown outcome.
		for time.Since(killed) < 20*time.Second {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = probe.Put(pctx, "lin/probe", []byte(fmt.Sprint(probeSeq.Add(1))))
			pcancel()
			if err == nil {
				failovers = append(failovers, time.Since(killed))
				break
			}
		}
		if err != nil {
			t.Logf("round %d: no write acknowledged within 20s of the kill: %v", round, err)
		}
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		if err := leader.Start(binary); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed leader %s, restarted after %v; failover %v", round, leader.ID, time.Since(killed).Round(time.Millisecond), failovers)
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()

	h.mu.Lock()
	ops, stats := h.ops, h.stats
	h.mu.Unlock()
	t.Logf("history: %d operations %v", len(ops), stats)
	if stats["get ok"] < 100 || stats["put ok"] < 50 || stats["cas ok"] < 10 {
		t.Fatalf("too few successful operations to mean anything: %v", stats)
	}
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 90*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("eddy-linearizability-%d.html", seed))
		if err := porcupine.VisualizePath(kvModel, info, path); err == nil {
			t.Logf("visualization of the violation: %s", path)
		}
		t.Fatalf("history is not linearizable (seed %d)", seed)
	default:
		t.Fatalf("porcupine could not decide within its timeout (%s); reduce the history (seed %d)", res, seed)
	}
}
