package sinks

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

// mysqlStore is a fresh MariaDB database with a reader and a sink factory
// whose sinks believe today is `today`.
type mysqlStore struct {
	dsn string
	db  *sql.DB
}

func newMySQLStore(t *testing.T) *mysqlStore {
	dsn := mariadbtest.DSN(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &mysqlStore{dsn: dsn, db: db}
}

func (ms *mysqlStore) sink(t *testing.T, cfg Config, today string, reg prometheus.Registerer) *MySQL {
	t.Helper()
	s, err := NewMySQL(ms.dsn, cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	now, err := time.Parse("2006-01-02 15:04", today+" 13:45")
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now }
	t.Cleanup(func() { s.Close() })
	return s
}

// partitions lists the partitions of readings as "name<upper" (upper as
// MySQL prints it, quotes removed).
func (ms *mysqlStore) partitions(t *testing.T) []string {
	t.Helper()
	rows, err := ms.db.Query(`SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'readings' ORDER BY PARTITION_ORDINAL_POSITION`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, desc string
		if err := rows.Scan(&name, &desc); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+"<"+strings.Trim(desc, "'"))
	}
	return out
}

func (ms *mysqlStore) rowsIn(t *testing.T, partition string) int {
	t.Helper()
	var n int
	if err := ms.db.QueryRow("SELECT COUNT(*) FROM readings PARTITION (`" + partition + "`)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// dailyFrom lists "pYYYYMMDD<next day" for n days from the date first.
func dailyFrom(first string, n int) []string {
	var out []string
	d := day(first)
	for i := range n {
		out = append(out, partName(d+int64(i), d+int64(i)+1)+"<"+dayString(d+int64(i)+1))
	}
	return out
}

func readingsAt(first int64, times ...string) []operators.Reading {
	var rs []operators.Reading
	for i, tm := range times {
		rs = append(rs, operators.Reading{Partition: 0, Offset: first + int64(i), PboxID: "d", EventTime: ms(tm), Metric: 1, Latitude: nan, Longitude: nan})
	}
	return rs
}

func TestMySQLDailyPartitions(t *testing.T) {
	st := newMySQLStore(t)
	ctx := context.Background()
	s := st.sink(t, Config{}, "2026-03-10", nil)
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	want := slices.Concat([]string{"p_past<2026-03-10"}, dailyFrom("2026-03-10", 8), []string{"p_future<MAXVALUE"})
	if got := st.partitions(t); !slices.Equal(got, want) {
		t.Fatalf("partitions after Open:\n got %v\nwant %v", got, want)
	}

	// A replay of old data: its days are split out of p_past.
	mustWrite(t, s, &Batch{Readings: readingsAt(0, "2019-03-01 00:00:00.000", "2019-03-01 23:59:59.999", "2019-03-03 12:00:00.000")})
	mustFlush(t, s)
	want = slices.Concat([]string{"p_past<2019-03-01"}, dailyFrom("2019-03-01", 10),
		[]string{"p20190311<2026-03-10"}, dailyFrom("2026-03-10", 8), []string{"p_future<MAXVALUE"})
	if got := st.partitions(t); !slices.Equal(got, want) {
		t.Fatalf("partitions after writing 2019-03-01 and 03-03:\n got %v\nwant %v", got, want)
	}
	for p, n := range map[string]int{"p_past": 0, "p20190301": 2, "p20190302": 0, "p20190303": 1, "p20190311": 0} {
		if got := st.rowsIn(t, p); got != n {
			t.Errorf("partition %s holds %d rows, want %d", p, got, n)
		}
	}

	// Data beyond the last daily partition: p_future is split.
	mustWrite(t, s, &Batch{Readings: readingsAt(10, "2030-01-01 08:00:00.000")})
	mustFlush(t, s)
	got := st.partitions(t)
	wantTail := slices.Concat([]string{"p20260318<2030-01-01"}, dailyFrom("2030-01-01", 8), []string{"p_future<MAXVALUE"})
	if !slices.Equal(got[len(got)-len(wantTail):], wantTail) {
		t.Fatalf("partitions after writing 2030-01-01 end with\n %v\nwant\n %v", got[len(got)-len(wantTail):], wantTail)
	}
	if n := st.rowsIn(t, "p20300101"); n != 1 {
		t.Errorf("p20300101 holds %d rows, want 1", n)
	}

	// Reopening changes nothing; a later "today" adds the new days ahead.
	before := st.partitions(t)
	s2 := st.sink(t, Config{}, "2026-03-10", nil)
	if err := s2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.partitions(t); !slices.Equal(got, before) {
		t.Fatalf("reopen changed partitions:\n got %v\nwant %v", got, before)
	}
	s3 := st.sink(t, Config{}, "2026-03-12", nil)
	if err := s3.Open(ctx); err != nil {
		t.Fatal(err)
	}
	got = st.partitions(t)
	for _, p := range dailyFrom("2026-03-12", 8) {
		if !slices.Contains(got, p) {
			t.Errorf("after Open on 2026-03-12: partition %s missing from %v", p, got)
		}
	}
	wantContents(t, &store{db: st.db}, &Batch{Readings: slices.Concat(
		readingsAt(0, "2019-03-01 00:00:00.000", "2019-03-01 23:59:59.999", "2019-03-03 12:00:00.000"),
		readingsAt(10, "2030-01-01 08:00:00.000"))})
}

func TestMySQLMaxPartitions(t *testing.T) {
	st := newMySQLStore(t)
	reg := prometheus.NewRegistry()
	s := st.sink(t, Config{MaxPartitions: 12, PartitionDaysAhead: 1}, "2026-03-10", reg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rs []operators.Reading
	for i := range 40 {
		rs = append(rs, readingsAt(int64(i), dayString(day("2019-03-01")+int64(3*i))+" 10:00:00.000")...)
	}
	// Far ends of the storable range too.
	rs = append(rs, readingsAt(100, "9999-12-31 23:59:59.999", "1000-01-01 00:00:00.000")...)
	mustWrite(t, s, &Batch{Readings: rs})
	mustFlush(t, s)
	if got := st.partitions(t); len(got) > 12 {
		t.Errorf("%d partitions, MaxPartitions 12: %v", len(got), got)
	}
	wantContents(t, &store{db: st.db}, &Batch{Readings: rs})
	if n := gatherCounter(t, reg, "eddy_sink_partition_errors_total"); n != 0 {
		t.Errorf("eddy_sink_partition_errors_total = %v, want 0", n)
	}
}

func gatherCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestMySQLConcurrentSinksSplitPartitions has two sinks (two nodes) write
// readings of the same new days at the same time: both must succeed.
func TestMySQLConcurrentSinksSplitPartitions(t *testing.T) {
	st := newMySQLStore(t)
	a := st.sink(t, Config{}, "2026-03-10", nil)
	b := st.sink(t, Config{}, "2026-03-10", nil)
	for _, s := range []*MySQL{a, b} {
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var all []operators.Reading
	errs := make([]error, 2)
	for i, s := range []*MySQL{a, b} {
		var rs []operators.Reading
		for d := range 10 {
			r := readingsAt(int64(i*100+d), dayString(day("2019-04-01")+int64(2*d))+" 00:00:00.000")
			r[0].Partition = int32(i)
			rs = append(rs, r...)
		}
		all = append(all, rs...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range rs {
				if err := s.Write(context.Background(), &Batch{Readings: []operators.Reading{r}}); err != nil {
					errs[i] = err
					return
				}
				if errs[i] = s.Flush(context.Background()); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantContents(t, &store{db: st.db}, &Batch{Readings: all})
	got := st.partitions(t)
	for _, p := range dailyFrom("2019-04-01", 26) {
		if !slices.Contains(got, p) {
			t.Errorf("partition %s missing", p)
		}
	}
}

func TestMySQLRejectsForeignReadingsTable(t *testing.T) {
	for _, tc := range []struct {
		name, ddl, want string
	}{
		{"not partitioned", "CREATE TABLE readings (event_time DATETIME(3) NOT NULL PRIMARY KEY)", "not PARTITION BY RANGE COLUMNS(event_time)"},
		{"no MAXVALUE", "CREATE TABLE readings (event_time DATETIME(3) NOT NULL PRIMARY KEY) PARTITION BY RANGE COLUMNS(event_time) (PARTITION p0 VALUES LESS THAN ('2020-01-01'))", "no MAXVALUE partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMySQLStore(t)
			if _, err := st.db.Exec(tc.ddl); err != nil {
				t.Fatal(err)
			}
			err := st.sink(t, Config{}, "2026-03-10", nil).Open(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMySQLCreatesDatabase(t *testing.T) {
	st := newMySQLStore(t)
	cfg, err := mysql.ParseDSN(st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName += "_new"
	t.Cleanup(func() { st.db.Exec("DROP DATABASE IF EXISTS `" + cfg.DBName + "`") })
	s, err := NewMySQL(cfg.FormatDSN(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open on a missing database: %v", err)
	}
	var n int
	if err := st.db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", cfg.DBName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 7 { // five tables, rejected_rows and the view
		t.Fatalf("database %s has %d tables and views, want 7", cfg.DBName, n)
	}
}

func TestMySQLMaxAllowedPacketCheck(t *testing.T) {
	st := newMySQLStore(t)
	var packet int
	if err := st.db.QueryRow("SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	if packet >= 2*MaxPayloadLimit+1<<20 {
		t.Skipf("max_allowed_packet %d is large enough for any payload", packet)
	}
	err := st.sink(t, Config{MaxPayloadBytes: MaxPayloadLimit}, "2026-03-10", nil).Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("Open with MaxPayloadBytes=%d: %v, want an error naming max_allowed_packet", MaxPayloadLimit, err)
	}
}

func TestNormalizeMySQLDSN(t *testing.T) {
	for _, tc := range []struct {
		in          string
		ok          bool
		interpolate bool
	}{
		{"root@tcp(127.0.0.1:3306)/eddy", true, true},
		{"u:p@tcp(db:3306)/eddy?parseTime=false&loc=Local", true, true},
		{"u:p@tcp(db:3306)/eddy?interpolateParams=false&lock_wait_timeout=5", true, false},
		{"u:p@unix(/run/mysqld/mysqld.sock)/eddy", true, true},
		{"u:p@tcp(db:3306)/", false, false},
		{"not a dsn", false, false},
	} {
		c, err := NormalizeMySQLDSN(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if !c.ParseTime || c.Loc != time.UTC || c.InterpolateParams != tc.interpolate {
			t.Errorf("%q: parseTime=%v loc=%v interpolateParams=%v, want true UTC %v", tc.in, c.ParseTime, c.Loc, c.InterpolateParams, tc.interpolate)
		}
		wantWait := "30"
		if strings.Contains(tc.in, "lock_wait_timeout=5") {
			wantWait = "5"
		}
		if got := c.Params["lock_wait_timeout"]; got != wantWait {
			t.Errorf("%q: lock_wait_timeout=%q, want %q", tc.in, got, wantWait)
		}
	}
}

// TestReadAllWithParseTime reads through the sink's own DSN (parseTime,
// loc=UTC), where times arrive as time.Time.
func TestReadAllWithParseTime(t *testing.T) {
	st := newMySQLStore(t)
	s := st.sink(t, Config{}, "2026-03-10", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, sampleBatch())
	mustFlush(t, s)
	c, err := NormalizeMySQLDSN(st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wantContents(t, &store{db: db}, sampleBatch())
	var lwt int
	if err := db.QueryRow("SELECT @@SESSION.lock_wait_timeout").Scan(&lwt); err != nil || lwt != 30 {
		t.Errorf("session lock_wait_timeout = %d (%v), want 30", lwt, err)
	}
}

// TestMySQLBisectTypeErrors narrows columns under the sink, as a DBA
// might, so that MariaDB itself refuses some values (1406 data too long,
// 1264 out of range in strict mode): the refused rows become rejections,
// every other row is written, and a broken table (1146) is no row error:
// the flush fails and keeps the rows.
func TestMySQLBisectTypeErrors(t *testing.T) {
	st := newMySQLStore(t)
	s := st.sink(t, Config{}, "2026-03-10", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ALTER TABLE readings MODIFY site VARCHAR(4) NOT NULL DEFAULT ''",
		"ALTER TABLE window_aggregates MODIFY `count` SMALLINT NOT NULL",
	} {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rs := readingsAt(0, "2019-03-01 00:00:00.000", "2019-03-01 00:01:00.000", "2019-03-01 00:02:00.000")
	rs[1].Site = "too long for four"
	t0 := ms("2019-03-01 00:00:00.000")
	ws := []operators.WindowAggregate{
		{PboxID: "d", Start: t0, End: t0 + 60_000, Count: 7, Latitude: nan, Longitude: nan},
		{PboxID: "d", Start: t0 + 60_000, End: t0 + 120_000, Count: 100_000, Latitude: nan, Longitude: nan},
	}
	mustWriteEpoch(t, s, 0, 1, &Batch{Readings: rs, Windows: ws})
	mustFlush(t, s)
	got, err := readBack.SQL(context.Background(), st.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Readings) != 2 || got.Readings[0].Offset != 0 || got.Readings[1].Offset != 2 || len(got.Windows) != 1 || got.Windows[0].Count != 7 {
		t.Fatalf("stored readings %+v windows %+v; want offsets 0 and 2 and the window of count 7", got.Readings, got.Windows)
	}
	if len(got.DeadLetters) != 1 || got.DeadLetters[0].Offset != 1 || !strings.Contains(got.DeadLetters[0].Reason, "Error 1406") {
		t.Errorf("dead letters %+v, want the reading at offset 1 with error 1406", got.DeadLetters)
	}
	var reason string
	if err := st.db.QueryRow("SELECT reason FROM rejected_rows WHERE source_table = 'window_aggregates' AND start_ms = ?", t0+60_000).Scan(&reason); err != nil || !strings.Contains(reason, "Error 1264") {
		t.Errorf("rejected window: reason %q (%v), want error 1264", reason, err)
	}

	if _, err := st.db.Exec("DROP TABLE window_aggregates"); err != nil {
		t.Fatal(err)
	}
	mustWriteEpoch(t, s, 0, 1, &Batch{Windows: ws[:1]})
	if err := s.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "kept for retry") {
		t.Fatalf("Flush with a missing table: %v, want a kept-for-retry error", err)
	}
	if n := s.e.nrows; n != 1 {
		t.Errorf("%d rows buffered after the failed flush, want 1", n)
	}
}
