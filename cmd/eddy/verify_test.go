package main

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/eddy-iot/eddy/operators"
)

// TestVerify runs eddy verify against a SQLite sink that first lacks the
// window and the work period the oracle computes (a mismatch), then has
// them (a match).
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte("id;ts;v\nA;2019-03-01T00:00:10;60\nA;2019-03-01T00:00:20;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "eddy.db")
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte("name: t\nsource:\n  brokers: [\"127.0.0.1:9092\"]\n  bounded: true\nsink: \"sqlite:"+dbPath+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(qs ...string) {
		for _, q := range qs {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	}
	exec("CREATE TABLE window_aggregates (pboxid TEXT, window_start TEXT, window_end TEXT, `count` INTEGER, `sum` REAL, `min` REAL, `max` REAL, `avg` REAL, latitude REAL, longitude REAL, company TEXT, site TEXT)",
		"CREATE TABLE work_periods (pboxid TEXT, period_start TEXT, period_end TEXT, duration_s REAL, samples INTEGER, avg_metric REAL, max_metric REAL, company TEXT, site TEXT)",
		"CREATE TABLE readings (x INTEGER)", "CREATE TABLE late_records (x INTEGER)", "CREATE TABLE dead_letters (source_partition INTEGER, source_offset INTEGER, reason TEXT)",
		"INSERT INTO readings VALUES (1)", "INSERT INTO dead_letters VALUES (4, 1, 'invalid_metric: \"\"')")
	f := verifyFlags{job: job, data: data, delimiter: ";", mapping: "pboxid=id,event_time=ts,metric=v", limit: -1, maxDiffs: 5}
	if err := runVerify(context.Background(), &f, io.Discard); !errors.Is(err, errMismatch) {
		t.Fatalf("sink without the window and work period: %v, want errMismatch", err)
	}
	bad := f
	bad.mapping = "colour=x"
	if err := runVerify(context.Background(), &bad, io.Discard); err == nil || errors.Is(err, errMismatch) {
		t.Fatalf("bad mapping: %v, want a usage error", err)
	}
	exec("INSERT INTO window_aggregates VALUES ('A', '2019-03-01 00:00:00.000', '2019-03-01 00:01:00.000', 1, 60, 60, 60, 60, NULL, NULL, NULL, NULL)",
		"INSERT INTO work_periods VALUES ('A', '2019-03-01 00:00:10.000', '2019-03-01 00:00:10.000', 0, 1, 60, 60, '', '')")
	if err := runVerify(context.Background(), &f, io.Discard); err != nil {
		t.Fatalf("matching sink: %v", err)
	}
}

// TestShippedDevicesFileLoads checks that deploy/devices.yaml, which the
// README imports with eddy ctl devices import, is accepted by that command's
// parser too.
func TestShippedDevicesFileLoads(t *testing.T) {
	b, err := os.ReadFile("../../deploy/devices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := operators.LoadDevices(b)
	if err != nil || len(d) != 5 {
		t.Fatalf("LoadDevices: %d devices, %v; want 5, nil", len(d), err)
	}
}
