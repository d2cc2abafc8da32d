package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/cmd/eddy/oracle"
	"github.com/eddy-iot/eddy/control"
	"github.com/eddy-iot/eddy/sinks/sinktest"
)

// This file holds the pieces that tests running a streaming job over real
// processes share (tests/chaos, tests/faults): a broker process, a
// continuous replay, the bounded job spec, the lease-history check and the
// wait for the sink to equal the oracle. The partition observer is in
// observer.go.

// StartBroker starts `eddy dev broker` (a kfake Kafka broker with a topic of
// partitions partitions, data under dir/kafka) on a free port, waits until
// it accepts connections and returns its address. It is stopped (SIGTERM)
// in t.Cleanup.
func StartBroker(t testing.TB, bin, dir string, partitions int32) string {
	return StartBrokerProcess(t, bin, dir, partitions).Addr
}

// Broker is a running `eddy dev broker` process.
type Broker struct {
	Addr string
	Cmd  *exec.Cmd
}

// StartBrokerProcess is StartBroker, returning the process too (to signal
// it: a hung broker is SIGSTOP).
func StartBrokerProcess(t testing.TB, bin, dir string, partitions int32) *Broker {
	t.Helper()
	addr := FreeAddr(t)
	cmd := exec.Command(bin, "dev", "broker", "--listen", addr, "--partitions", fmt.Sprint(partitions), "--data-dir", filepath.Join(dir, "kafka"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	Eventually(t, 15*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return &Broker{Addr: addr, Cmd: cmd}
}

// Replay is a running `eddy replay` process.
type Replay struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// StartReplay starts `eddy replay --brokers broker --quiet args...` (e.g.
// "--limit", "150000", "--speed", "30000", or "--data", path). It is killed
// in t.Cleanup if still running.
func StartReplay(t testing.TB, bin, broker string, args ...string) *Replay {
	t.Helper()
	r := &Replay{done: make(chan error, 1)}
	r.cmd = exec.Command(bin, append([]string{"replay", "--brokers", broker, "--quiet"}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { r.cmd.Process.Kill() })
	return r
}

// Wait waits for the replay to exit; an exit status other than 0 is an
// error that carries its output.
func (r *Replay) Wait(ctx context.Context) error {
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			return fmt.Errorf("replay: %v\n%s", err, r.out.String())
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("replay did not finish: %w", ctx.Err())
	}
}

// BoundedSpec returns the YAML spec of job name reading the broker up to
// the oracle's per-partition record counts (source.end_offsets: a bounded
// job over input still being produced), writing to sink, with checkpoints
// every second in storage. extra is appended verbatim (top-level YAML keys,
// e.g. "event_time:\n  allowed_lateness: 30s\n").
func BoundedSpec(name, broker string, want *oracle.Result, sink, storage, extra string) string {
	var ends strings.Builder
	for p, n := range want.PartitionRecords {
		fmt.Fprintf(&ends, "    %d: %d\n", p, n)
	}
	return fmt.Sprintf(`name: %s
source:
  brokers: [%q]
  end_offsets:
%ssink: %q
checkpoint:
  storage: %q
  interval: 1s
batch_size: 1024
%s`, name, broker, ends.String(), sink, storage, extra)
}

// WaitOracle polls the MySQL database dsn until its tables equal want, and
// fails t with the difference when they still differ after timeout.
func WaitOracle(t testing.TB, ctx context.Context, dsn string, want *oracle.Result, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := oracle.LoadMySQL(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		diff := oracle.Compare(got, want)
		if diff.Equal() {
			t.Logf("MySQL equals the oracle: %d readings, %d windows, %d work periods, %d late, %d dead letters",
				got.Readings, len(got.Windows), len(got.WorkPeriods), got.Late, got.DeadLetters)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("MySQL differs from the oracle:\n%s", diff.Format(10))
			return
		}
		time.Sleep(2 * time.Second)
	}
}

// CheckLeaseHistory replays the lease events in Raft order and fails t on
// any violation: every grant is the previous epoch + 1, an acquire finds the
// lease free or released (or held by the acquirer), a takeover names the
// holder it replaces, and a release comes from the holder.
func CheckLeaseHistory(t testing.TB, hist []control.LeaseEvent) {
	t.Helper()
	kinds, err := control.CheckLeaseHistory(hist)
	if err != nil {
		t.Error(err)
		return
	}
	t.Logf("lease history: %d events (%v), one holder per partition at every Raft index", len(hist), kinds)
}

// Median returns the median of ds (0 for none).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// RoundAll returns ds rounded to milliseconds, for printing.
func RoundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// KafkaSinkURL is the URL of eddy's transactional Kafka sink on broker for
// the tables WaitKafkaOracle compares (readings go to the SQL sink only).
func KafkaSinkURL(broker string, partitions int32) string {
	return fmt.Sprintf("kafka://%s?tables=window_aggregates,work_periods,late_records,dead_letters&create_topics=true&partitions=%d", broker, partitions)
}

// LoadKafka reads job's Kafka sink topics on broker as a read_committed
// consumer (sinktest.ReadCommitted) into an oracle.Result; Readings is left 0.
func LoadKafka(ctx context.Context, broker, job string) (*oracle.Result, error) {
	b, err := sinktest.ReadCommitted(ctx, []string{broker}, job+".window_aggregates", job+".work_periods",
		job+".late_records", job+".dead_letters")
	if err != nil {
		return nil, err
	}
	r := &oracle.Result{Late: int64(len(b.Late)), DeadLetters: int64(len(b.DeadLetters))}
	for _, w := range b.Windows {
		r.Windows = append(r.Windows, oracle.Window{PboxID: w.PboxID, Start: w.Start, End: w.End, Count: w.Count,
			Sum: w.Sum, Min: w.Min, Max: w.Max, Avg: w.Avg, Latitude: w.Latitude, Longitude: w.Longitude, Company: w.Company, Site: w.Site})
	}
	for _, p := range b.WorkPeriods {
		r.WorkPeriods = append(r.WorkPeriods, oracle.WorkPeriod{PboxID: p.PboxID, Start: p.Start, End: p.End,
			DurationS: float64(p.End-p.Start) / 1000, Samples: p.Samples, AvgMetric: p.AvgMetric, MaxMetric: p.MaxMetric,
			Company: p.Company, Site: p.Site})
	}
	return r, nil
}

// WaitKafkaOracle polls job's Kafka sink on broker (read_committed) until
// it equals want (duplicates count as extra rows), and fails t with the
// difference after timeout.
func WaitKafkaOracle(t testing.TB, ctx context.Context, broker, job string, want *oracle.Result, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := LoadKafka(ctx, broker, job)
		if err != nil {
			t.Fatal(err)
		}
		got.Readings = want.Readings
		diff := oracle.Compare(got, want)
		if diff.Equal() {
			t.Logf("Kafka (read_committed) equals the oracle: %d windows, %d work periods, %d late, %d dead letters, no duplicate",
				len(got.Windows), len(got.WorkPeriods), got.Late, got.DeadLetters)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("read_committed Kafka output differs from the oracle (duplicates are extras):\n%s", diff.Format(10))
			return
		}
		time.Sleep(2 * time.Second)
	}
}
