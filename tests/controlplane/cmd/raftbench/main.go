// Command raftbench measures eddy's control plane on a local 3-node cluster
// of real `eddy node` processes: write latency, linearizable (?consistent)
// read latency, and failover time (SIGKILL of the leader → next
// acknowledged write). Each run starts a fresh cluster; the report is the
// per-run numbers and their median.
//
//	go run ./tests/controlplane/cmd/raftbench            # 5 runs, 1000 ops each
//	go run ./tests/controlplane/cmd/raftbench -runs 3 -ops 500 -- --raft-heartbeat-timeout 300ms
//
// Flags after "--" are passed to every node. Run it from inside the module
// (it builds ./cmd/eddy).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/control/client"
	"github.com/eddy-iot/eddy/tests/controlplane/harness"
)

type runResult struct {
	writeP50, writeP99       time.Duration // sequential writes sent to the leader
	fwdWriteP50, fwdWriteP99 time.Duration // sequential writes sent to a follower (forwarded)
	readP50, readP99         time.Duration // sequential ?consistent reads sent to the leader
	fwdReadP50, fwdReadP99   time.Duration // sequential ?consistent reads sent to a follower
	failover                 time.Duration // SIGKILL of the leader → next acknowledged write
}

func main() {
	runs := flag.Int("runs", 5, "runs, each on a fresh 3-node cluster")
	ops := flag.Int("ops", 1000, "sequential operations per latency measurement")
	keep := flag.Bool("keep", false, "keep node data dirs and logs")
	flag.Parse()
	nodeArgs := flag.Args()

	dir, err := os.MkdirTemp("", "eddy-raftbench-")
	if err != nil {
		fail(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("node dirs and logs in", dir)
	}
	fmt.Println("building eddy ...")
	bin, err := harness.Build(dir)
	if err != nil {
		fail(err)
	}
	fmt.Printf("raftbench: 3 nodes on 127.0.0.1, %d runs × %d sequential ops, %s, %d CPUs, node args %v\n",
		*runs, *ops, runtime.Version(), runtime.NumCPU(), nodeArgs)

	var results []runResult
	for r := 0; r < *runs; r++ {
		res, err := oneRun(bin, fmt.Sprintf("%s/run%d", dir, r), *ops, nodeArgs)
		if err != nil {
			fail(fmt.Errorf("run %d: %w", r+1, err))
		}
		results = append(results, res)
		fmt.Printf("run %d: write p50 %v p99 %v | forwarded write p50 %v | consistent read p50 %v p99 %v | failover %v\n",
			r+1, ms(res.writeP50), ms(res.writeP99), ms(res.fwdWriteP50), ms(res.readP50), ms(res.readP99), ms(res.failover))
	}
	report(results)
}

func oneRun(bin, dir string, ops int, nodeArgs []string) (runResult, error) {
	var res runResult
	c, err := harness.New(harness.Options{Binary: bin, Dir: dir, Nodes: 3, BootstrapExpect: 3, Args: nodeArgs})
	if err != nil {
		return res, err
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Wait for a settled cluster: leader with 3 voters, voter target set.
	var leader *harness.Node
	for {
		n, st, err := c.Leader()
		if err == nil && len(st.Voters) == 3 && st.VoterTarget == 3 {
			leader = n
			break
		}
		if ctx.Err() != nil {
			return res, errors.New("cluster did not settle")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var follower *harness.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	lc, fc := leader.Client(10*time.Second), follower.Client(10*time.Second)
	value := []byte(`{"company":"acme","site":"dyce","threshold":40}`)
	// Warm up connections and the leader.
	for i := 0; i < 50; i++ {
		if _, err := lc.Put(ctx, "bench/warm", value); err != nil {
			return res, err
		}
	}
	measure := func(n int, op func(i int) error) (p50, p99 time.Duration, err error) {
		lat := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if err := op(i); err != nil {
				return 0, 0, err
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		return lat[len(lat)/2], lat[(len(lat)*99)/100], nil
	}
	key := func(i int) string { return fmt.Sprintf("devices/%d", i%100) }
	if res.writeP50, res.writeP99, err = measure(ops, func(i int) error { _, err := lc.Put(ctx, key(i), value); return err }); err != nil {
		return res, err
	}
	if res.fwdWriteP50, res.fwdWriteP99, err = measure(ops/4, func(i int) error { _, err := fc.Put(ctx, key(i), value); return err }); err != nil {
		return res, err
	}
	consistent := client.ReadOptions{Consistent: true}
	if res.readP50, res.readP99, err = measure(ops, func(i int) error { _, err := lc.Get(ctx, key(i), consistent); return err }); err != nil {
		return res, err
	}
	if res.fwdReadP50, res.fwdReadP99, err = measure(ops/4, func(i int) error { _, err := fc.Get(ctx, key(i), consistent); return err }); err != nil {
		return res, err
	}

	// Failover: a client of the two surviving nodes retries a write every
	// 5 ms (one attempt each) from the moment of the SIGKILL.
	var urls []string
	for _, n := range c.Nodes {
		if n != leader {
			urls = append(urls, n.URL())
		}
	}
	probe, _ := client.New(client.Config{Addrs: urls, RetryTimeout: time.Millisecond})
	if err := leader.Kill(); err != nil {
		return res, err
	}
	killed := time.Now()
	for seq := 0; ; seq++ {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := probe.Put(actx, "bench/failover", []byte(fmt.Sprint(seq)))
		acancel()
		if err == nil {
			res.failover = time.Since(killed)
			break
		}
		if time.Since(killed) > time.Minute {
			return res, fmt.Errorf("no write acknowledged within a minute of the kill: %w", err)
		}
		if !errors.Is(err, control.ErrNoLeader) && !errors.Is(err, control.ErrUnknownOutcome) && !errors.Is(err, control.ErrNotLeader) {
			return res, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func report(results []runResult) {
	col := func(f func(runResult) time.Duration) (med, lo, hi time.Duration) {
		var ds []time.Duration
		for _, r := range results {
			ds = append(ds, f(r))
		}
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		return median(ds), ds[0], ds[len(ds)-1]
	}
	fmt.Printf("\nmedian of %d runs (min … max):\n", len(results))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	rows := []struct {
		name string
		f    func(runResult) time.Duration
	}{
		{"write p50 (to leader)", func(r runResult) time.Duration { return r.writeP50 }},
		{"write p99 (to leader)", func(r runResult) time.Duration { return r.writeP99 }},
		{"write p50 (to follower, forwarded)", func(r runResult) time.Duration { return r.fwdWriteP50 }},
		{"write p99 (to follower, forwarded)", func(r runResult) time.Duration { return r.fwdWriteP99 }},
		{"consistent read p50 (leader)", func(r runResult) time.Duration { return r.readP50 }},
		{"consistent read p99 (leader)", func(r runResult) time.Duration { return r.readP99 }},
		{"consistent read p50 (follower, forwarded)", func(r runResult) time.Duration { return r.fwdReadP50 }},
		{"consistent read p99 (follower, forwarded)", func(r runResult) time.Duration { return r.fwdReadP99 }},
		{"failover (SIGKILL leader → next acked write)", func(r runResult) time.Duration { return r.failover }},
	}
	for _, row := range rows {
		med, lo, hi := col(row.f)
		fmt.Fprintf(tw, "%s\t%s\t(%s … %s)\n", row.name, ms(med), ms(lo), ms(hi))
	}
	tw.Flush()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "raftbench:", err)
	os.Exit(1)
}
