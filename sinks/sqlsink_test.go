package sinks

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/chtest"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
	"github.com/eddy-iot/eddy/tests/pgtest"
	"github.com/eddy-iot/eddy/tests/seed"
)

// store is one SQL store under test: it makes sinks on it and reads it.
type store struct {
	kind string
	// newSink makes a new, unopened sink on the same store.
	newSink func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink
	// db reads the store directly.
	db *sql.DB
	// parallel: the sinks flush over several connections (Config.Conns),
	// so a failed flush may commit the rows of some tables.
	parallel bool
}

// open makes a new sink on the store and opens it; it is closed when t
// ends.
func (st *store) open(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
	t.Helper()
	s := st.newSink(t, cfg, reg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// forEachStore runs fn against a fresh SQLite file, a fresh PostgreSQL
// database and fresh MariaDB databases: the same behavioural suite for
// every dialect, and for MySQL sinks that flush over one connection (the
// default) and over four. Queries of the tests are written for MySQL and
// SQLite (backticks, ?) and go through st.q.
func forEachStore(t *testing.T, fn func(t *testing.T, st *store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "eddy.db")
		db, err := sql.Open("sqlite", SQLiteDSN(path))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, &store{
			kind: "sqlite",
			newSink: func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
				s, err := NewSQLite(path, cfg, reg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			db: db,
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.URL(t)
		// No statement cache: tests change the schema under the reader.
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		db, err := sql.Open("pgx", url+sep+"default_query_exec_mode=exec")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, &store{
			kind: "postgres",
			newSink: func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
				s, err := NewPostgres(url, cfg, reg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			db: db,
		})
	})
	t.Run("clickhouse", func(t *testing.T) {
		url := chtest.URL(t)
		db, err := chtest.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, &store{
			kind: "clickhouse",
			newSink: func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
				s, err := NewClickHouse(url, cfg, reg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			db: db,
		})
	})
	for _, conns := range []int{0, 4} {
		name := "mysql"
		if conns > 0 {
			name = fmt.Sprintf("mysql/conns=%d", conns)
		}
		t.Run(name, func(t *testing.T) {
			dsn := mariadbtest.DSN(t)
			db, err := sql.Open("mysql", dsn) // no parseTime: sinktest.ReadAll must cope
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			fn(t, &store{
				kind: "mysql",
				newSink: func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
					if cfg.Conns == 0 {
						cfg.Conns = conns
					}
					s, err := NewMySQL(dsn, cfg, reg)
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
				db:       db,
				parallel: conns > 1,
			})
		})
	}
}

// openSink makes and opens a sink on st, closed at the end of the test.
func (st *store) openSink(t testing.TB, cfg Config) Sink {
	t.Helper()
	s := st.newSink(t, cfg, nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (st *store) readAll(t testing.TB) *Batch {
	t.Helper()
	read := readBack.SQL
	if st.kind == "clickhouse" {
		read = readBack.ClickHouse
	}
	b, err := read(context.Background(), st.db)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// q returns a test query in the store's dialect: for PostgreSQL,
// backticks become double quotes and the placeholders ? become $1, $2 ...
func (st *store) q(q string) string {
	if st.kind == "clickhouse" {
		return chQuery(q)
	}
	if st.kind != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		switch c {
		case '`':
			b.WriteByte('"')
		case '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// chTable and chTimeLit match a table after FROM and a time literal in a
// test query.
var (
	chTable   = regexp.MustCompile("\\bFROM (readings|window_aggregates|work_periods|late_records|dead_letters|rejected_rows)\\b")
	chTimeLit = regexp.MustCompile(`'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}'`)
)

// chQuery is a test query for ClickHouse: every table is read with FINAL
// (one row per key, as sinktest.ReadClickHouse reads), and time literals become the
// Unix ms the Int64 time columns hold.
func chQuery(q string) string {
	q = chTable.ReplaceAllString(q, "FROM $1 FINAL")
	return chTimeLit.ReplaceAllStringFunc(q, func(lit string) string { return strconv.FormatInt(ms(lit[1:len(lit)-1]), 10) })
}

// exec runs a statement written for MySQL and SQLite (see q).
func (st *store) exec(q string, args ...any) (sql.Result, error) {
	return st.db.Exec(st.q(q), args...)
}

func (st *store) count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := st.db.QueryRow(st.q(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func mustWrite(t testing.TB, s Sink, b *Batch) {
	t.Helper()
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func mustFlush(t testing.TB, s Sink) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// ms parses a UTC time "2006-01-02 15:04:05.000" to Unix ms.
func ms(s string) int64 {
	tm, err := time.Parse("2006-01-02 15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return tm.UnixMilli()
}

var nan = math.NaN()

// sampleBatch has every table, NULL coordinates, times with ms, times at
// the ends of the storable range, reserved column names, odd strings and
// payloads that are not UTF-8.
func sampleBatch() *Batch {
	return &Batch{
		Readings: []operators.Reading{
			{Partition: 0, Offset: 7, PboxID: "17079", EventTime: ms("2019-03-01 00:00:08.123"), Metric: 11.87, Latitude: 57.106, Longitude: -2.088, Company: "Acme", Site: "Dyce"},
			{Partition: 0, Offset: 8, PboxID: "17079", EventTime: ms("2019-03-01 00:02:38.999"), Metric: math.Nextafter(0.3, 1), Latitude: nan, Longitude: nan},
			{Partition: 1, Offset: 0, PboxID: "ümlaut-😀", EventTime: ms("1969-12-31 23:59:59.001"), Metric: -1e300, Latitude: -90, Longitude: 180, Company: "O'Brien \"quoted\" \\ back", Site: "line\nbreak"},
			{Partition: 2, Offset: 1 << 40, PboxID: "x", EventTime: ms("1000-01-01 00:00:00.000"), Metric: 5e-324, Latitude: 0, Longitude: nan},
			{Partition: 2, Offset: 1<<40 + 1, PboxID: "x", EventTime: ms("9999-12-31 23:59:59.999"), Metric: math.MaxFloat64, Latitude: nan, Longitude: 0},
		},
		Windows: []operators.WindowAggregate{
			{PboxID: "17079", Start: ms("2019-03-01 00:00:00.000"), End: ms("2019-03-01 00:01:00.000"), Count: 2, Sum: 23.5, Min: 11.5, Max: 12, Avg: 11.75, Latitude: 57.106, Longitude: -2.088, Company: "Acme", Site: "Dyce"},
			{PboxID: "17080", Start: ms("2019-03-01 00:00:00.000"), End: ms("2019-03-01 00:01:00.000"), Count: 1, Sum: 3, Min: 3, Max: 3, Avg: 3, Latitude: nan, Longitude: nan},
		},
		WorkPeriods: []operators.WorkPeriod{
			{PboxID: "17079", Start: ms("2019-03-01 10:00:00.500"), End: ms("2019-03-01 10:30:00.000"), Samples: 13, AvgMetric: 61.2, MaxMetric: 80.5, Company: "Acme", Site: "Dyce"},
			{PboxID: "17079", Start: ms("2019-03-01 23:59:00.000"), End: ms("2019-03-02 00:09:00.000"), Samples: 5, AvgMetric: 55, MaxMetric: 60},
			{PboxID: "17080", Start: ms("2019-03-02 08:00:00.000"), End: ms("2019-03-02 08:00:00.000"), Samples: 1, AvgMetric: 51, MaxMetric: 51},
		},
		Late: []operators.LateRecord{
			{Partition: 0, Offset: 99, PboxID: "17079", EventTime: ms("2019-03-01 00:00:01.000"), Watermark: ms("2019-03-01 01:00:00.250"), Reason: "late", Payload: []byte(`{"event_time":"2019-03-01 00:00:01","metric":1,"pboxid":"17079"}`)},
		},
		DeadLetters: []operators.DeadLetter{
			{Partition: 0, Offset: 100, Reason: "bad json: unexpected end", Payload: []byte("{\"metric\":")},
			{Partition: 0, Offset: 101, Reason: "not utf-8", Payload: []byte{0xff, 0xfe, 0x00, '\'', '\\', 0x1a, 0x80}},
			{Partition: 1, Offset: 0, Reason: "empty", Payload: []byte{}},
		},
	}
}

// sorted returns a copy of b with each table in sinktest.ReadAll's key order.
func sorted(b *Batch) *Batch {
	c := &Batch{
		Readings:    slices.Clone(b.Readings),
		Windows:     slices.Clone(b.Windows),
		WorkPeriods: slices.Clone(b.WorkPeriods),
		Late:        slices.Clone(b.Late),
		DeadLetters: slices.Clone(b.DeadLetters),
	}
	slices.SortStableFunc(c.Readings, func(x, y operators.Reading) int {
		return cmpKeys(int64(x.Partition), int64(y.Partition), x.Offset, y.Offset)
	})
	slices.SortStableFunc(c.Windows, func(x, y operators.WindowAggregate) int {
		if c := strings.Compare(x.PboxID, y.PboxID); c != 0 {
			return c
		}
		return cmpKeys(x.Start, y.Start, 0, 0)
	})
	slices.SortStableFunc(c.WorkPeriods, func(x, y operators.WorkPeriod) int {
		if c := strings.Compare(x.PboxID, y.PboxID); c != 0 {
			return c
		}
		return cmpKeys(x.Start, y.Start, 0, 0)
	})
	slices.SortStableFunc(c.Late, func(x, y operators.LateRecord) int {
		return cmpKeys(int64(x.Partition), int64(y.Partition), x.Offset, y.Offset)
	})
	slices.SortStableFunc(c.DeadLetters, func(x, y operators.DeadLetter) int {
		return cmpKeys(int64(x.Partition), int64(y.Partition), x.Offset, y.Offset)
	})
	for i := range c.DeadLetters {
		if c.DeadLetters[i].Payload == nil {
			c.DeadLetters[i].Payload = []byte{}
		}
	}
	return c
}

func cmpKeys(a1, b1, a2, b2 int64) int {
	switch {
	case a1 != b1:
		return cmpInt(a1, b1)
	default:
		return cmpInt(a2, b2)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func feq(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

// diffBatch describes the first difference between want and got (NaN
// equals NaN), or returns "".
func diffBatch(want, got *Batch) string {
	if len(want.Readings) != len(got.Readings) {
		return fmt.Sprintf("readings: %d rows, want %d", len(got.Readings), len(want.Readings))
	}
	for i, w := range want.Readings {
		g := got.Readings[i]
		if w.Partition != g.Partition || w.Offset != g.Offset || w.PboxID != g.PboxID || w.EventTime != g.EventTime ||
			!feq(w.Metric, g.Metric) || !feq(w.Latitude, g.Latitude) || !feq(w.Longitude, g.Longitude) || w.Company != g.Company || w.Site != g.Site {
			return fmt.Sprintf("readings[%d]:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if len(want.Windows) != len(got.Windows) {
		return fmt.Sprintf("window_aggregates: %d rows, want %d", len(got.Windows), len(want.Windows))
	}
	for i, w := range want.Windows {
		g := got.Windows[i]
		if w.PboxID != g.PboxID || w.Start != g.Start || w.End != g.End || w.Count != g.Count || !feq(w.Sum, g.Sum) ||
			!feq(w.Min, g.Min) || !feq(w.Max, g.Max) || !feq(w.Avg, g.Avg) || !feq(w.Latitude, g.Latitude) ||
			!feq(w.Longitude, g.Longitude) || w.Company != g.Company || w.Site != g.Site {
			return fmt.Sprintf("window_aggregates[%d]:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if len(want.WorkPeriods) != len(got.WorkPeriods) {
		return fmt.Sprintf("work_periods: %d rows, want %d", len(got.WorkPeriods), len(want.WorkPeriods))
	}
	for i, w := range want.WorkPeriods {
		g := got.WorkPeriods[i]
		if w.PboxID != g.PboxID || w.Start != g.Start || w.End != g.End || w.Samples != g.Samples ||
			!feq(w.AvgMetric, g.AvgMetric) || !feq(w.MaxMetric, g.MaxMetric) || w.Company != g.Company || w.Site != g.Site {
			return fmt.Sprintf("work_periods[%d]:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if len(want.Late) != len(got.Late) {
		return fmt.Sprintf("late_records: %d rows, want %d", len(got.Late), len(want.Late))
	}
	for i, w := range want.Late {
		g := got.Late[i]
		if w.Partition != g.Partition || w.Offset != g.Offset || w.PboxID != g.PboxID || w.EventTime != g.EventTime ||
			w.Watermark != g.Watermark || w.Reason != g.Reason || !bytes.Equal(w.Payload, g.Payload) {
			return fmt.Sprintf("late_records[%d]:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if len(want.DeadLetters) != len(got.DeadLetters) {
		return fmt.Sprintf("dead_letters: %d rows, want %d", len(got.DeadLetters), len(want.DeadLetters))
	}
	for i, w := range want.DeadLetters {
		g := got.DeadLetters[i]
		if w.Partition != g.Partition || w.Offset != g.Offset || w.Reason != g.Reason || !bytes.Equal(w.Payload, g.Payload) {
			return fmt.Sprintf("dead_letters[%d]:\n got %+v (%q)\nwant %+v (%q)", i, g, g.Payload, w, w.Payload)
		}
	}
	return ""
}

func wantContents(t testing.TB, st *store, want *Batch) {
	t.Helper()
	if d := diffBatch(sorted(want), st.readAll(t)); d != "" {
		t.Fatal(d)
	}
}

// columns is the column list of a table or view, in order.
func (st *store) columns(t testing.TB, table string) []string {
	t.Helper()
	rows, err := st.db.Query("SELECT * FROM " + table + " LIMIT 0")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestSchemaCreatedIdempotently(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		for i := range 3 { // a fresh store, then an existing one, twice
			s := st.newSink(t, Config{}, nil)
			if err := s.Open(ctx); err != nil {
				t.Fatalf("Open #%d: %v", i+1, err)
			}
			if err := s.Open(ctx); err != nil {
				t.Fatalf("second Open of the same sink: %v", err)
			}
			mustWrite(t, s, sampleBatch())
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		for _, td := range tableDefs {
			if got, want := st.columns(t, td.name), append(slices.Clone(td.cols), "epoch"); !slices.Equal(got, want) {
				t.Errorf("table %s has columns %v, want %v", td.name, got, want)
			}
		}
		if got, want := st.columns(t, ViewDailyWorkTime), []string{"pboxid", "day", "periods", "seconds"}; !slices.Equal(got, want) {
			t.Errorf("view %s has columns %v, want %v", ViewDailyWorkTime, got, want)
		}
		wantContents(t, st, sampleBatch())
	})
}

func TestRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		mustWrite(t, s, sampleBatch())
		mustFlush(t, s)
		wantContents(t, st, sampleBatch())

		// NULL, not NaN or 0, for absent coordinates.
		if n := st.count(t, "SELECT COUNT(*) FROM readings WHERE latitude IS NULL"); n != 2 {
			t.Errorf("readings with NULL latitude: %d, want 2", n)
		}
		if n := st.count(t, "SELECT COUNT(*) FROM readings WHERE longitude IS NULL"); n != 2 {
			t.Errorf("readings with NULL longitude: %d, want 2", n)
		}
		if n := st.count(t, "SELECT COUNT(*) FROM window_aggregates WHERE latitude IS NULL AND longitude IS NULL"); n != 1 {
			t.Errorf("windows with NULL position: %d, want 1", n)
		}
		// '' for unknown company and site.
		if n := st.count(t, "SELECT COUNT(*) FROM readings WHERE company = '' AND site = ''"); n != 3 {
			t.Errorf("readings with empty company and site: %d, want 3", n)
		}
		// Reserved words as columns can be queried.
		if n := st.count(t, "SELECT SUM(`count`) FROM window_aggregates WHERE `max` >= `min` AND `avg` * `count` = `sum`"); n != 3 {
			t.Errorf("SUM(count) of consistent windows: %d, want 3", n)
		}
		// Times keep their milliseconds and compare as times.
		if n := st.count(t, "SELECT COUNT(*) FROM readings WHERE event_time > '2019-03-01 00:00:08.122' AND event_time < '2019-03-01 00:00:08.124'"); n != 1 {
			t.Errorf("readings within 1 ms of 00:00:08.123: %d, want 1", n)
		}
		// payload_bytes is the payload length.
		if n := st.count(t, "SELECT SUM(payload_bytes) FROM dead_letters"); n != 10+7+0 {
			t.Errorf("SUM(payload_bytes): %d, want 17", n)
		}
	})
}

func TestDailyWorkTimeView(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		mustWrite(t, s, sampleBatch())
		mustFlush(t, s)
		rows, err := st.db.Query("SELECT pboxid, day, periods, seconds FROM daily_work_time ORDER BY pboxid, day")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id, day string
			var periods int
			var seconds float64
			if err := rows.Scan(&id, &day, &periods, &seconds); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s %s %d %g", id, day[:10], periods, seconds))
		}
		want := []string{
			"17079 2019-03-01 2 2399.5", // 1799.5 s + 600 s, by day of period start
			"17080 2019-03-02 1 0",
		}
		if !slices.Equal(got, want) {
			t.Errorf("daily_work_time:\n got %q\nwant %q", got, want)
		}
	})
}

func TestReplayLeavesSameContents(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		mustWrite(t, s, sampleBatch())
		mustFlush(t, s)
		first := st.readAll(t)
		mustWrite(t, s, sampleBatch())
		mustWrite(t, s, sampleBatch()) // twice in one transaction too
		mustFlush(t, s)
		if d := diffBatch(first, st.readAll(t)); d != "" {
			t.Fatalf("after replay: %s", d)
		}
		// A sink on the same store (a recovered node) replays once more.
		s2 := st.openSink(t, Config{})
		mustWrite(t, s2, sampleBatch())
		mustFlush(t, s2)
		if d := diffBatch(first, st.readAll(t)); d != "" {
			t.Fatalf("after replay by a second sink: %s", d)
		}
	})
}

func TestRefiredWindowReplacesRow(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		w := operators.WindowAggregate{PboxID: "d", Start: ms("2019-03-01 00:00:00.000"), End: ms("2019-03-01 00:01:00.000"),
			Count: 1, Sum: 10, Min: 10, Max: 10, Avg: 10, Latitude: nan, Longitude: nan}
		mustWrite(t, s, &Batch{Windows: []operators.WindowAggregate{w}})
		mustFlush(t, s)
		// Fired again with a late reading: same key, new values; and within
		// one batch the later row wins.
		w2 := w
		w2.Count, w2.Sum, w2.Max, w2.Avg, w2.Latitude, w2.Longitude, w2.Company = 2, 30, 20, 15, 57, -2, "Acme"
		w3 := w2
		w3.Count, w3.Sum, w3.Avg = 3, 60, 20
		mustWrite(t, s, &Batch{Windows: []operators.WindowAggregate{w2, w3}})
		mustFlush(t, s)
		wantContents(t, st, &Batch{Windows: []operators.WindowAggregate{w3}})
	})
}

func TestPayloads(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		const limit = 1 << 20
		s := st.openSink(t, Config{MaxPayloadBytes: limit})
		rnd := rand.New(rand.NewPCG(1, 2))
		big := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rnd.UintN(256))
			}
			return b
		}
		exact, huge := big(limit), big(3*limit+5)
		in := &Batch{DeadLetters: []operators.DeadLetter{
			{Partition: 0, Offset: 1, Reason: "exactly the limit", Payload: exact},
			{Partition: 0, Offset: 2, Reason: "over the limit", Payload: huge},
			{Partition: 0, Offset: 3, Reason: "nil payload", Payload: nil},
		}}
		// Several big payloads in one transaction: statements must stay
		// under MySQL's max_allowed_packet.
		for i := range 12 {
			in.DeadLetters = append(in.DeadLetters, operators.DeadLetter{Partition: 1, Offset: int64(i), Reason: "big", Payload: big(limit - i)})
		}
		in.Late = []operators.LateRecord{{Partition: 0, Offset: 1, PboxID: "d", EventTime: ms("2019-03-01 00:00:00.000"),
			Watermark: ms("2019-03-01 00:10:00.000"), Reason: "late", Payload: huge}}
		mustWrite(t, s, in)
		mustFlush(t, s)

		want := sorted(in)
		for i := range want.DeadLetters {
			if len(want.DeadLetters[i].Payload) > limit {
				want.DeadLetters[i].Payload = want.DeadLetters[i].Payload[:limit]
			}
		}
		want.Late[0].Payload = huge[:limit]
		wantContents(t, st, want)
		for _, tc := range []struct {
			table string
			off   int
			bytes int
		}{{"dead_letters", 1, limit}, {"dead_letters", 2, len(huge)}, {"dead_letters", 3, 0}, {"late_records", 1, len(huge)}} {
			q := fmt.Sprintf("SELECT payload_bytes FROM %s WHERE source_partition = 0 AND source_offset = %d", tc.table, tc.off)
			if n := st.count(t, q); n != tc.bytes {
				t.Errorf("%s offset %d: payload_bytes %d, want %d", tc.table, tc.off, n, tc.bytes)
			}
		}
	})
}

func TestStringsCleanedAndKeysExact(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		long := strings.Repeat("é", 70) // 70 characters, 140 bytes
		in := &Batch{Windows: []operators.WindowAggregate{
			{PboxID: long, Start: 0, End: 60000, Count: 1, Latitude: nan, Longitude: nan, Company: "bad \xff utf8", Site: strings.Repeat("s", 300)},
			// Keys differ in case and trailing space: distinct rows.
			{PboxID: "abc", Start: 0, End: 60000, Count: 1, Latitude: nan, Longitude: nan},
			{PboxID: "ABC", Start: 0, End: 60000, Count: 2, Latitude: nan, Longitude: nan},
			{PboxID: "abc ", Start: 0, End: 60000, Count: 3, Latitude: nan, Longitude: nan},
		}}
		mustWrite(t, s, in)
		mustFlush(t, s)
		want := sorted(in)
		for i := range want.Windows {
			if want.Windows[i].PboxID == long {
				want.Windows[i].PboxID = strings.Repeat("é", 64)
				want.Windows[i].Company = "bad \uFFFD utf8"
				want.Windows[i].Site = strings.Repeat("s", 255)
			}
		}
		wantContents(t, st, sorted(want))
	})
}

// TestUnstorableRowsRejected writes rows no SQL store can hold (times
// outside years 1000-9999, non-finite numbers) beside good ones: the good
// rows are written, each bad one becomes its rejection (ReasonSinkRejected)
// and nothing fails.
func TestUnstorableRowsRejected(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		reg := prometheus.NewRegistry()
		s := st.open(t, Config{}, reg)
		good := operators.Reading{Partition: 0, Offset: 1, PboxID: "d", EventTime: ms("2019-03-01 00:00:00.000"), Metric: 1, Latitude: nan, Longitude: nan}
		goodW := operators.WindowAggregate{PboxID: "d", Start: ms("2019-03-01 00:00:00.000"), End: ms("2019-03-01 00:01:00.000"), Count: 1, Sum: 1, Min: 1, Max: 1, Avg: 1, Latitude: nan, Longitude: nan}
		y10000 := ms("9999-12-31 23:59:59.999") + 1
		y999 := ms("1000-01-01 00:00:00.000") - 1
		in := &Batch{
			Readings: []operators.Reading{good,
				{Partition: 0, Offset: 2, PboxID: "d", EventTime: y10000, Metric: 1},
				{Partition: 0, Offset: 3, PboxID: "d", EventTime: y999, Metric: 1},
				{Partition: 0, Offset: 4, PboxID: "d", EventTime: 0, Metric: nan},
			},
			Windows: []operators.WindowAggregate{goodW,
				{PboxID: "d", Start: ms("2019-03-01 00:01:00.000"), End: ms("2019-03-01 00:02:00.000"), Count: 2, Sum: math.Inf(1), Min: 1e308, Max: 1e308, Avg: math.Inf(1)},
				{PboxID: "e", Start: y10000 - 60_000, End: y10000, Count: 1, Sum: 1, Min: 1, Max: 1, Avg: 1},
			},
			WorkPeriods: []operators.WorkPeriod{{PboxID: "d", Start: y999, End: 0, Samples: 1, AvgMetric: 60, MaxMetric: 60}},
			Late:        []operators.LateRecord{{Partition: 0, Offset: 5, PboxID: "d", EventTime: 0, Watermark: math.MinInt64, Reason: "late", Payload: []byte("raw")}},
		}
		mustWrite(t, s, in)
		mustFlush(t, s)
		got := st.readAll(t)
		if d := diffBatch(&Batch{Readings: []operators.Reading{good}, Windows: []operators.WindowAggregate{goodW}}, &Batch{Readings: got.Readings, Windows: got.Windows, WorkPeriods: got.WorkPeriods, Late: got.Late}); d != "" {
			t.Fatal(d)
		}
		var dead []string
		for _, d := range got.DeadLetters {
			dead = append(dead, fmt.Sprintf("%d/%d %s", d.Partition, d.Offset, d.Reason))
		}
		want := []string{
			"0/2 sink_rejected: readings.event_time is 253402300800000 ms, outside years 1000-9999",
			"0/3 sink_rejected: readings.event_time is -30610224000001 ms, outside years 1000-9999",
			"0/4 sink_rejected: readings.metric is NaN",
			"0/5 sink_rejected: late_records.watermark is -9223372036854775808 ms, outside years 1000-9999",
		}
		if !slices.Equal(dead, want) {
			t.Errorf("dead letters:\n got %q\nwant %q", dead, want)
		}
		if p := string(got.DeadLetters[0].Payload); !strings.HasPrefix(p, `{"table":"readings","source_partition":0,"source_offset":2,`) {
			t.Errorf("payload of a rejected reading is %q, want the reading as JSON", p)
		}
		if p := string(got.DeadLetters[3].Payload); p != "raw" {
			t.Errorf("payload of a rejected late record is %q, want its source payload", p)
		}
		rej := st.rejected(t)
		wantRej := []string{
			"window_aggregates d 1551398460000 sink_rejected: window_aggregates.sum is +Inf",
			"window_aggregates e 253402300740000 sink_rejected: window_aggregates.window_end is 253402300800000 ms, outside years 1000-9999",
			"work_periods d -30610224000001 sink_rejected: work_periods.period_start is -30610224000001 ms, outside years 1000-9999",
		}
		if !slices.Equal(rej, wantRej) {
			t.Errorf("rejected_rows:\n got %q\nwant %q", rej, wantRej)
		}
		for table, n := range map[string]float64{TableReadings: 3, TableWindows: 2, TableWorkPeriods: 1, TableLate: 1, TableDeadLetters: 0} {
			if got := counterValue(t, reg, "eddy_sink_rows_rejected_total", map[string]string{"sink": st.kind, "table": table}); got != n {
				t.Errorf("eddy_sink_rows_rejected_total{table=%q} = %v, want %v", table, got, n)
			}
		}
	})
}

// rejected lists rejected_rows as "table pboxid start_ms reason", in key
// order.
func (st *store) rejected(t testing.TB) []string {
	t.Helper()
	rows, err := st.db.Query(st.q("SELECT source_table, pboxid, start_ms, reason FROM rejected_rows ORDER BY source_table, pboxid, start_ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var table, id, reason string
		var start int64
		if err := rows.Scan(&table, &id, &start, &reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %d %s", table, id, start, reason))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// counterValue is the value of the counter or gauge name{labels} in reg (0
// if absent).
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		ctx := context.Background()
		s := st.newSink(t, Config{}, nil)
		if err := s.Write(ctx, sampleBatch()); !errors.Is(err, ErrNotOpen) {
			t.Errorf("Write before Open: %v, want ErrNotOpen", err)
		}
		if err := s.Flush(ctx); !errors.Is(err, ErrNotOpen) {
			t.Errorf("Flush before Open: %v, want ErrNotOpen", err)
		}
		if err := s.Open(ctx); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, s, sampleBatch()) // fewer than BatchRows: buffered
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wantContents(t, st, sampleBatch()) // Close flushed
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := s.Write(ctx, sampleBatch()); !errors.Is(err, ErrClosed) {
			t.Errorf("Write after Close: %v, want ErrClosed", err)
		}
		if err := s.Flush(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Flush after Close: %v, want ErrClosed", err)
		}
		if err := s.Open(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Open after Close: %v, want ErrClosed", err)
		}
	})
}

func TestWritesOnceBatchRowsBuffered(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{BatchRows: 10})
		mustWrite(t, s, &Batch{Readings: benchReadings(0, 9)})
		if n := st.count(t, "SELECT COUNT(*) FROM readings"); n != 0 {
			t.Fatalf("%d readings visible with 9 < BatchRows buffered, want 0", n)
		}
		mustWrite(t, s, &Batch{Readings: benchReadings(9, 16)})
		if n := st.count(t, "SELECT COUNT(*) FROM readings"); n != 25 {
			t.Fatalf("%d readings visible after buffering 25 >= BatchRows, want 25", n)
		}
		mustWrite(t, s, &Batch{Readings: benchReadings(25, 3)})
		mustFlush(t, s)
		wantContents(t, st, &Batch{Readings: benchReadings(0, 28)})
	})
}

// TestFailedWriteIsRetried breaks the store under the sink (drops a table),
// checks that Flush fails and keeps the rows (with one connection: all of
// them, as the flush is one transaction), repairs the store and checks
// that the next Flush writes them, in order.
func TestFailedWriteIsRetried(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		in := sampleBatch()
		mustWrite(t, s, in)
		if _, err := st.db.Exec("DROP TABLE dead_letters"); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(context.Background()); err == nil {
			t.Fatal("Flush succeeded with table dead_letters missing")
		}
		wantLeft := 0
		if st.kind == "clickhouse" {
			// One batch per table, in table order: readings was written
			// before dead_letters failed. The retry writes it again,
			// and the rows collapse by key (wantContents reads FINAL).
			wantLeft = len(in.Readings)
		}
		if n := st.count(t, "SELECT COUNT(*) FROM readings"); n != wantLeft && !st.parallel {
			t.Fatalf("failed transaction left %d readings, want %d", n, wantLeft)
		}
		// A later window row for the same key must still win after the retry.
		w := in.Windows[0]
		w.Count = 99
		mustWrite(t, s, &Batch{Windows: []operators.WindowAggregate{w}})
		repair := st.newSink(t, Config{}, nil) // Open recreates the table
		if err := repair.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		repair.Close()
		mustFlush(t, s)
		want := sampleBatch()
		want.Windows[0].Count = 99
		wantContents(t, st, want)
	})
}

func TestConcurrentWriters(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{BatchRows: 100})
		const writers, batches, rows = 6, 20, 17
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range batches {
					rs := benchReadings((w*batches+i)*rows, rows)
					write := s.Write
					if w%2 == 1 { // half of them as leased partitions
						write = func(ctx context.Context, b *Batch) error {
							return epochWriter(t, s).WriteEpoch(ctx, int32(w), 1, b)
						}
					}
					if err := write(context.Background(), &Batch{Readings: rs}); err != nil {
						errs <- err
						return
					}
					if i%7 == 0 {
						if err := s.Flush(context.Background()); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		mustFlush(t, s)
		wantContents(t, st, &Batch{Readings: benchReadings(0, writers*batches*rows)})
	})
}

func TestRowsWrittenMetric(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		reg := prometheus.NewRegistry()
		s := st.newSink(t, Config{}, reg)
		s2 := st.newSink(t, Config{}, reg) // a second sink on the same registry
		for _, x := range []Sink{s, s2} {
			if err := x.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer x.Close()
		}
		mustWrite(t, s, sampleBatch())
		mustWrite(t, s2, &Batch{Readings: sampleBatch().Readings})
		if got := metricRows(t, reg, st.kind, TableReadings); got != 0 {
			t.Errorf("rows counted before Flush: %v", got)
		}
		mustFlush(t, s)
		mustFlush(t, s2)
		for table, want := range map[string]float64{TableReadings: 10, TableWindows: 2, TableWorkPeriods: 3, TableLate: 1, TableDeadLetters: 3} {
			if got := metricRows(t, reg, st.kind, table); got != want {
				t.Errorf("eddy_sink_rows_written_total{sink=%q,table=%q} = %v, want %v", st.kind, table, got, want)
			}
		}
		if n := flushCount(t, reg, st.kind); n != 2 {
			t.Errorf("eddy_sink_flush_seconds{sink=%q} count %d, want 2 (one per Flush)", st.kind, n)
		}
	})
}

// metricRows is the value of eddy_sink_rows_written_total{sink, table} in
// reg (0 if absent).
func metricRows(t testing.TB, reg *prometheus.Registry, sink, table string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eddy_sink_rows_written_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["sink"] == sink && labels["table"] == table {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// flushCount is the sample count of eddy_sink_flush_seconds{sink} in reg.
func flushCount(t testing.TB, reg *prometheus.Registry, sink string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eddy_sink_flush_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestRandomReplays writes random batches with overlapping keys (replays
// and re-fired windows), random flushes and random BatchRows, and compares
// the store with a model in which the last write of a key wins. Replay a
// failure with -seed=N.
func TestRandomReplays(t *testing.T) {
	seed := seed.For(t)
	forEachStore(t, func(t *testing.T, st *store) {
		rnd := rand.New(rand.NewPCG(seed, 0))
		s := st.openSink(t, Config{BatchRows: 1 + rnd.IntN(300)})
		type wkey struct {
			id    string
			start int64
		}
		type okey struct {
			p int32
			o int64
		}
		readings := map[okey]operators.Reading{}
		windows := map[wkey]operators.WindowAggregate{}
		periods := map[wkey]operators.WorkPeriod{}
		dead := map[okey]operators.DeadLetter{}
		t0 := ms("2019-03-01 00:00:00.000")
		for range 40 {
			b := &Batch{}
			for range rnd.IntN(200) {
				o := okey{int32(rnd.IntN(3)), int64(rnd.IntN(500))}
				// A replayed reading has the same event time.
				r := operators.Reading{Partition: o.p, Offset: o.o, PboxID: fmt.Sprint("d", o.o%7),
					EventTime: t0 + o.o*61_001 + int64(o.p)*3_600_000*30, Metric: float64(rnd.IntN(1000)) / 8,
					Latitude: nan, Longitude: nan, Company: fmt.Sprint("c", rnd.IntN(3))}
				if rnd.IntN(2) == 0 {
					r.Latitude, r.Longitude = rnd.Float64()*90, rnd.Float64()*-180
				}
				b.Readings = append(b.Readings, r)
				readings[o] = r
			}
			for range rnd.IntN(30) {
				k := wkey{fmt.Sprint("d", rnd.IntN(7)), t0 + int64(rnd.IntN(50))*60_000}
				n := int64(1 + rnd.IntN(9))
				w := operators.WindowAggregate{PboxID: k.id, Start: k.start, End: k.start + 60_000, Count: n,
					Sum: float64(n) * 2.5, Min: 1, Max: 4, Avg: 2.5, Latitude: nan, Longitude: nan}
				b.Windows = append(b.Windows, w)
				windows[k] = w
			}
			for range rnd.IntN(10) {
				k := wkey{fmt.Sprint("d", rnd.IntN(7)), t0 + int64(rnd.IntN(50))*60_000}
				p := operators.WorkPeriod{PboxID: k.id, Start: k.start, End: k.start + int64(rnd.IntN(600_000)),
					Samples: int64(1 + rnd.IntN(20)), AvgMetric: 60, MaxMetric: float64(60 + rnd.IntN(40))}
				b.WorkPeriods = append(b.WorkPeriods, p)
				periods[k] = p
			}
			for range rnd.IntN(5) {
				o := okey{int32(rnd.IntN(3)), int64(rnd.IntN(50))}
				d := operators.DeadLetter{Partition: o.p, Offset: o.o, Reason: fmt.Sprint("r", rnd.IntN(3)), Payload: []byte(fmt.Sprint(rnd.Int()))}
				b.DeadLetters = append(b.DeadLetters, d)
				dead[o] = d
			}
			mustWrite(t, s, b)
			if rnd.IntN(4) == 0 {
				mustFlush(t, s)
			}
		}
		mustFlush(t, s)
		want := &Batch{}
		for _, r := range readings {
			want.Readings = append(want.Readings, r)
		}
		for _, w := range windows {
			want.Windows = append(want.Windows, w)
		}
		for _, p := range periods {
			want.WorkPeriods = append(want.WorkPeriods, p)
		}
		for _, d := range dead {
			want.DeadLetters = append(want.DeadLetters, d)
		}
		wantContents(t, st, want)
	})
}

// TestCancelledFlushThenRetry flushes with a cancelled context and with
// contexts that expire in the middle of the transaction (a stopping
// partition actor), then retries with a live one: every row must arrive.
func TestCancelledFlushThenRetry(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{BatchRows: MaxBatchRows})
		mustWrite(t, s, sampleBatch())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Flush(ctx); err == nil {
			t.Fatal("Flush with a cancelled context succeeded")
		}
		many := benchReadings(1000, 60_000)
		mustWrite(t, s, &Batch{Readings: many})
		for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			err := s.Flush(ctx)
			cancel()
			if err == nil {
				break // fast machine: the write finished in time
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("Flush with a %v deadline: %v", d, err)
			}
		}
		mustFlush(t, s)
		want := sampleBatch()
		want.Readings = append(want.Readings, many...)
		wantContents(t, st, want)
	})
}

func epochWriter(t testing.TB, s Sink) EpochWriter {
	t.Helper()
	ew, ok := s.(EpochWriter)
	if !ok {
		t.Fatalf("%T is not an EpochWriter", s)
	}
	return ew
}

func mustWriteEpoch(t testing.TB, s Sink, p int32, epoch uint64, b *Batch) {
	t.Helper()
	if err := epochWriter(t, s).WriteEpoch(context.Background(), p, epoch, b); err != nil {
		t.Fatalf("WriteEpoch(p%d, epoch %d): %v", p, epoch, err)
	}
}

var y10000 = ms("9999-12-31 23:59:59.999") + 1

// fenceRows makes rows of partition 0 in every table (rejected_rows
// through a window ending in year 10000), one per key, whose non-key
// values all depend on v.
func fenceRows(v int, keys ...int) *Batch {
	t0 := ms("2019-03-01 00:00:00.000")
	b := &Batch{}
	f := float64(v)
	for _, k := range keys {
		k64 := int64(k)
		b.Readings = append(b.Readings, operators.Reading{Partition: 0, Offset: k64, PboxID: "d", EventTime: t0 + k64*1000,
			Metric: f, Latitude: nan, Longitude: nan, Company: fmt.Sprint("c", v)})
		b.Windows = append(b.Windows, operators.WindowAggregate{PboxID: "d", Start: t0 + k64*60_000, End: t0 + k64*60_000 + 60_000,
			Count: int64(v), Sum: f, Min: f, Max: f, Avg: f, Latitude: nan, Longitude: nan, Site: fmt.Sprint("s", v)},
			operators.WindowAggregate{PboxID: fmt.Sprint("z", k), Start: y10000 - 60_000, End: y10000 + int64(v),
				Count: 1, Latitude: nan, Longitude: nan})
		b.WorkPeriods = append(b.WorkPeriods, operators.WorkPeriod{PboxID: "d", Start: t0 + k64*600_000, End: t0 + k64*600_000 + int64(v)*1000,
			Samples: int64(v), AvgMetric: 50 + f, MaxMetric: 50 + f})
		b.Late = append(b.Late, operators.LateRecord{Partition: 0, Offset: 1000 + k64, PboxID: "d", EventTime: t0, Watermark: t0 + int64(v),
			Reason: "late", Payload: []byte(fmt.Sprint("late ", v))})
		b.DeadLetters = append(b.DeadLetters, operators.DeadLetter{Partition: 0, Offset: 2000 + k64, Reason: fmt.Sprint("bad ", v),
			Payload: []byte(fmt.Sprint("payload ", v))})
	}
	return b
}

// storedRows is what sinktest.ReadAll shows of b (its storable rows), and the rows
// of rejected_rows it makes (see TestUnstorableRowsRejected).
func storedRows(bs ...*Batch) (*Batch, []string) {
	out := &Batch{}
	var rej []string
	for _, b := range bs {
		out.Readings = append(out.Readings, b.Readings...)
		out.WorkPeriods = append(out.WorkPeriods, b.WorkPeriods...)
		out.Late = append(out.Late, b.Late...)
		out.DeadLetters = append(out.DeadLetters, b.DeadLetters...)
		for _, w := range b.Windows {
			if w.End < y10000 {
				out.Windows = append(out.Windows, w)
				continue
			}
			rej = append(rej, fmt.Sprintf("window_aggregates %s %d sink_rejected: window_aggregates.window_end is %d ms, outside years 1000-9999", w.PboxID, w.Start, w.End))
		}
	}
	slices.Sort(rej)
	return out, rej
}

// epochs returns, per table, "epoch:rows" of each epoch stored, ascending.
func (st *store) epochs(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range sqlTables {
		rows, err := st.db.Query(st.q("SELECT epoch, COUNT(*) FROM " + table + " GROUP BY epoch ORDER BY epoch"))
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for rows.Next() {
			var e, n int64
			if err := rows.Scan(&e, &n); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, fmt.Sprintf("%d:%d", e, n))
		}
		rows.Close()
		out[table] = strings.Join(parts, " ")
	}
	return out
}

func wantEpochs(t testing.TB, st *store, want string) {
	t.Helper()
	for table, got := range st.epochs(t) {
		if got != want {
			t.Errorf("%s: epochs %q, want %q", table, got, want)
		}
	}
}

func wantStored(t testing.TB, st *store, bs ...*Batch) {
	t.Helper()
	want, rej := storedRows(bs...)
	wantContents(t, st, want)
	if got := st.rejected(t); !slices.Equal(got, rej) {
		t.Fatalf("rejected_rows:\n got %q\nwant %q", got, rej)
	}
}

// TestEpochFencing: a zombie owner at epoch 1 (another node, whose rows
// reach the store late) writes the keys the owner at epoch 2 wrote: every
// table keeps the epoch-2 values, while keys nobody wrote are still
// inserted at epoch 1; equal epochs replace (a replay, a re-fired window),
// and a higher epoch replaces.
func TestEpochFencing(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		owner := st.openSink(t, Config{})
		zombie := st.openSink(t, Config{})
		mustWriteEpoch(t, owner, 0, 2, fenceRows(2, 1, 2))
		mustFlush(t, owner)
		wantStored(t, st, fenceRows(2, 1, 2))
		wantEpochs(t, st, "2:2")

		mustWriteEpoch(t, zombie, 0, 1, fenceRows(1, 1, 2, 3))
		mustFlush(t, zombie)
		wantStored(t, st, fenceRows(2, 1, 2), fenceRows(1, 3))
		wantEpochs(t, st, "1:1 2:2")

		mustWriteEpoch(t, owner, 0, 2, fenceRows(5, 2, 3))
		mustFlush(t, owner)
		wantStored(t, st, fenceRows(2, 1), fenceRows(5, 2, 3))
		wantEpochs(t, st, "2:3")

		mustWriteEpoch(t, zombie, 0, 3, fenceRows(7, 1))
		mustFlush(t, zombie)
		wantStored(t, st, fenceRows(7, 1), fenceRows(5, 2, 3))
		wantEpochs(t, st, "2:2 3:1")

		// Plain Write is epoch 0: it inserts new keys and replaces nothing
		// written under a lease.
		mustWrite(t, zombie, fenceRows(9, 1, 4))
		mustFlush(t, zombie)
		wantStored(t, st, fenceRows(7, 1), fenceRows(5, 2, 3), fenceRows(9, 4))
		wantEpochs(t, st, "0:1 2:2 3:1")
	})
}

// TestDuplicateKeysInOneFlush buffers several rows of the same keys, of
// every table (rejected rows too), before one flush: within one batch,
// across batches of a partition, and across partitions of different
// epochs. Every store keeps what applying the rows in order leaves — the
// last row of the highest epoch — PostgreSQL included, whose ON CONFLICT
// cannot affect a row twice in one statement.
func TestDuplicateKeysInOneFlush(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{BatchRows: MaxBatchRows})
		// Partitions are flushed in order p0, p1, p2: key 1 is written at
		// epoch 3, fenced at 1, replaced at 3; key 2 written at 3, fenced.
		mustWriteEpoch(t, s, 0, 3, fenceRows(10, 1, 2))
		mustWriteEpoch(t, s, 1, 1, fenceRows(20, 1, 2))
		mustWriteEpoch(t, s, 2, 3, fenceRows(30, 1))
		// Key 5 twice in one partition's buffer, key 6 twice in one batch.
		mustWriteEpoch(t, s, 3, 2, fenceRows(40, 5))
		mustWriteEpoch(t, s, 3, 2, fenceRows(41, 5))
		twice := fenceRows(50, 6)
		again := fenceRows(51, 6)
		twice.Readings = append(twice.Readings, again.Readings...)
		twice.Windows = append(twice.Windows, again.Windows...)
		twice.WorkPeriods = append(twice.WorkPeriods, again.WorkPeriods...)
		twice.Late = append(twice.Late, again.Late...)
		twice.DeadLetters = append(twice.DeadLetters, again.DeadLetters...)
		mustWriteEpoch(t, s, 3, 2, twice)
		mustFlush(t, s)
		wantStored(t, st, fenceRows(30, 1), fenceRows(10, 2), fenceRows(41, 5), fenceRows(51, 6))
		wantEpochs(t, st, "2:2 3:2")
	})
}

// TestEpochBuffers: Drop discards a partition's buffered rows; rows of a
// newer epoch of the partition drop the older epoch's; a write at a stale
// epoch is refused; other partitions are untouched. Each drop is counted.
func TestEpochBuffers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		reg := prometheus.NewRegistry()
		s := st.open(t, Config{}, reg)
		ew := epochWriter(t, s)
		other := &Batch{Readings: benchReadings(0, 10)}
		for i := range other.Readings {
			other.Readings[i].Partition = 1
		}
		mustWriteEpoch(t, s, 1, 4, other)
		mustWriteEpoch(t, s, 0, 1, fenceRows(1, 1, 2))
		if n := ew.Drop(0); n != 12 { // 2 rows in each of the six tables
			t.Errorf("Drop(0) = %d, want 12", n)
		}
		if n := ew.Drop(0); n != 0 {
			t.Errorf("second Drop(0) = %d, want 0", n)
		}
		if n := ew.Drop(7); n != 0 {
			t.Errorf("Drop of a partition that wrote nothing = %d, want 0", n)
		}
		mustWriteEpoch(t, s, 0, 1, fenceRows(3, 1, 2))
		mustWriteEpoch(t, s, 0, 2, fenceRows(4, 2, 3)) // newer owner here: epoch-1 rows go
		err := ew.WriteEpoch(context.Background(), 0, 1, fenceRows(5, 1))
		if !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("WriteEpoch at stale epoch 1 after epoch 2: %v, want ErrStaleEpoch", err)
		}
		mustFlush(t, s)
		wantStored(t, st, &Batch{Readings: other.Readings}, fenceRows(4, 2, 3))
		for reason, want := range map[string]float64{"partition_stopped": 12, "fenced": 12 + 6} {
			if got := counterValue(t, reg, "eddy_sink_rows_dropped_total", map[string]string{"sink": st.kind, "reason": reason}); got != want {
				t.Errorf("eddy_sink_rows_dropped_total{reason=%q} = %v, want %v", reason, got, want)
			}
		}
		if got := counterValue(t, reg, "eddy_sink_buffer_bytes", map[string]string{"sink": st.kind}); got != 0 {
			t.Errorf("eddy_sink_buffer_bytes = %v after the flush, want 0", got)
		}
	})
}

// TestLeaseGuard: rows of a partition whose lease guard says no are
// dropped before the write and counted; the others are written; the guard
// is asked with each partition's epoch, never for NoPartition.
func TestLeaseGuard(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		reg := prometheus.NewRegistry()
		s := st.open(t, Config{}, reg)
		var mu sync.Mutex
		asked := map[string]int{}
		epochWriter(t, s).SetLeaseGuard(func(p int32, epoch uint64) bool {
			mu.Lock()
			asked[fmt.Sprintf("p%d@%d", p, epoch)]++
			mu.Unlock()
			return p != 3
		})
		expired := &Batch{Readings: benchReadings(0, 5)}
		for i := range expired.Readings {
			expired.Readings[i].Partition = 3
		}
		mustWriteEpoch(t, s, 3, 9, expired)
		mustWriteEpoch(t, s, 0, 2, fenceRows(2, 1))
		unleased := &Batch{Readings: benchReadings(100, 3)}
		mustWrite(t, s, unleased)
		mustFlush(t, s)
		wantStored(t, st, fenceRows(2, 1), unleased)
		if got := counterValue(t, reg, "eddy_sink_rows_dropped_total", map[string]string{"sink": st.kind, "reason": "lease_expired"}); got != 5 {
			t.Errorf("eddy_sink_rows_dropped_total{reason=lease_expired} = %v, want 5", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if asked["p3@9"] == 0 || asked["p0@2"] == 0 || len(asked) != 2 {
			t.Errorf("guard asked %v, want p3@9 and p0@2 only", asked)
		}
	})
}

// oldSchema is the schema of an eddy before fencing: the current one
// without the epoch columns and without rejected_rows.
func oldSchema(t testing.TB, st *store) []string {
	t.Helper()
	schema, fill := sqliteSchema, strings.NewReplacer()
	if st.kind == "postgres" {
		schema = pgSchema
	}
	if st.kind == "mysql" {
		coll, err := binaryCollation(context.Background(), st.db)
		if err != nil {
			t.Fatal(err)
		}
		schema, fill = mysqlSchema, strings.NewReplacer("{collation}", coll, "{today}", "2026-01-01")
	}
	var out []string
	for _, q := range schema {
		if strings.Contains(q, TableRejected) {
			continue
		}
		var lines []string
		for _, l := range strings.Split(q, "\n") {
			if !strings.Contains(l, "epoch") {
				lines = append(lines, l)
			}
		}
		out = append(out, fill.Replace(strings.Join(lines, "\n")))
	}
	return out
}

// TestMigratesSchemaWithoutEpoch opens a sink on a database an older eddy
// created (no epoch column, no rejected_rows) holding rows: Open adds the
// columns (old rows at epoch 0) and the table, and fenced writes work.
func TestMigratesSchemaWithoutEpoch(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		if st.kind == "clickhouse" {
			t.Skip("no eddy created ClickHouse tables without the epoch column: nothing to migrate")
		}
		for _, q := range oldSchema(t, st) {
			if _, err := st.db.Exec(q); err != nil {
				t.Fatalf("old schema: %v\n%s", err, q)
			}
		}
		if cols := st.columns(t, TableWindows); slices.Contains(cols, "epoch") {
			t.Fatalf("old schema has an epoch column: %v", cols)
		}
		old := fenceRows(1, 1, 2)
		_, err := st.exec("INSERT INTO window_aggregates (pboxid, window_start, window_end, `count`, `sum`, `min`, `max`, `avg`, company, site) VALUES (?, ?, ?, 1, 1, 1, 1, 1, '', 's1'), (?, ?, ?, 1, 1, 1, 1, 1, '', 's1')",
			"d", sqlTime(old.Windows[0].Start), sqlTime(old.Windows[0].End), "d", sqlTime(old.Windows[2].Start), sqlTime(old.Windows[2].End))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 { // migrate, then open the migrated database
			s := st.newSink(t, Config{}, nil)
			if err := s.Open(context.Background()); err != nil {
				t.Fatalf("Open #%d of an old database: %v", i+1, err)
			}
			s.Close()
		}
		for _, td := range tableDefs {
			if got, want := st.columns(t, td.name), append(slices.Clone(td.cols), "epoch"); !slices.Equal(got, want) {
				t.Errorf("migrated table %s has columns %v, want %v", td.name, got, want)
			}
		}
		if n := st.count(t, "SELECT COUNT(*) FROM window_aggregates WHERE epoch = 0"); n != 2 {
			t.Errorf("old window rows at epoch 0: %d, want 2", n)
		}
		s := st.openSink(t, Config{})
		mustWriteEpoch(t, s, 0, 1, fenceRows(2, 2, 3))
		mustFlush(t, s)
		want := &Batch{Windows: []operators.WindowAggregate{{PboxID: "d", Start: old.Windows[0].Start, End: old.Windows[0].End,
			Count: 1, Sum: 1, Min: 1, Max: 1, Avg: 1, Latitude: nan, Longitude: nan, Site: "s1"}}}
		wantStored(t, st, want, fenceRows(2, 2, 3))
		if n := st.count(t, "SELECT COUNT(*) FROM daily_work_time"); n != 1 {
			t.Errorf("daily_work_time has %d rows after the migration, want 1", n)
		}
	})
}

// refuse makes the store refuse some rows that eddy considers valid, as a
// DBA's constraint would: readings with metric >= 1000, windows with count
// >= 1000, work periods with samples >= 1000, late records and dead letters
// with reason 'poison', and rejected rows of pboxid 'never'. MySQL and PostgreSQL get
// CHECK constraints, SQLite (which cannot add one to a table) triggers,
// ClickHouse 18.16 (no CHECK constraints yet) a MATERIALIZED column whose
// expression throws on insert (throwIf, code 395).
func (st *store) refuse(t testing.TB) {
	t.Helper()
	rules := []struct{ table, cond string }{
		{TableReadings, "metric < 1000"},
		{TableWindows, "`count` < 1000"},
		{TableWorkPeriods, "samples < 1000"},
		{TableLate, "reason <> 'poison'"},
		{TableDeadLetters, "reason <> 'poison'"},
		{TableRejected, "pboxid <> 'never'"},
	}
	for i, r := range rules {
		q := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT refuse_%d CHECK (%s)", r.table, i, r.cond)
		if st.kind == "sqlite" {
			cond := strings.NewReplacer("metric", "NEW.metric", "`count`", "NEW.`count`", "samples", "NEW.samples",
				"reason", "NEW.reason", "pboxid", "NEW.pboxid").Replace(r.cond)
			q = fmt.Sprintf("CREATE TRIGGER refuse_%d BEFORE INSERT ON %s WHEN NOT (%s) BEGIN SELECT RAISE(ABORT, 'refused by refuse_%d'); END", i, r.table, cond, i)
		}
		if st.kind == "clickhouse" {
			q = fmt.Sprintf("ALTER TABLE %s ADD COLUMN refuse_%d UInt8 MATERIALIZED throwIf(NOT (%s))", r.table, i, r.cond)
		}
		if _, err := st.exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestBisectIsolatesRefusedRows: the store refuses a few rows of every
// table in one flush: the flush bisects down to exactly those rows, writes
// all the others, stores each refused row's rejection (a dead letter under
// the source record's key, or a row of rejected_rows), counts them, and
// returns no error.
func TestBisectIsolatesRefusedRows(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		reg := prometheus.NewRegistry()
		s := st.open(t, Config{BatchRows: MaxBatchRows}, reg)
		st.refuse(t)
		t0 := ms("2019-03-01 00:00:00.000")
		in := &Batch{Readings: benchReadings(0, 300)}
		badReadings := []int{0, 150, 151, 299}
		for _, i := range badReadings {
			in.Readings[i].Metric = 5000
		}
		for i := range 40 {
			in.Windows = append(in.Windows, operators.WindowAggregate{PboxID: "d", Start: t0 + int64(i)*60_000, End: t0 + int64(i+1)*60_000,
				Count: int64(i + 1), Sum: 1, Min: 1, Max: 1, Avg: 1, Latitude: nan, Longitude: nan})
		}
		in.Windows[7].Count = 5000
		in.Windows = append(in.Windows, operators.WindowAggregate{PboxID: "never", Start: t0, End: t0 + 60_000, Count: 5000, Latitude: nan, Longitude: nan})
		for i := range 20 {
			in.WorkPeriods = append(in.WorkPeriods, operators.WorkPeriod{PboxID: "d", Start: t0 + int64(i)*3_600_000, End: t0 + int64(i)*3_600_000 + 60_000,
				Samples: int64(i + 1), AvgMetric: 60, MaxMetric: 70})
		}
		in.WorkPeriods[19].Samples = 5000
		for i := range 10 {
			in.Late = append(in.Late, operators.LateRecord{Partition: 8, Offset: int64(i), PboxID: "d", EventTime: t0, Watermark: t0 + 1,
				Reason: "late", Payload: []byte(fmt.Sprint("late ", i))})
			in.DeadLetters = append(in.DeadLetters, operators.DeadLetter{Partition: 9, Offset: int64(i), Reason: "malformed_json",
				Payload: []byte(fmt.Sprint("dead ", i))})
		}
		in.Late[3].Reason = "poison"
		in.DeadLetters[5].Reason = "poison"
		mustWrite(t, s, in)
		mustFlush(t, s)

		want := &Batch{Windows: slices.Delete(slices.Clone(in.Windows), 40, 41), WorkPeriods: in.WorkPeriods[:19]}
		want.Windows = slices.Delete(want.Windows, 7, 8)
		for i, r := range in.Readings {
			if !slices.Contains(badReadings, i) {
				want.Readings = append(want.Readings, r)
			}
		}
		want.Late = slices.Delete(slices.Clone(in.Late), 3, 4)
		want.DeadLetters = slices.Clone(in.DeadLetters)
		got := st.readAll(t)
		// The rejections' reasons carry the store's error: check their
		// prefix, then compare the rest exactly.
		prefixes := map[string]string{}
		for i, d := range got.DeadLetters {
			if !strings.HasPrefix(d.Reason, "sink_rejected: ") {
				continue
			}
			table, _, _ := strings.Cut(strings.TrimPrefix(d.Reason, "sink_rejected: "), ":")
			prefixes[fmt.Sprintf("%d/%d", d.Partition, d.Offset)] = table
			got.DeadLetters[i].Reason = "sink_rejected: " + table
		}
		wantPrefixes := map[string]string{"0/0": TableReadings, "2/150": TableReadings, "3/151": TableReadings, "3/299": TableReadings,
			"8/3": TableLate, "9/5": TableDeadLetters}
		if !maps.Equal(prefixes, wantPrefixes) {
			t.Errorf("rejected dead letters %v, want %v", prefixes, wantPrefixes)
		}
		want.DeadLetters[5] = operators.DeadLetter{Partition: 9, Offset: 5, Reason: "sink_rejected: dead_letters", Payload: []byte{}}
		for _, i := range badReadings {
			r := in.Readings[i]
			js := appendReadingJSON(nil, &r)
			want.DeadLetters = append(want.DeadLetters, operators.DeadLetter{Partition: r.Partition, Offset: r.Offset,
				Reason: "sink_rejected: readings", Payload: js[:len(js)-1]})
		}
		want.DeadLetters = append(want.DeadLetters, operators.DeadLetter{Partition: 8, Offset: 3, Reason: "sink_rejected: late_records", Payload: []byte("late 3")})
		if d := diffBatch(sorted(want), got); d != "" {
			t.Fatal(d)
		}
		var rej []string
		for _, r := range st.rejected(t) {
			rej = append(rej, r[:strings.Index(r, "sink_rejected: ")+len("sink_rejected: ")+len(strings.Fields(r)[0])])
		}
		wantRej := []string{
			fmt.Sprintf("window_aggregates d %d sink_rejected: window_aggregates", t0+7*60_000),
			fmt.Sprintf("work_periods d %d sink_rejected: work_periods", t0+19*3_600_000),
		}
		if !slices.Equal(rej, wantRej) {
			t.Errorf("rejected_rows:\n got %q\nwant %q", rej, wantRej)
		}
		for table, n := range map[string]float64{TableReadings: 4, TableWindows: 2, TableWorkPeriods: 1, TableLate: 1, TableDeadLetters: 1} {
			if got := counterValue(t, reg, "eddy_sink_rows_rejected_total", map[string]string{"sink": st.kind, "table": table}); got != n {
				t.Errorf("eddy_sink_rows_rejected_total{table=%q} = %v, want %v", table, got, n)
			}
		}
		if got := counterValue(t, reg, "eddy_sink_rows_dropped_total", map[string]string{"sink": st.kind, "reason": "unstorable"}); got != 1 {
			t.Errorf("eddy_sink_rows_dropped_total{reason=unstorable} = %v, want 1 (the window of pboxid never)", got)
		}
		// The buffer is empty: a second flush writes nothing.
		if got := counterValue(t, reg, "eddy_sink_buffer_bytes", map[string]string{"sink": st.kind}); got != 0 {
			t.Errorf("eddy_sink_buffer_bytes = %v, want 0", got)
		}
	})
}

// TestBufferLimitBackpressure breaks the store (drops readings) under a
// sink with a small MaxBufferBytes: writers block once the buffer is full
// (the backpressure hook says so, the buffer stays within its limit), a
// blocked writer whose context ends returns its error and buffers nothing,
// and once the store is repaired the blocked writer goes on and every row
// arrives exactly once.
func TestBufferLimitBackpressure(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		const limit = 64 << 10
		reg := prometheus.NewRegistry()
		s := st.open(t, Config{MaxBufferBytes: limit, BatchRows: MaxBatchRows}, reg)
		ew := epochWriter(t, s)
		type event struct {
			p       int32
			waiting bool
		}
		events := make(chan event, 100)
		ew.SetBackpressureHook(func(p int32, waiting bool) { events <- event{p, waiting} })
		waitEvent := func(want event) {
			t.Helper()
			select {
			case e := <-events:
				if e != want {
					t.Fatalf("backpressure hook %+v, want %+v", e, want)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no backpressure hook %+v within 20 s", want)
			}
		}
		bytesBuffered := func() float64 {
			return counterValue(t, reg, "eddy_sink_buffer_bytes", map[string]string{"sink": st.kind})
		}
		if _, err := st.db.Exec("DROP TABLE readings"); err != nil {
			t.Fatal(err)
		}
		const batches, rows = 20, 100
		done := make(chan error, 1)
		go func() {
			for i := range batches {
				if err := ew.WriteEpoch(context.Background(), 0, 1, &Batch{Readings: benchReadings(i*rows, rows)}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		waitEvent(event{0, true})
		if b := bytesBuffered(); b <= 0 || b > limit {
			t.Errorf("eddy_sink_buffer_bytes = %v while blocked, want in (0, %d]", b, limit)
		}
		select {
		case err := <-done:
			t.Fatalf("the writer finished (%v) although the store is broken", err)
		default:
		}
		// A second writer blocks too, and gives up with its context.
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan error, 1)
		go func() { cancelled <- ew.WriteEpoch(ctx, 1, 1, &Batch{Readings: benchReadings(10_000, rows)}) }()
		waitEvent(event{1, true})
		cancel()
		if err := <-cancelled; !errors.Is(err, context.Canceled) {
			t.Errorf("blocked WriteEpoch after cancel: %v, want context.Canceled", err)
		}
		waitEvent(event{1, false})
		// The blocked writer keeps trying the write itself.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			n := counterValue(t, reg, "eddy_sink_write_errors_total", map[string]string{"sink": st.kind})
			if n >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("eddy_sink_write_errors_total = %v after 20 s of outage, want >= 2 (the blocked writer retries)", n)
			}
		}
		repair := st.newSink(t, Config{}, nil) // Open recreates the table
		if err := repair.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		repair.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the blocked writer did not go on within 20 s of the repair")
		}
		waitEvent(event{0, false})
		mustFlush(t, s)
		wantContents(t, st, &Batch{Readings: benchReadings(0, batches*rows)})
		if n := metricRows(t, reg, st.kind, TableReadings); n != batches*rows {
			t.Errorf("eddy_sink_rows_written_total{table=readings} = %v, want %d: retries must not write rows twice", n, batches*rows)
		}
		if b := bytesBuffered(); b != 0 {
			t.Errorf("eddy_sink_buffer_bytes = %v after the flush, want 0", b)
		}
	})
}

func TestConfigValidateBufferBytes(t *testing.T) {
	for _, tc := range []struct {
		n  int64
		ok bool
	}{{0, true}, {MinBufferBytes, true}, {MaxBufferBytesLimit, true}, {MinBufferBytes - 1, false}, {-1, false}, {MaxBufferBytesLimit + 1, false}} {
		err := Config{MaxBufferBytes: tc.n}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("MaxBufferBytes %d: Validate() = %v, want ok=%v", tc.n, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "MaxBufferBytes") {
			t.Errorf("MaxBufferBytes %d: error %q does not name the field", tc.n, err)
		}
	}
}

// TestRandomFencing: several sinks on one store (nodes) write random
// windows and readings of three partitions under random lease epochs —
// current owners, zombies at older epochs, newer owners on the same node —
// and flush at random. The store must equal a model in which a row replaces
// the stored row of its key only if its epoch is >= the stored epoch, each
// sink drops a partition's rows of older epochs when a newer one writes,
// and refuses stale writes. Replay a failure with -seed=N.
func TestRandomFencing(t *testing.T) {
	seed := seed.For(t)
	forEachStore(t, func(t *testing.T, st *store) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		type wkey struct {
			id    string
			start int64
		}
		type stored[T any] struct {
			row   T
			epoch uint64
		}
		windows := map[wkey]stored[operators.WindowAggregate]{}
		readings := map[[2]int64]stored[operators.Reading]{}
		type pend struct {
			epoch uint64
			b     Batch
		}
		const nodes, parts = 3, 3
		var sinks [nodes]Sink
		var pending [nodes][parts]*pend // what each sink buffers, by partition
		var maxEpoch [nodes][parts]uint64
		for n := range sinks {
			sinks[n] = st.openSink(t, Config{BatchRows: MaxBatchRows})
		}
		flush := func(n int) {
			mustFlush(t, sinks[n])
			for p := range parts {
				pd := pending[n][p]
				if pd == nil {
					continue
				}
				for _, w := range pd.b.Windows {
					k := wkey{w.PboxID, w.Start}
					if s, ok := windows[k]; !ok || pd.epoch >= s.epoch {
						windows[k] = stored[operators.WindowAggregate]{w, pd.epoch}
					}
				}
				for _, r := range pd.b.Readings {
					k := [2]int64{int64(r.Partition), r.Offset}
					if s, ok := readings[k]; !ok || pd.epoch >= s.epoch {
						readings[k] = stored[operators.Reading]{r, pd.epoch}
					}
				}
				pending[n][p] = nil
			}
		}
		t0 := ms("2019-03-01 00:00:00.000")
		// epochOf[n][p] is the lease epoch under which node n writes
		// partition p (0: never held it); a takeover gives p the next
		// epoch on a random node, and the former holder goes on writing
		// at its old epoch: a zombie.
		var epochOf [nodes][parts]uint64
		var current [parts]uint64
		for range 300 {
			n, p := rnd.IntN(nodes), rnd.IntN(parts)
			switch r := rnd.IntN(10); {
			case r == 0:
				flush(n)
				continue
			case r == 1 || current[p] == 0:
				current[p]++
				epochOf[n][p] = current[p]
				continue
			case epochOf[n][p] == 0:
				continue
			}
			epoch := epochOf[n][p]
			if rnd.IntN(10) == 0 && epoch > 1 {
				epoch-- // a stale write on the node
			}
			b := &Batch{}
			for range 1 + rnd.IntN(10) {
				k := rnd.IntN(8)
				v := rnd.IntN(1000)
				b.Windows = append(b.Windows, operators.WindowAggregate{PboxID: fmt.Sprintf("p%d-d%d", p, k%3), Start: t0 + int64(k)*60_000,
					End: t0 + int64(k+1)*60_000, Count: int64(v), Sum: float64(v), Min: 1, Max: float64(v), Avg: 1, Latitude: nan, Longitude: nan})
				o := int64(rnd.IntN(8))
				b.Readings = append(b.Readings, operators.Reading{Partition: int32(p), Offset: o, PboxID: "d", EventTime: t0 + o*1000,
					Metric: float64(v), Latitude: nan, Longitude: nan})
			}
			err := epochWriter(t, sinks[n]).WriteEpoch(context.Background(), int32(p), epoch, b)
			if epoch < maxEpoch[n][p] {
				if !errors.Is(err, ErrStaleEpoch) {
					t.Fatalf("node %d partition %d: write at epoch %d after %d: %v, want ErrStaleEpoch", n, p, epoch, maxEpoch[n][p], err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			maxEpoch[n][p] = epoch
			pd := pending[n][p]
			if pd == nil || pd.epoch < epoch {
				pd = &pend{epoch: epoch}
				pending[n][p] = pd
			}
			pd.b.Windows = append(pd.b.Windows, b.Windows...)
			pd.b.Readings = append(pd.b.Readings, b.Readings...)
		}
		for n := range nodes {
			flush(n)
		}
		want := &Batch{}
		wantEpochs := map[string]int{}
		for _, s := range windows {
			want.Windows = append(want.Windows, s.row)
			wantEpochs[fmt.Sprint(s.epoch)]++
		}
		for _, s := range readings {
			want.Readings = append(want.Readings, s.row)
		}
		wantContents(t, st, want)
		rows, err := st.db.Query(st.q("SELECT epoch, COUNT(*) FROM window_aggregates GROUP BY epoch"))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string]int{}
		for rows.Next() {
			var e string
			var c int
			if err := rows.Scan(&e, &c); err != nil {
				t.Fatal(err)
			}
			got[e] = c
		}
		if !maps.Equal(got, wantEpochs) {
			t.Errorf("window rows by epoch %v, want %v", got, wantEpochs)
		}
	})
}
