package sinks

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go"

	"github.com/eddy-iot/eddy/tests/chtest"
)

func TestParseClickHouseURL(t *testing.T) {
	for _, tc := range []struct {
		url, addr, user, pass, db, str string
	}{
		{"clickhouse://127.0.0.1/eddy", "127.0.0.1:9000", "default", "", "eddy", "clickhouse://default@127.0.0.1:9000/eddy"},
		{"clickhouse://u:p%40ss@db.example:19000/e?compress=true", "db.example:19000", "u", "p@ss", "e", "clickhouse://u:xxxxx@db.example:19000/e?compress=true"},
		{"clickhouse://[::1]/eddy", "[::1]:9000", "default", "", "eddy", "clickhouse://default@[::1]:9000/eddy"},
	} {
		c, err := ParseClickHouseURL(tc.url)
		if err != nil {
			t.Errorf("ParseClickHouseURL(%q): %v", tc.url, err)
			continue
		}
		if c.Addr != tc.addr || c.User != tc.user || c.Password != tc.pass || c.Database != tc.db {
			t.Errorf("ParseClickHouseURL(%q) = %s %s %q %s, want %s %s %q %s", tc.url, c.Addr, c.User, c.Password, c.Database, tc.addr, tc.user, tc.pass, tc.db)
		}
		if got := c.String(); got != tc.str {
			t.Errorf("ParseClickHouseURL(%q).String() = %q, want %q", tc.url, got, tc.str)
		}
		// The driver's DSN carries every option with its default, the
		// given ones overriding.
		q, err := url.ParseQuery(strings.SplitN(c.driverDSN(c.Database), "?", 2)[1])
		if err != nil {
			t.Fatal(err)
		}
		if q.Get("password") != tc.pass || q.Get("database") != tc.db || q.Get("username") != tc.user || q.Get("read_timeout") != "60" {
			t.Errorf("driverDSN of %q: %v", tc.url, q)
		}
		if want := map[bool]string{true: "true", false: "false"}[strings.Contains(tc.url, "compress=true")]; q.Get("compress") != want {
			t.Errorf("driverDSN of %q: compress=%q, want %q", tc.url, q.Get("compress"), want)
		}
	}
}

func TestClickHouseRowError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&clickhouse.Exception{Code: 395, Name: "DB::Exception"}, true}, // throwIf
		{fmt.Errorf("readings: %w", &clickhouse.Exception{Code: 469}), true},
		{&clickhouse.Exception{Code: 241}, false}, // MEMORY_LIMIT_EXCEEDED: retried
		{&clickhouse.Exception{Code: 60}, false},  // UNKNOWN_TABLE: retried
		{errors.New("read tcp: i/o timeout"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := chRowError(tc.err); got != tc.want {
			t.Errorf("chRowError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// chServer returns the URL of a fresh database and the server's address.
func chServer(t *testing.T) (string, *url.URL) {
	t.Helper()
	raw := chtest.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, u
}

func TestClickHouseOpenErrorsHidePassword(t *testing.T) {
	_, u := chServer(t)
	for _, bad := range []string{
		fmt.Sprintf("clickhouse://eddy:s3cret-pw@%s/eddy", u.Host), // wrong password
		"clickhouse://eddy:s3cret-pw@127.0.0.1:1/eddy?timeout=1",   // nothing listens
	} {
		s, err := NewClickHouse(bad, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Open(context.Background())
		if err == nil {
			t.Fatalf("Open(%s) succeeded", secretFree(bad))
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("Open error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), "eddy:xxxxx@") {
			t.Errorf("Open error does not name the (redacted) URL: %v", err)
		}
		s.Close()
	}
}

func secretFree(u string) string { return strings.ReplaceAll(u, "s3cret-pw", "xxxxx") }

func TestClickHouseCreatesDatabase(t *testing.T) {
	_, u := chServer(t)
	name := strings.TrimPrefix(u.Path, "/") + "_new"
	nu := *u
	nu.Path = "/" + name
	t.Cleanup(func() {
		if err := chtest.Exec(context.Background(), u.String(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Error(err)
		}
	})
	s, err := NewClickHouse(nu.String(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, sampleBatch())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := chtest.Open(nu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := readBack.ClickHouse(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffBatch(sorted(sampleBatch()), got); d != "" {
		t.Fatal(d)
	}
}

func TestClickHouseRejectsForeignTable(t *testing.T) {
	raw, _ := chServer(t)
	if err := chtest.Exec(context.Background(), raw, "CREATE TABLE window_aggregates (pboxid String, window_start Int64) ENGINE = MergeTree ORDER BY pboxid"); err != nil {
		t.Fatal(err)
	}
	s, err := NewClickHouse(raw, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "table window_aggregates exists but is MergeTree") || !strings.Contains(err.Error(), "not ReplacingMergeTree(epoch)") {
		t.Fatalf("Open on a foreign window_aggregates: %v, want it refused", err)
	}
}

// TestClickHouseMergeKeepsNewestEpoch: three sinks (three processes, as it
// were: no sink knows the others' epochs) write the same keys — the owner at
// epoch 2, the owner's replay at epoch 2 with new values, then a zombie at
// epoch 1.
// The store holds every row until it merges; FINAL shows the epoch-2 rows,
// and a merge (OPTIMIZE ... FINAL) leaves exactly those.
func TestClickHouseMergeKeepsNewestEpoch(t *testing.T) {
	raw, _ := chServer(t)
	db, err := chtest.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	write := func(epoch uint64, v int) {
		s, err := NewClickHouse(raw, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		mustWriteEpoch(t, s, 0, epoch, fenceRows(v, 1, 2, 3))
		mustFlush(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(2, 20)
	write(2, 21) // the owner replays with new values: equal epochs replace
	write(1, 10) // the zombie, last
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	stored := func() *Batch {
		t.Helper()
		b, err := readBack.ClickHouse(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want, _ := storedRows(fenceRows(21, 1, 2, 3))
	if d := diffBatch(sorted(want), stored()); d != "" {
		t.Fatalf("FINAL before the merge: %s", d)
	}
	if n := count("SELECT count() FROM work_periods"); n != 9 {
		t.Errorf("work_periods holds %d rows before the merge, want 9 (3 writes of 3 keys)", n)
	}
	for _, td := range tableDefs {
		if _, err := db.Exec("OPTIMIZE TABLE " + td.name + " FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	if n := count("SELECT count() FROM work_periods"); n != 3 {
		t.Errorf("work_periods holds %d rows after the merge, want 3", n)
	}
	if n := count("SELECT count() FROM work_periods WHERE epoch = 2 AND samples = 21"); n != 3 {
		t.Errorf("work_periods has %d rows of the owner's replay after the merge, want 3", n)
	}
	if d := diffBatch(sorted(want), stored()); d != "" {
		t.Fatalf("after the merge: %s", d)
	}
}
