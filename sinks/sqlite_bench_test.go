package sinks

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/operators"
)

// BenchmarkSQLiteJobRows writes what the iot-work job writes per reading
// into a SQLite file: the reading, a one-minute window of its device (the
// readings of a device are 2.5 minutes apart, so each closes one) and, for
// every 20th, a work period, from 12 partitions in batches of 100 readings
// (WriteEpoch), with a Flush every 50 batches: transactions of about
// 10,000 rows in statements of 1,000 (the default BatchRows), as in the
// job, whose flushes take everything buffered meanwhile (12.6k rows per
// write on average in tests/bench's sqlite variant).
// b.N counts readings. Metrics: rows/s (wall) and cpu-µs/row, the
// process's user+system CPU time per row written, which a machine shared
// with other jobs disturbs less than the wall time.
func BenchmarkSQLiteJobRows(b *testing.B) {
	s, err := NewSQLite(filepath.Join(b.TempDir(), "bench.db"), Config{BatchRows: 16_000}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.e.stmtRows = DefaultConfig().BatchRows
	const parts, batch = 12, 100
	rs := benchReadings(0, b.N)
	bufs := make([]Batch, parts)
	rows := 0
	cpu0 := cpuTime()
	b.ResetTimer()
	k := 0
	for i := range rs {
		r := &rs[i]
		p := i % parts
		r.Partition = int32(p)
		bb := &bufs[p]
		bb.Readings = append(bb.Readings, *r)
		bb.Windows = append(bb.Windows, operators.WindowAggregate{
			PboxID: r.PboxID, Start: r.EventTime / 60000 * 60000, End: r.EventTime/60000*60000 + 60000,
			Count: 1, Sum: r.Metric, Min: r.Metric, Max: r.Metric, Avg: r.Metric,
			Latitude: r.Latitude, Longitude: r.Longitude, Company: r.Company, Site: r.Site,
		})
		if i%20 == 0 {
			bb.WorkPeriods = append(bb.WorkPeriods, operators.WorkPeriod{
				PboxID: r.PboxID, Start: r.EventTime - 600_000, End: r.EventTime, Samples: 5,
				AvgMetric: r.Metric, MaxMetric: r.Metric, Company: r.Company, Site: r.Site,
			})
		}
		if len(bb.Readings) == batch || i == len(rs)-1 {
			rows += bb.Len()
			if err := s.WriteEpoch(ctx, int32(p), 1, bb); err != nil {
				b.Fatal(err)
			}
			*bb = Batch{}
			if k++; k%50 == 0 {
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for p := range bufs {
		if bufs[p].Len() > 0 {
			rows += bufs[p].Len()
			if err := s.WriteEpoch(ctx, int32(p), 1, &bufs[p]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(rows), "cpu-µs/row")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
