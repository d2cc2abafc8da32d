package sinks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
)

func TestConfigValidateBatchBytesAndConns(t *testing.T) {
	for _, tc := range []struct {
		c     Config
		field string // "" = valid
	}{
		{Config{}, ""},
		{Config{BatchBytes: MinBatchBytes, Conns: 1}, ""},
		{Config{BatchBytes: MaxBatchBytesLimit, Conns: MaxConns}, ""},
		{Config{BatchBytes: MinBatchBytes - 1}, "BatchBytes"},
		{Config{BatchBytes: -1}, "BatchBytes"},
		{Config{BatchBytes: MaxBatchBytesLimit + 1}, "BatchBytes"},
		{Config{Conns: -1}, "Conns"},
		{Config{Conns: MaxConns + 1}, "Conns"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: Validate() = %v, want nil", tc.c, err)
		case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%+v: Validate() = %v, want an error naming %s", tc.c, err, tc.field)
		}
	}
}

// TestGroupUnits: every unit lands in exactly one group, the units of a
// table all in the same one, in the original order within each group; no
// group is empty; there are min(conns, tables) groups; and the largest
// group holds at most the ideal share plus the largest table (the bound
// of greedy largest-first scheduling).
func TestGroupUnits(t *testing.T) {
	bufs := make([]*partBuf, 4)
	for i := range bufs {
		bufs[i] = &partBuf{p: int32(i)}
	}
	for _, tc := range []struct {
		conns int
		rows  [][]int // rows[t][p]: rows of table t of partition p (0: none)
	}{
		{1, [][]int{{5, 3}, {8}}},
		{2, [][]int{{8000}, {8000}}},
		{2, [][]int{{100, 200, 300, 400}, {500, 600, 1}, {2, 3}}},
		{4, [][]int{{1, 1}}},
		{3, [][]int{{7, 7}, {7, 7}, {7}, {7}, {7}}},
		{8, [][]int{{1000, 10}, {10, 0, 10}, {10, 990}, {5}, {0, 5}}},
	} {
		var units []unit
		var tables [numTables]int
		ntables, total := 0, 0
		for tb, ps := range tc.rows {
			for p, n := range ps {
				if n > 0 {
					units = append(units, unit{bufs[p], tb, n})
					if tables[tb] == 0 {
						ntables++
					}
					tables[tb] += n
					total += n
				}
			}
		}
		largest := slices.Max(tables[:])
		e := &sqlEngine{conns: tc.conns}
		groups := e.groupUnits(units)
		name := fmt.Sprintf("conns=%d rows=%v", tc.conns, tc.rows)
		if want := min(tc.conns, ntables); len(groups) != want {
			t.Errorf("%s: %d groups, want %d", name, len(groups), want)
		}
		var seen []unit
		groupOf := map[int]int{}
		for gi, g := range groups {
			if len(g.units) == 0 {
				t.Errorf("%s: group %d is empty", name, gi)
			}
			load := 0
			for i, u := range g.units {
				load += u.rows
				if i > 0 && slices.Index(units, g.units[i-1]) > slices.Index(units, u) {
					t.Errorf("%s: group %d is out of order: %v", name, gi, g.units)
				}
				if other, ok := groupOf[u.t]; ok && other != gi {
					t.Errorf("%s: table %d split over groups %d and %d", name, u.t, other, gi)
				}
				groupOf[u.t] = gi
			}
			if bound := total/len(groups) + largest; load > bound {
				t.Errorf("%s: group %d holds %d rows, more than %d", name, gi, load, bound)
			}
			seen = append(seen, g.units...)
		}
		if len(seen) != len(units) {
			t.Errorf("%s: %d units in the groups, want %d", name, len(seen), len(units))
		}
		for _, u := range units {
			if !slices.Contains(seen, u) {
				t.Errorf("%s: unit %+v in no group", name, u)
			}
		}
	}
}

// TestMySQLParallelFlushPartialFailure: a flush over several connections
// whose window transaction cannot take a row lock (another session holds
// it, lock wait timeout 1 s) fails for those rows only — retried once,
// then kept buffered — while the readings' transactions commit; once the
// lock is released the next Flush writes the kept rows, under their epoch,
// and the readings are not written twice.
func TestMySQLParallelFlushPartialFailure(t *testing.T) {
	st := newMySQLStore(t)
	ctx := context.Background()
	mc, err := mysql.ParseDSN(st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["innodb_lock_wait_timeout"] = "1"
	reg := prometheus.NewRegistry()
	s, err := NewMySQL(mc.FormatDSN(), Config{Conns: 4, BatchRows: MaxBatchRows}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := ms("2019-03-01 00:00:00.000")
	win := func(v float64) operators.WindowAggregate {
		return operators.WindowAggregate{PboxID: "d", Start: t0, End: t0 + 60_000, Count: 1, Sum: v, Min: v, Max: v, Avg: v, Latitude: nan, Longitude: nan}
	}
	mustWriteEpoch(t, s, 0, 3, &Batch{Windows: []operators.WindowAggregate{win(1)}})
	mustFlush(t, s)

	lock, err := st.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	var n int
	if err := lock.QueryRowContext(ctx, "SELECT COUNT(*) FROM window_aggregates WHERE pboxid = 'd' FOR UPDATE").Scan(&n); err != nil || n != 1 {
		t.Fatalf("lock the window: %d rows, %v", n, err)
	}
	for p := range int32(3) {
		b := &Batch{Readings: readingsAt(int64(p)*100, "2019-03-01 00:00:01.000", "2019-03-01 00:00:02.000")}
		for i := range b.Readings {
			b.Readings[i].Partition = p
		}
		if p == 0 {
			b.Windows = []operators.WindowAggregate{win(2)} // the re-fired window: its row is locked
		}
		mustWriteEpoch(t, s, p, 3, b)
	}
	err = s.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "1205") {
		t.Fatalf("Flush with the window locked = %v, want a lock wait timeout (1205)", err)
	}
	if n := countRows(t, st, "readings"); n != 6 {
		t.Errorf("%d readings committed by the flush whose window transaction failed, want 6", n)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, s)
	if e := s.e; e.nrows != 0 || e.bytes != 0 {
		t.Errorf("after the retry %d rows (%d bytes) still buffered, want none", e.nrows, e.bytes)
	}
	var avg float64
	var epoch int
	if err := st.db.QueryRow("SELECT `avg`, epoch FROM window_aggregates WHERE pboxid = 'd'").Scan(&avg, &epoch); err != nil {
		t.Fatal(err)
	}
	if avg != 2 || epoch != 3 {
		t.Errorf("window after the retry: avg %v epoch %d, want the re-fired 2 at epoch 3", avg, epoch)
	}
	if n := countRows(t, st, "readings"); n != 6 {
		t.Errorf("%d readings after the retry, want 6", n)
	}
	if n := metricRows(t, reg, "mysql", "readings"); n != 6 {
		t.Errorf("eddy_sink_rows_written_total{table=readings} = %v, want 6: the committed readings must not be written again", n)
	}
}

func countRows(t *testing.T, st *mysqlStore, table string) int {
	t.Helper()
	var n int
	if err := st.db.QueryRow("SELECT COUNT(*) FROM `" + table + "`").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
