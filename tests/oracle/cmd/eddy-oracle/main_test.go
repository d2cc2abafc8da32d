package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte("id;ts;v\nA;2019-03-01T00:00:10;60\nA;2019-03-01T00:00:20;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A sink with the right tables holding the expected counts but no
	// window and no work period: a mismatch.
	dbPath := filepath.Join(dir, "eddy.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE window_aggregates (pboxid TEXT, window_start TEXT, window_end TEXT, `count` INTEGER, `sum` REAL, `min` REAL, `max` REAL, `avg` REAL, latitude REAL, longitude REAL, company TEXT, site TEXT)",
		"CREATE TABLE work_periods (pboxid TEXT, period_start TEXT, period_end TEXT, duration_s REAL, samples INTEGER, avg_metric REAL, max_metric REAL, company TEXT, site TEXT)",
		"CREATE TABLE readings (x INTEGER)", "CREATE TABLE late_records (x INTEGER)", "CREATE TABLE dead_letters (source_partition INTEGER, source_offset INTEGER, reason TEXT)",
		"INSERT INTO readings VALUES (1)", "INSERT INTO dead_letters VALUES (4, 1, 'invalid_metric: \"\"')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	base := []string{"--data", data, "--delimiter", ";", "--map", "pboxid=id,event_time=ts,metric=v"}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"summary only", base, 0},
		{"mismatch", append(base, "--sqlite", dbPath), 1},
		{"no data", []string{"--delimiter", ";"}, 2},
		{"bad mapping", []string{"--data", data, "--map", "colour=x"}, 2},
		{"missing column", []string{"--data", data}, 2},
	} {
		if code := run(tc.args); code != tc.code {
			t.Errorf("%s: exit %d, want %d", tc.name, code, tc.code)
		}
	}
	// After adding the expected rows the sink matches.
	db, _ = sql.Open("sqlite", dbPath)
	defer db.Close()
	for _, q := range []string{
		"INSERT INTO window_aggregates VALUES ('A', '2019-03-01 00:00:00.000', '2019-03-01 00:01:00.000', 1, 60, 60, 60, 60, NULL, NULL, NULL, NULL)",
		"INSERT INTO work_periods VALUES ('A', '2019-03-01 00:00:10.000', '2019-03-01 00:00:10.000', 0, 1, 60, 60, '', '')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if code := run(append(base, "--sqlite", dbPath)); code != 0 {
		t.Errorf("matching sink: exit %d, want 0", code)
	}
}
