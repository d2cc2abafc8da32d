package oracle

import (
	"context"
	"database/sql"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// handMadeWithDevices is the oracle of handMade with business data: windows
// with and without positions, company and site set and empty.
func handMadeWithDevices(t *testing.T) *Result {
	t.Helper()
	o := csvOptions()
	thr := 15.0
	o.Devices = map[string]Device{"A": {Company: "Acme", Site: "Dyce"}, "B": {Company: "Bco", Threshold: &thr}}
	return mustCompute(t, handMade, o)
}

// clone deep-copies the rows of r that Compare reads.
func clone(r *Result) *Result {
	c := *r
	c.Windows = append([]Window(nil), r.Windows...)
	c.WorkPeriods = append([]WorkPeriod(nil), r.WorkPeriods...)
	return &c
}

func TestCompare(t *testing.T) {
	want := handMadeWithDevices(t)
	for _, tc := range []struct {
		name   string
		mutate func(*Result)
		// Expected sizes: count diffs, missing/extra/differing windows,
		// missing/extra/differing work periods.
		want [7]int
		// Substrings of Format's output.
		mention []string
	}{
		{"identical", func(*Result) {}, [7]int{}, []string{"MATCH"}},
		{"sum within tolerance", func(r *Result) { r.Windows[0].Sum *= 1 + 1e-12 }, [7]int{}, nil},
		{"sum beyond tolerance", func(r *Result) { r.Windows[0].Sum *= 1 + 1e-6 },
			[7]int{0, 0, 0, 1, 0, 0, 0}, []string{"differing window: A@2019-03-01 00:00:00.000 sum got"}},
		{"position NULL vs value", func(r *Result) { r.Windows[1].Latitude = math.NaN() },
			[7]int{0, 0, 0, 1, 0, 0, 0}, []string{"latitude got NULL want 57.4"}},
		{"window end and company", func(r *Result) { r.Windows[2].End += 1; r.Windows[2].Company = "" },
			[7]int{0, 0, 0, 1, 0, 0, 0}, []string{"window_end got 2019-03-01 00:12:00.001", `company got "" want "Acme"`}},
		{"missing window", func(r *Result) { r.Windows = r.Windows[1:] },
			[7]int{0, 1, 0, 0, 0, 0, 0}, []string{"missing window: A [2019-03-01 00:00:00.000, 2019-03-01 00:01:00.000) count=3"}},
		{"extra and duplicate window", func(r *Result) {
			x := r.Windows[0]
			x.Start, x.End = sec(-60), sec(0)
			r.Windows = append(r.Windows, x, r.Windows[3])
		}, [7]int{0, 0, 2, 0, 0, 0, 0}, []string{"extra window: A [2019-02-28 23:59:00.000"}},
		{"counts", func(r *Result) { r.Readings++; r.DeadLetters-- },
			[7]int{2, 0, 0, 0, 0, 0, 0}, []string{"count readings: got 11, want 10", "count dead_letters: got 1, want 2"}},
		{"work period fields", func(r *Result) { r.WorkPeriods[1].Samples = 3; r.WorkPeriods[1].DurationS = 601 },
			[7]int{0, 0, 0, 0, 0, 0, 1}, []string{"duration_s got 601 want 600", "samples got 3 want 2"}},
		{"work period split", func(r *Result) {
			// A run wrongly cut at the exact max gap.
			p := r.WorkPeriods[1]
			r.WorkPeriods[1].End, r.WorkPeriods[1].DurationS, r.WorkPeriods[1].Samples = p.Start, 0, 1
			r.WorkPeriods = append(r.WorkPeriods, WorkPeriod{PboxID: "A", Start: p.End, End: p.End, Samples: 1, AvgMetric: 90, MaxMetric: 90})
		}, [7]int{0, 0, 0, 0, 0, 1, 1}, []string{"extra work period: A [2019-03-01 00:11:05.000"}},
		{"missing work period", func(r *Result) { r.WorkPeriods = nil },
			[7]int{0, 0, 0, 0, 5, 0, 0}, []string{"missing work period", "work periods: got 0, want 5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clone(want)
			tc.mutate(got)
			d := Compare(got, want)
			sizes := [7]int{len(d.Counts), len(d.MissingWindows), len(d.ExtraWindows), len(d.ChangedWindows),
				len(d.MissingWorkPeriods), len(d.ExtraWorkPeriods), len(d.ChangedWorkPeriods)}
			out := d.Format(10)
			if sizes != tc.want {
				t.Errorf("diff sizes %v, want %v\n%s", sizes, tc.want, out)
			}
			if d.Equal() != (tc.want == [7]int{}) {
				t.Errorf("Equal() = %v\n%s", d.Equal(), out)
			}
			for _, m := range tc.mention {
				if !strings.Contains(out, m) {
					t.Errorf("Format output lacks %q:\n%s", m, out)
				}
			}
		})
	}
}

func TestFormatLimit(t *testing.T) {
	want := handMadeWithDevices(t)
	out := Compare(&Result{Readings: want.Readings, Late: want.Late, DeadLetters: want.DeadLetters}, want).Format(2)
	if n := strings.Count(out, "missing window:"); n != 2 || !strings.Contains(out, "... 4 more missing windows") {
		t.Errorf("Format(2) listed %d missing windows:\n%s", n, out)
	}
}

// sqlDialect holds the DDL differences of the two SQL stores.
type sqlDialect struct {
	timeType string
	timeArg  func(ms int64) any
}

var (
	sqliteDialect = sqlDialect{"TEXT", func(ms int64) any { return FormatTime(ms) }}
	mysqlDialect  = sqlDialect{"DATETIME(3)", func(ms int64) any { return time.UnixMilli(ms).UTC() }}
)

// store writes r into db in the table layout of eddy's SQL sinks (only the
// columns the oracle reads, plus a counted row per reading, late record and
// dead letter).
func store(t *testing.T, db *sql.DB, d sqlDialect, r *Result) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tt := d.timeType
	exec("CREATE TABLE window_aggregates (pboxid VARCHAR(64) NOT NULL, window_start " + tt + " NOT NULL, window_end " + tt + " NOT NULL," +
		" `count` BIGINT NOT NULL, `sum` DOUBLE NOT NULL, `min` DOUBLE NOT NULL, `max` DOUBLE NOT NULL, `avg` DOUBLE NOT NULL," +
		" latitude DOUBLE NULL, longitude DOUBLE NULL, company VARCHAR(255) NULL, site VARCHAR(255) NULL, PRIMARY KEY (pboxid, window_start))")
	exec("CREATE TABLE work_periods (pboxid VARCHAR(64) NOT NULL, period_start " + tt + " NOT NULL, period_end " + tt + " NOT NULL," +
		" duration_s DOUBLE NOT NULL, samples BIGINT NOT NULL, avg_metric DOUBLE NOT NULL, max_metric DOUBLE NOT NULL," +
		" company VARCHAR(255) NULL, site VARCHAR(255) NULL, PRIMARY KEY (pboxid, period_start))")
	for _, table := range []string{"readings", "late_records"} {
		exec("CREATE TABLE " + table + " (source_partition INT NOT NULL, source_offset BIGINT NOT NULL, PRIMARY KEY (source_partition, source_offset))")
	}
	exec("CREATE TABLE dead_letters (source_partition INT NOT NULL, source_offset BIGINT NOT NULL, reason VARCHAR(255) NOT NULL," +
		" PRIMARY KEY (source_partition, source_offset))")
	null := func(f float64) any {
		if math.IsNaN(f) {
			return nil
		}
		return f
	}
	for _, w := range r.Windows {
		exec("INSERT INTO window_aggregates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", w.PboxID, d.timeArg(w.Start), d.timeArg(w.End),
			w.Count, w.Sum, w.Min, w.Max, w.Avg, null(w.Latitude), null(w.Longitude), w.Company, w.Site)
	}
	for _, p := range r.WorkPeriods {
		exec("INSERT INTO work_periods VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", p.PboxID, d.timeArg(p.Start), d.timeArg(p.End),
			p.DurationS, p.Samples, p.AvgMetric, p.MaxMetric, p.Company, p.Site)
	}
	for _, c := range []struct {
		table string
		n     int64
	}{{"readings", r.Readings}, {"late_records", r.Late}, {"dead_letters", r.DeadLetters}} {
		for i := range c.n {
			if c.table == "dead_letters" {
				exec("INSERT INTO dead_letters VALUES (0, ?, 'invalid_metric: x')", i)
				continue
			}
			exec("INSERT INTO "+c.table+" VALUES (0, ?)", i)
		}
	}
}

// checkRoundTrip loads db, expects it to match want exactly, then breaks one
// stored row and expects the comparison to name it.
func checkRoundTrip(t *testing.T, db *sql.DB, load func() (*Result, error), want *Result) {
	t.Helper()
	got, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(got, want); !d.Equal() {
		t.Fatalf("stored oracle result does not match itself:\n%s", d.Format(10))
	}
	if _, err := db.Exec("UPDATE work_periods SET max_metric = 61 WHERE pboxid = 'A' AND samples = 2 AND duration_s = 36"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DELETE FROM dead_letters"); err != nil {
		t.Fatal(err)
	}
	if got, err = load(); err != nil {
		t.Fatal(err)
	}
	d := Compare(got, want)
	out := d.Format(10)
	if len(d.ChangedWorkPeriods) != 1 || !strings.Contains(out, "A@2019-03-01 00:00:10.000 max_metric got 61 want 60") ||
		!strings.Contains(out, "count dead_letters: got 0, want 2") {
		t.Errorf("after breaking a row, diff:\n%s", out)
	}
}

func TestLoadSQLite(t *testing.T) {
	want := handMadeWithDevices(t)
	path := filepath.Join(t.TempDir(), "eddy.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store(t, db, sqliteDialect, want)
	checkRoundTrip(t, db, func() (*Result, error) { return LoadSQLite(context.Background(), path) }, want)
}

func TestLoadMySQL(t *testing.T) {
	dsn := mariadbtest.DSN(t)
	want := handMadeWithDevices(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store(t, db, mysqlDialect, want)
	// LoadMySQL forces parseTime and UTC: give it the bare DSN.
	checkRoundTrip(t, db, func() (*Result, error) { return LoadMySQL(context.Background(), dsn) }, want)
}

func TestSQLTime(t *testing.T) {
	for _, in := range []any{"2019-03-01 00:00:08.250", "2019-03-01T00:00:08.25", []byte("2019-03-01 00:00:08.250"),
		"2019-03-01T00:00:08.250Z", time.UnixMilli(sec(8) + 250), sec(8) + 250} {
		got, err := sqlTime(in)
		if err != nil || got != sec(8)+250 {
			t.Errorf("sqlTime(%v) = %d, %v; want %d", in, got, err, sec(8)+250)
		}
	}
	if _, err := sqlTime(nil); err == nil {
		t.Error("sqlTime(nil) succeeded")
	}
}
