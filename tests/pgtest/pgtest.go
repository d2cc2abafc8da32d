// Package pgtest gives tests a fresh PostgreSQL database.
//
// URL(t) returns a pgx URL (postgres://user:pass@host:port/db?...) that
// names a database created for the calling test alone and dropped when the
// test ends. The server is found in this order:
//
//  1. the environment variable EDDY_PG_DSN (a pgx URL such as
//     "postgres://eddy:eddy@127.0.0.1:5432/postgres?sslmode=disable"; its
//     database is the one connected to for CREATE DATABASE, and the role
//     needs CREATEDB). If it is set and the server does not answer, the
//     test fails.
//  2. the local server that `bash .ci/run --db-only` starts:
//     "postgres://eddy:eddy@127.0.0.1:5432/postgres?sslmode=disable".
//
// If neither answers, the test is skipped with a message saying how to get a
// server — except when the environment variable CI is "true" (or "1"), where
// a missing server is a failure, so that CI never passes by skipping.
//
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection. The
// mechanics are tests/dbtest's, shared with tests/mariadbtest and
// tests/chtest.
package pgtest

import (
	"database/sql"
	"fmt"
	"net/url"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

// EnvDSN is the environment variable that names the test server.
const EnvDSN = "EDDY_PG_DSN"

// LocalDSN is tried when EnvDSN is unset.
const LocalDSN = "postgres://eddy:eddy@127.0.0.1:5432/postgres?sslmode=disable"

var engine = &dbtest.Engine{
	Pkg:     "pgtest",
	Kind:    "PostgreSQL",
	Env:     EnvDSN,
	Local:   []string{LocalDSN},
	MaxName: 63, // PostgreSQL's identifier limit (NAMEDATALEN - 1)
	Server:  dbtest.URLServer("postgres", "postgresql"),
	Open:    func(dsn string) (*sql.DB, error) { return sql.Open("pgx", dsn) },
	// The ping gives up after 3 s; the URLs handed to tests keep the
	// server's own connect_timeout (none by default).
	PingDSN: func(server string) string {
		u, _ := url.Parse(server) // Server parsed it
		if q := u.Query(); q.Get("connect_timeout") == "" {
			q.Set("connect_timeout", "3")
			u.RawQuery = q.Encode()
		}
		return u.String()
	},
	// A plain DROP waits up to 5 s for other sessions and ends autovacuum
	// workers on the database (which FORCE may not signal without
	// pg_signal_backend); FORCE then ends the sessions a test left open
	// (PostgreSQL 13+).
	Drop: func(exec func(string) error, name string) error {
		var err error
		for range 3 {
			if err = exec("DROP DATABASE IF EXISTS " + name); err == nil {
				return nil
			}
		}
		if ferr := exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); ferr != nil {
			return fmt.Errorf("%v; with FORCE: %v", err, ferr)
		}
		return nil
	},
	WithDB: dbtest.URLWithDB,
	Redact: dbtest.RedactURL,
}

// URL returns the URL of a new, empty database on the test server, dropped
// when t ends (t.Cleanup). It skips or fails t as the package documentation
// describes. Safe for concurrent use by parallel tests.
func URL(t testing.TB) string {
	t.Helper()
	return engine.Database(t)
}
