package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eddy-iot/eddy/operators"
	"github.com/eddy-iot/eddy/tests/pgtest"
)

func TestPgRowError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "22003"}, true}, // numeric_value_out_of_range
		{&pgconn.PgError{Code: "22001"}, true}, // string_data_right_truncation
		{&pgconn.PgError{Code: "22021"}, true}, // character_not_in_repertoire (NUL)
		{&pgconn.PgError{Code: "23502"}, true}, // not_null_violation
		{&pgconn.PgError{Code: "23514"}, true}, // check_violation
		{fmt.Errorf("readings: %w", &pgconn.PgError{Code: "23514"}), true},
		{&pgconn.PgError{Code: "08006"}, false}, // connection_failure
		{&pgconn.PgError{Code: "40001"}, false}, // serialization_failure
		{&pgconn.PgError{Code: "40P01"}, false}, // deadlock_detected
		{&pgconn.PgError{Code: "57P01"}, false}, // admin_shutdown
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined_table
		{&pgconn.PgError{Code: "53300"}, false}, // too_many_connections
		{&pgconn.PgError{Code: "2"}, false},
		{errors.New("unexpected EOF"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := pgRowError(tc.err); got != tc.want {
			t.Errorf("pgRowError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// pgAdmin opens the test database u for statements of the test itself.
func pgAdmin(t testing.TB, u string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// pgOtherDB returns u naming the database name instead, dropped when t ends.
func pgOtherDB(t testing.TB, u, name string) string {
	t.Helper()
	admin := pgAdmin(t, u)
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + pgQuote(name) + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.Path = "/" + name
	return p.String()
}

func TestPostgresCreatesDatabase(t *testing.T) {
	base := pgtest.URL(t)
	name := strings.TrimPrefix(must(url.Parse(base)).Path, "/") + "_new"
	u := pgOtherDB(t, base, name)
	s, err := NewPostgres(u, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open of a missing database: %v", err)
	}
	mustWrite(t, s, sampleBatch())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readBack.SQL(context.Background(), pgAdmin(t, u))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffBatch(sorted(sampleBatch()), got); d != "" {
		t.Fatal(d)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPostgresConcurrentOpen opens sinks at once on a fresh database: the
// advisory lock serialises the schema creation (CREATE TABLE IF NOT EXISTS
// alone fails with a unique violation in such a race).
func TestPostgresConcurrentOpen(t *testing.T) {
	u := pgtest.URL(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewPostgres(u, Config{}, nil)
			if err == nil {
				err = s.Open(context.Background())
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("sink %d: Open: %v", i, err)
		}
	}
}

// TestPostgresKeysSortBytewise writes into a database whose default
// collation is linguistic (ICU en-US, where "abc" < "ABC" < "b"): the
// columns' collation "C" keeps keys distinct, exact and ordered bytewise,
// as in SQLite and MySQL.
func TestPostgresKeysSortBytewise(t *testing.T) {
	base := pgtest.URL(t)
	name := strings.TrimPrefix(must(url.Parse(base)).Path, "/") + "_icu"
	u := pgOtherDB(t, base, name)
	if _, err := pgAdmin(t, base).Exec("CREATE DATABASE " + pgQuote(name) + " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"); err != nil {
		t.Fatalf("create an ICU database (PostgreSQL 15+ with ICU): %v", err)
	}
	s, err := NewPostgres(u, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var in Batch
	for i, id := range []string{"b", "abc", "B", "ABC", "abc "} {
		in.Windows = append(in.Windows, operators.WindowAggregate{PboxID: id, Start: 0, End: 60000, Count: int64(i + 1), Latitude: nan, Longitude: nan})
	}
	mustWrite(t, s, &in)
	mustFlush(t, s)
	got, err := readBack.SQL(context.Background(), pgAdmin(t, u))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range got.Windows {
		ids = append(ids, w.PboxID)
	}
	if want := []string{"ABC", "B", "abc", "abc ", "b"}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("sinktest.ReadAll order %q, want bytewise %q", ids, want)
	}
}

// TestPostgresNUL: text columns cannot hold U+0000; the sink stores it as
// U+FFFD instead of having the row refused, and keys that differ only there
// still collapse as the store sees them.
func TestPostgresNUL(t *testing.T) {
	u := pgtest.URL(t)
	s, err := NewPostgres(u, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := &Batch{
		Windows: []operators.WindowAggregate{
			{PboxID: "a\x00b", Start: 0, End: 60000, Count: 1, Latitude: nan, Longitude: nan, Company: "c\x00"},
			{PboxID: "a\uFFFDb", Start: 0, End: 60000, Count: 2, Latitude: nan, Longitude: nan},
		},
		DeadLetters: []operators.DeadLetter{{Partition: 0, Offset: 1, Reason: "bad \x00", Payload: []byte("p\x00q")}},
	}
	mustWrite(t, s, in)
	mustFlush(t, s)
	got, err := readBack.SQL(context.Background(), pgAdmin(t, u))
	if err != nil {
		t.Fatal(err)
	}
	want := &Batch{
		Windows:     []operators.WindowAggregate{{PboxID: "a\uFFFDb", Start: 0, End: 60000, Count: 2, Latitude: nan, Longitude: nan}},
		DeadLetters: []operators.DeadLetter{{Partition: 0, Offset: 1, Reason: "bad \uFFFD", Payload: []byte("p\x00q")}}, // BYTEA keeps NUL
	}
	if d := diffBatch(want, got); d != "" {
		t.Fatal(d)
	}
}

// TestPostgresBackendsTerminated ends the sink's server sessions
// (pg_terminate_backend, SQLSTATE 57P01 to the client) before a flush: that
// is a connection error, not a row error — the rows stay buffered (none is
// rejected) and the next flush writes them all.
func TestPostgresBackendsTerminated(t *testing.T) {
	u := pgtest.URL(t)
	s, err := NewPostgres(u, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin := pgAdmin(t, u)
	in := fenceRows(1, 1, 2, 3)
	mustWriteEpoch(t, s, 0, 1, in)
	mustFlush(t, s) // the pool has a connection
	kill := func() int {
		var n int
		err := admin.QueryRow("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := kill(); n == 0 {
		t.Fatal("no session of the sink to terminate")
	}
	in2 := fenceRows(2, 4, 5)
	mustWriteEpoch(t, s, 0, 1, in2)
	if err := s.Flush(context.Background()); err != nil {
		t.Logf("flush after the sessions ended: %v", err)
		mustFlush(t, s)
	}
	want, rej := storedRows(in, in2)
	got, err := readBack.SQL(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffBatch(sorted(want), got); d != "" {
		t.Fatal(d)
	}
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM rejected_rows").Scan(&n); err != nil || n != len(rej) {
		t.Fatalf("rejected_rows: %d rows (%v), want %d", n, err, len(rej))
	}
}

// TestPostgresErrorsHidePassword: neither a bad URL nor a failed connection
// shows the password.
func TestPostgresErrorsHidePassword(t *testing.T) {
	for _, u := range []string{
		"postgres://eddy:s3cret@127.0.0.1:1/eddy?sslmode=disable&connect_timeout=2",
		"postgres://eddy:s3cret@127.0.0.1:99999/eddy",
		"postgres://eddy:s3cret@127.0.0.1/eddy?sslmode=bogus",
	} {
		s, err := NewPostgres(u, Config{}, nil)
		if err == nil {
			err = s.Open(context.Background())
			s.Close()
		}
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the password: %v", err)
		}
		t.Log(err)
	}
}
