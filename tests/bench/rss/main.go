// Command rss measures the memory of one `eddy run` process holding many
// open devices: a synthetic dataset of --devices devices with --per-device
// readings each (every device ends with an open window and an open work
// period, see tests/bench/synth) is replayed into an `eddy dev broker`
// process, then a bounded `eddy run` with the discard sink reads it, and its
// resident set (VmRSS of /proc/PID/status, sampled every 100 ms, and the
// kernel's high-water mark VmHWM) is reported beside the 1 GiB goal. The
// broker and the replay are separate processes, so the numbers are eddy's
// alone.
//
// Variants (--variants):
//   - memory: no checkpoints, every device state in the heap;
//   - pebble: checkpoints every 5 s to file:// storage, keyed state in
//     pebble behind the default cache of state.cache_devices device states
//     per partition (what a production job runs; --cache-devices N sets
//     another cache size);
//   - pebble:N: the same with state.cache_devices N.
//
// --bins compares eddy binaries (say one built from main and one from a
// branch) on the same dataset: each of --runs rounds runs every variant
// with every binary in turn, so that the binaries share the machine's
// load alike; --gomemlimit sets the Go runtime's soft memory limit
// (GOMEMLIMIT) of the measured process. The last lines are the medians.
//
// Run it with
//
//	go run ./tests/bench/rss                                  # 1,000,000 devices
//	go run ./tests/bench/rss --devices 200000 --variants pebble
//	go run ./tests/bench/rss --bins /tmp/eddy-main,/tmp/eddy-new --runs 3 --variants memory,pebble,pebble:8192
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/tests/freeport"

	"github.com/eddy-iot/eddy/tests/bench/synth"
)

func main() {
	devices := flag.Int("devices", 1_000_000, "synthetic devices (open device states at the end)")
	perDevice := flag.Int("per-device", 2, "readings per device, 30 s apart")
	partitions := flag.Int("partitions", 12, "partitions of the source topic")
	variants := flag.String("variants", "memory,pebble", "comma-separated subset of memory,pebble")
	cache := flag.Int("cache-devices", 0, "pebble: state.cache_devices, device states decoded in memory per partition (0 = the job default)")
	bins := flag.String("bins", "", "comma-separated eddy binaries to measure in turn (default: build ./cmd/eddy)")
	runs := flag.Int("runs", 1, "rounds of every variant with every binary")
	memLimit := flag.String("gomemlimit", "", "GOMEMLIMIT of the measured eddy run, e.g. 900MiB (default: the environment's)")
	flag.Parse()
	if err := run(*devices, *perDevice, *partitions, *cache, *runs, *variants, *bins, *memLimit); err != nil {
		fmt.Fprintln(os.Stderr, "rss:", err)
		os.Exit(1)
	}
}

func run(devices, perDevice, partitions, cache, runs int, variants, bins, memLimit string) error {
	tmp, err := os.MkdirTemp("", "eddy-rss-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "eddy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/eddy-iot/eddy/cmd/eddy").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	measured := []string{bin}
	if bins != "" {
		measured = strings.Split(bins, ",")
	}
	data := filepath.Join(tmp, "devices.ndjson")
	if err := synth.Write(data, devices, perDevice); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	broker := exec.Command(bin, "dev", "broker", "--listen", addr, "--partitions", strconv.Itoa(partitions))
	if err := broker.Start(); err != nil {
		return err
	}
	defer func() { broker.Process.Kill(); broker.Wait() }()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker on %s does not answer", addr)
		}
	}
	began := time.Now()
	if out, err := exec.Command(bin, "replay", "--brokers", addr, "--data", data, "--quiet").CombinedOutput(); err != nil {
		return fmt.Errorf("replay: %v\n%s", err, out)
	}
	records := devices * perDevice
	fmt.Printf("eddy rss: %d devices × %d readings = %d records replayed in %s; %d partitions\n",
		devices, perDevice, records, time.Since(began).Round(time.Millisecond), partitions)
	fmt.Printf("%-12s %-24s %12s %12s %12s %10s\n", "variant", "binary", "peak RSS", "VmHWM", "duration", "vs 1 GiB")
	type key struct{ variant, bin string }
	var order []key
	hwms, durs := map[key][]float64{}, map[key][]float64{}
	for r := 0; r < runs; r++ {
		for _, v := range strings.Split(variants, ",") {
			spec, err := jobSpec(v, addr, tmp, cache)
			if err != nil {
				return err
			}
			path := filepath.Join(tmp, "job.yaml")
			if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
				return err
			}
			for _, b := range measured {
				// Every run starts from empty checkpoints and state.
				for _, dir := range []string{"ckpt", "state"} {
					if err := os.RemoveAll(filepath.Join(tmp, dir)); err != nil {
						return err
					}
				}
				cmd := exec.Command(b, "run", "--job", path, "--log-level", "warn")
				if memLimit != "" {
					cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimit)
				}
				peak, hwm, d, err := measure(cmd)
				if err != nil {
					return fmt.Errorf("%s with %s: %w", v, b, err)
				}
				k := key{v, b}
				if r == 0 {
					order = append(order, k)
				}
				hwms[k] = append(hwms[k], mib(hwm))
				durs[k] = append(durs[k], d.Seconds())
				fmt.Printf("%-12s %-24s %9.0f MiB %9.0f MiB %12s %9.2f×\n", v, b, mib(peak), mib(hwm), d.Round(time.Millisecond), mib(hwm)/1024)
			}
		}
	}
	if runs > 1 {
		fmt.Printf("medians of %d runs (VmHWM):\n", runs)
		for _, k := range order {
			h := median(hwms[k])
			fmt.Printf("%-12s %-24s %9.0f MiB %12.1fs %9.2f×\n", k.variant, k.bin, h, median(durs[k]), h/1024)
		}
	}
	return nil
}

// jobSpec returns the job of variant v (memory, pebble or pebble:N).
func jobSpec(v, addr, tmp string, cache int) (string, error) {
	spec := fmt.Sprintf("name: rss\nsource:\n  brokers: [%q]\n  bounded: true\nsink: discard\n", addr)
	if v == "memory" {
		return spec, nil
	}
	name, n, hasN := strings.Cut(v, ":")
	if name != "pebble" {
		return "", fmt.Errorf("--variants: unknown %q (want memory, pebble, pebble:N)", v)
	}
	if hasN {
		c, err := strconv.Atoi(n)
		if err != nil || c < 1 {
			return "", fmt.Errorf("--variants: %q: want pebble:N with N >= 1", v)
		}
		cache = c
	}
	spec += fmt.Sprintf("checkpoint:\n  storage: %q\n  interval: 5s\nstate:\n  dir: %q\n",
		"file://"+filepath.Join(tmp, "ckpt"), filepath.Join(tmp, "state"))
	if cache > 0 {
		spec += fmt.Sprintf("  cache_devices: %d\n", cache)
	}
	return spec, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// measure runs cmd to its end, sampling its VmRSS every 100 ms, and returns
// the peak sample and the last VmHWM read (kB).
func measure(cmd *exec.Cmd) (peak, hwm int64, d time.Duration, err error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return 0, 0, 0, fmt.Errorf("eddy run: %v\n%s", err, out.String())
			}
			return peak, hwm, time.Since(began), nil
		case <-tick.C:
			rss, h := status(cmd.Process.Pid)
			peak, hwm = max(peak, rss), max(hwm, h)
		}
	}
}

// status returns VmRSS and VmHWM of pid in kB (0 when unreadable).
func status(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	return rss, hwm
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func freeAddr() (string, error) {
	a, err := freeport.Addrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}
