package sinks

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/pgtest"
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
	case *Postgres:
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

// BenchmarkPostgresWriteReadings measures readings/s into PostgreSQL.
func BenchmarkPostgresWriteReadings(b *testing.B) {
	s, err := NewPostgres(pgtest.URL(b), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchWriteReadings(b, s, 0)
}

// BenchmarkFencing measures the cost of fencing writes by lease epoch: the
// same readings written with the epoch column and the conditional upsert
// (fenced) and with eddy's former unconditional upsert without the column
// (unfenced), into two databases of the same store, alternating in chunks
// of 5,000 rows so that both see the same machine load (the order swaps
// every chunk). "insert" writes new keys; "replay" writes the same keys
// again over existing rows (the update path, where the epoch condition is
// evaluated), as after a recovery or a zombie's late flush. Metrics:
// fenced-rows/s, unfenced-rows/s and fenced/unfenced (the throughput
// ratio; 1 = no cost).
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
		{"postgres", func(b *testing.B) Sink {
			s, err := NewPostgres(pgtest.URL(b), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		for _, mode := range []string{"insert", "replay"} {
			b.Run(st.name+"/"+mode, func(b *testing.B) {
				benchFencing(b, st.sink(b), st.sink(b), mode == "replay")
			})
		}
	}
}

// benchFencing writes b.N readings as partition 0 at epoch 1 into fenced
// and, without fencing, into unfenced, in alternating chunks, each chunk
// in batches of 500 and flushed at its end; with replay, it writes every
// row once into both before the timer starts.
func benchFencing(b *testing.B, fenced, unfenced Sink, replay bool) {
	ctx := context.Background()
	engineOf(unfenced).unfenced = true
	for _, s := range []Sink{fenced, unfenced} {
		if err := s.Open(ctx); err != nil {
			b.Fatal(err)
		}
		defer s.Close()
	}
	const batch, chunk = 500, 5000
	data := benchReadings(0, b.N)
	write := func(s Sink, rows []operators.Reading) time.Duration {
		start := time.Now()
		for i := 0; i < len(rows); i += batch {
			if err := s.(EpochWriter).WriteEpoch(ctx, 0, 1, &Batch{Readings: rows[i:min(i+batch, len(rows))]}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	if replay {
		write(fenced, data)
		write(unfenced, data)
	}
	b.ResetTimer()
	var tf, tu time.Duration
	for i, k := 0, 0; i < b.N; i, k = i+chunk, k+1 {
		rows := data[i:min(i+chunk, b.N)]
		if k%2 == 0 {
			tf += write(fenced, rows)
			tu += write(unfenced, rows)
		} else {
			tu += write(unfenced, rows)
			tf += write(fenced, rows)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/tf.Seconds(), "fenced-rows/s")
	b.ReportMetric(float64(b.N)/tu.Seconds(), "unfenced-rows/s")
	b.ReportMetric(tu.Seconds()/tf.Seconds(), "fenced/unfenced")
}
