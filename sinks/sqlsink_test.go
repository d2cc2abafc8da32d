package sinks

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/mariadbtest"
)

var seedFlag = flag.Uint64("seed", 0, "seed of randomised tests (0: from the clock)")

// store is one SQL store under test: it makes sinks on it and reads it.
type store struct {
	kind string
	// newSink makes a new, unopened sink on the same store.
	newSink func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink
	// db reads the store directly.
	db *sql.DB
}

// forEachStore runs fn against a fresh SQLite file and a fresh MariaDB
// database: the same behavioural suite for both dialects.
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
	t.Run("mysql", func(t *testing.T) {
		dsn := mariadbtest.DSN(t)
		db, err := sql.Open("mysql", dsn) // no parseTime: ReadAll must cope
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, &store{
			kind: "mysql",
			newSink: func(t testing.TB, cfg Config, reg prometheus.Registerer) Sink {
				s, err := NewMySQL(dsn, cfg, reg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			db: db,
		})
	})
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
	b, err := ReadAll(context.Background(), st.db)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (st *store) count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := st.db.QueryRow(q, args...).Scan(&n); err != nil {
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

// sorted returns a copy of b with each table in ReadAll's key order.
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
			if got := st.columns(t, td.name); !slices.Equal(got, td.cols) {
				t.Errorf("table %s has columns %v, want %v", td.name, got, td.cols)
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

func TestInvalidRowRejectsWholeBatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store) {
		s := st.openSink(t, Config{})
		good := operators.Reading{Partition: 0, Offset: 1, PboxID: "d", EventTime: ms("2019-03-01 00:00:00.000"), Metric: 1}
		for _, tc := range []struct {
			name string
			b    *Batch
		}{
			{"year 10000", &Batch{Readings: []operators.Reading{good, {Partition: 0, Offset: 2, PboxID: "d", EventTime: ms("9999-12-31 23:59:59.999") + 1}}}},
			{"year 999", &Batch{Readings: []operators.Reading{good, {Partition: 0, Offset: 2, PboxID: "d", EventTime: ms("1000-01-01 00:00:00.000") - 1}}}},
			{"NaN metric", &Batch{Readings: []operators.Reading{good, {Partition: 0, Offset: 2, PboxID: "d", EventTime: 0, Metric: nan}}}},
			{"Inf avg", &Batch{Readings: []operators.Reading{good}, Windows: []operators.WindowAggregate{{PboxID: "d", Avg: math.Inf(1)}}}},
			{"NaN work period", &Batch{Readings: []operators.Reading{good}, WorkPeriods: []operators.WorkPeriod{{PboxID: "d", AvgMetric: nan}}}},
			{"late watermark", &Batch{Readings: []operators.Reading{good}, Late: []operators.LateRecord{{PboxID: "d", Watermark: math.MinInt64}}}},
		} {
			if err := s.Write(context.Background(), tc.b); !errors.Is(err, ErrInvalidRow) {
				t.Errorf("%s: Write error %v, want ErrInvalidRow", tc.name, err)
			}
		}
		mustFlush(t, s)
		wantContents(t, st, &Batch{})
	})
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
// checks that Flush fails and keeps the rows, repairs the store and checks
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
		if n := st.count(t, "SELECT COUNT(*) FROM readings"); n != 0 {
			t.Fatalf("failed transaction left %d readings", n)
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
					if err := s.Write(context.Background(), &Batch{Readings: rs}); err != nil {
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
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d)", seed, seed)
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
