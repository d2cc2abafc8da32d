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
//     another cache size).
//
// Run it with
//
//	go run ./tests/bench/rss                                  # 1,000,000 devices
//	go run ./tests/bench/rss --devices 200000 --variants pebble
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
	flag.Parse()
	if err := run(*devices, *perDevice, *partitions, *cache, *variants); err != nil {
		fmt.Fprintln(os.Stderr, "rss:", err)
		os.Exit(1)
	}
}

func run(devices, perDevice, partitions, cache int, variants string) error {
	tmp, err := os.MkdirTemp("", "eddy-rss-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "eddy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/eddy-iot/eddy/cmd/eddy").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
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
	fmt.Printf("%-8s %12s %12s %12s %10s\n", "variant", "peak RSS", "VmHWM", "duration", "vs 1 GiB")
	for _, v := range strings.Split(variants, ",") {
		spec := fmt.Sprintf("name: rss\nsource:\n  brokers: [%q]\n  bounded: true\nsink: discard\n", addr)
		switch v {
		case "memory":
		case "pebble":
			spec += fmt.Sprintf("checkpoint:\n  storage: %q\n  interval: 5s\nstate:\n  dir: %q\n",
				"file://"+filepath.Join(tmp, "ckpt"), filepath.Join(tmp, "state"))
			if cache > 0 {
				spec += fmt.Sprintf("  cache_devices: %d\n", cache)
			}
		default:
			return fmt.Errorf("--variants: unknown %q (want memory, pebble)", v)
		}
		path := filepath.Join(tmp, v+".yaml")
		if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
			return err
		}
		peak, hwm, d, err := measure(exec.Command(bin, "run", "--job", path, "--log-level", "warn"))
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		fmt.Printf("%-8s %9.0f MiB %9.0f MiB %12s %9.2f×\n", v, mib(peak), mib(hwm), d.Round(time.Millisecond), mib(hwm)/1024)
	}
	return nil
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
