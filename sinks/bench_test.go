package sinks

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// benchReadings makes n readings of 23 devices, 2.5 minutes apart per
// device, like the Aberdeen data, starting at offset first.
func benchReadings(first, n int) []operators.Reading {
	const t0 = 1551398400000 // 2019-03-01
	rs := make([]operators.Reading, n)
	for i := range rs {
		o := first + i
		rs[i] = operators.Reading{
			Partition: int32(o % 4),
			Offset:    int64(o),
			PboxID:    fmt.Sprintf("%d", 17000+o%23),
			EventTime: t0 + int64(o/23)*150_000 + int64(o%23)*1000 + int64(o%1000),
			Metric:    float64(o%997) / 10,
			Latitude:  57.1 + float64(o%23)/1000,
			Longitude: -2.1,
			Company:   "Aberdeen Air",
			Site:      "site-" + fmt.Sprint(o%23),
		}
		if o%50 == 0 {
			rs[i].Latitude, rs[i].Longitude = math.NaN(), math.NaN()
		}
	}
	return rs
}

// benchWriteReadings writes b.N readings in batches of 500 (what one
// partition actor hands over), flushing every 20 batches.
func benchWriteReadings(b *testing.B, s Sink, stmtRows int) {
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if e := engineOf(s); e != nil && stmtRows > 0 {
		e.stmtRows = stmtRows
	}
	const batch = 500
	data := benchReadings(0, b.N)
	b.ResetTimer()
	for i, k := 0, 0; i < b.N; i, k = i+batch, k+1 {
		if err := s.Write(ctx, &Batch{Readings: data[i:min(i+batch, b.N)]}); err != nil {
			b.Fatal(err)
		}
		if k%20 == 19 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func engineOf(s Sink) *sqlEngine {
	switch s := s.(type) {
	case *SQLite:
		return s.e
	case *MySQL:
		return s.e
	}
	return nil
}

// BenchmarkSQLiteWriteReadings measures readings/s into a SQLite file with
// the default Config (rows/s metric). Target: > 150k rows/s.
func BenchmarkSQLiteWriteReadings(b *testing.B) {
	s, err := NewSQLite(filepath.Join(b.TempDir(), "bench.db"), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchWriteReadings(b, s, 0)
}

// BenchmarkMySQLWriteReadings measures readings/s into MySQL/MariaDB.
func BenchmarkMySQLWriteReadings(b *testing.B) {
	s, err := NewMySQL(mariadbtest.DSN(b), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchWriteReadings(b, s, 0)
}

// BenchmarkFencing measures the cost of fencing writes by lease epoch: the
// same readings written with the epoch column and the conditional upsert
// (fenced) and with eddy's former unconditional upsert without the column
// (unfenced), in the same run, into SQLite and MariaDB. "insert" writes new
// keys; "replay" writes the same keys again over existing rows (the
// update path, where the epoch condition is evaluated), as after a
// recovery or a zombie's late flush. rows/s is the metric.
//
//	go test -run xxx -bench Fencing -count 5 ./sinks
func BenchmarkFencing(b *testing.B) {
	stores := []struct {
		name string
		sink func(b *testing.B) Sink
	}{
		{"sqlite", func(b *testing.B) Sink {
			s, err := NewSQLite(filepath.Join(b.TempDir(), "bench.db"), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"mysql", func(b *testing.B) Sink {
			s, err := NewMySQL(mariadbtest.DSN(b), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		for _, mode := range []string{"insert", "replay"} {
			for _, fenced := range []bool{true, false} {
				name := st.name + "/" + mode + "/unfenced"
				if fenced {
					name = st.name + "/" + mode + "/fenced"
				}
				b.Run(name, func(b *testing.B) {
					s := st.sink(b)
					engineOf(s).unfenced = !fenced
					benchWriteEpoch(b, s, mode == "replay")
				})
			}
		}
	}
}

// benchWriteEpoch writes b.N readings as partition 0 at epoch 1 in batches
// of 500, flushing every 20 batches; with replay, it writes them once
// before the timer starts.
func benchWriteEpoch(b *testing.B, s Sink, replay bool) {
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ew := s.(EpochWriter)
	const batch = 500
	data := benchReadings(0, b.N)
	write := func() {
		for i, k := 0, 0; i < b.N; i, k = i+batch, k+1 {
			if err := ew.WriteEpoch(ctx, 0, 1, &Batch{Readings: data[i:min(i+batch, b.N)]}); err != nil {
				b.Fatal(err)
			}
			if k%20 == 19 {
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if replay {
		write()
	}
	b.ResetTimer()
	write()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
