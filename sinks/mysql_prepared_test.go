package sinks

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/operators"
)

// TestMySQLPreparedUpsertsWriteEveryRowOnce flushes N readings, N not a
// multiple of the rows of a full statement, through the sink's prepared
// statements: every row is stored once with its values, the statements
// prepared are the full one and the powers of two of the rest, and the
// server executed prepared statements. A new sink (a restart) upserting
// the same keys with new values leaves one row per key, with the new
// values. With prepared and text statements (Config.TextStatements), each
// with the sink's DSN and with a DSN that turns interpolateParams off
// (text statements are then prepared and closed by the driver one by
// one).
func TestMySQLPreparedUpsertsWriteEveryRowOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		interpolate bool // the DSN sets interpolateParams=false
		text        bool // Config.TextStatements
	}{
		{"prepared", false, false},
		{"prepared/interpolateParams=false", true, false},
		{"text", false, true},
		{"text/interpolateParams=false", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMySQLStore(t)
			dsn := st.dsn
			if tc.interpolate {
				sep := "?"
				if strings.Contains(dsn, "?") {
					sep = "&"
				}
				dsn += sep + "interpolateParams=false"
				st.dsn = dsn
			}
			const n = 1037
			t0 := ms("2026-03-10 00:00:00.000")
			readings := func(metric float64) []operators.Reading {
				rs := make([]operators.Reading, n)
				for i := range rs {
					rs[i] = operators.Reading{Partition: int32(i % 3), Offset: int64(i), PboxID: fmt.Sprintf("dev-%04d", i%50),
						EventTime: t0 + int64(i)*1000, Metric: metric + float64(i), Latitude: nan, Longitude: nan, Company: "c", Site: "s"}
				}
				return rs
			}
			cfg := Config{BatchRows: MaxBatchRows, BatchBytes: MinBatchBytes, TextStatements: tc.text}
			before := stmtExecutions(t, st)
			s := st.sink(t, cfg, "2026-03-10", nil)
			if err := s.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			rs := readings(0)
			mustWriteEpoch(t, s, 0, 1, &Batch{Readings: rs})
			mustFlush(t, s)
			checkReadings(t, st, n, 0)

			// The rows of a full statement, as execRows sizes them by
			// BatchBytes, and the shapes of the rest.
			perStmt := min(s.e.maxRows(tReadings), s.e.d.stmtBytes/s.e.rowSize(tReadings, &pending{Output: operators.Output{Readings: rs}}, 0))
			perStmt = 1 << (bits.Len(uint(perStmt)) - 1)
			want := []int{perStmt}
			for r := n % perStmt; r > 0; {
				k := 1 << (bits.Len(uint(r)) - 1)
				want = append(want, k)
				r -= k
			}
			slices.Sort(want)
			if tc.text {
				want = nil
			}
			var got []int
			s.e.qmu.Lock()
			for k := range s.e.pstmts {
				if k.table == tReadings {
					got = append(got, k.rows)
				}
			}
			s.e.qmu.Unlock()
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("prepared readings statements of %v rows, want %v (%d rows in full statements of %d)", got, want, n, perStmt)
			}
			stmts := n/perStmt + len(want) - 1
			if d := stmtExecutions(t, st) - before; d < stmts && (!tc.text || tc.interpolate) {
				t.Errorf("the server executed %d prepared statements during the flush, want at least the %d upserts", d, stmts)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s2 := st.sink(t, cfg, "2026-03-10", nil)
			if err := s2.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			mustWriteEpoch(t, s2, 0, 1, &Batch{Readings: readings(0.5)})
			mustFlush(t, s2)
			checkReadings(t, st, n, 0.5)
		})
	}
}

// checkReadings asserts that readings holds n rows, offsets 0..n-1 once
// each, the row of offset i with metric base+i.
func checkReadings(t *testing.T, st *mysqlStore, n int, base float64) {
	t.Helper()
	rows, err := st.db.Query("SELECT source_offset, COUNT(*), MIN(metric), MAX(metric) FROM readings GROUP BY source_offset ORDER BY source_offset")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	next := int64(0)
	for rows.Next() {
		var off int64
		var c int
		var lo, hi float64
		if err := rows.Scan(&off, &c, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if off != next || c != 1 || lo != base+float64(off) || hi != lo {
			t.Fatalf("offset %d: %d rows, metric %v..%v; want offset %d once with metric %v", off, c, lo, hi, next, base+float64(next))
		}
		next++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if next != int64(n) {
		t.Fatalf("%d readings stored, want %d", next, n)
	}
}

// stmtExecutions is the server's count of executed prepared statements
// (every client's: a lower bound of this test's).
func stmtExecutions(t *testing.T, st *mysqlStore) int {
	t.Helper()
	var name string
	var v int
	if err := st.db.QueryRow("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'").Scan(&name, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
