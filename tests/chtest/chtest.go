// Package chtest gives tests a fresh ClickHouse database.
//
// URL(t) returns a sink URL (clickhouse://user:pass@host:port/db) that
// names a database created for the calling test alone and dropped when the
// test ends. The server is found in this order:
//
//  1. the environment variable EDDY_CLICKHOUSE_URL (such as
//     "clickhouse://eddy:eddy@127.0.0.1:19000/default"; its database is the
//     one connected to for CREATE DATABASE). If it is set and the server
//     does not answer, the test fails.
//  2. the local server that `bash .ci/run --db-only` starts: LocalURL.
//
// If neither answers, the test is skipped with a message saying how to get a
// server — except when the environment variable CI is "true" (or "1"), where
// a missing server is a failure, so that CI never passes by skipping.
//
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection. The
// mechanics are tests/dbtest's, shared with tests/mariadbtest and
// tests/pgtest.
package chtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"

	_ "github.com/ClickHouse/clickhouse-go" // driver "clickhouse"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

// EnvURL is the environment variable that names the test server.
const EnvURL = "EDDY_CLICKHOUSE_URL"

// LocalURL is tried when EnvURL is unset: the server .ci/run starts (native
// protocol on port 19000, clear of the default 9000 that other services
// often hold).
const LocalURL = "clickhouse://eddy:eddy@127.0.0.1:19000/default"

var engine = &dbtest.Engine{
	Pkg:   "chtest",
	Kind:  "ClickHouse",
	Env:   EnvURL,
	Local: []string{LocalURL},
	// ClickHouse has no documented limit (a database is a directory);
	// PostgreSQL's 63 keeps names short.
	MaxName: 63,
	Server:  dbtest.URLServer("clickhouse"),
	Open:    Open,
	WithDB:  dbtest.URLWithDB,
	Redact:  dbtest.RedactURL,
}

// URL returns the URL of a new, empty database on the test server, dropped
// when t ends (t.Cleanup). It skips or fails t as the package documentation
// describes. Safe for concurrent use by parallel tests.
func URL(t testing.TB) string {
	t.Helper()
	return engine.Database(t)
}

// DSN is the clickhouse-go v1 DSN (tcp://host:port?username=...) of a
// clickhouse:// URL, for sql.Open("clickhouse", DSN(u)). Port 9000 and
// user "default" unless given.
func DSN(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "clickhouse" || u.Host == "" {
		return "", fmt.Errorf("%s: not a clickhouse://HOST:PORT/DB URL", dbtest.RedactURL(rawURL))
	}
	host := u.Host
	if u.Port() == "" {
		host += ":9000"
	}
	q := url.Values{}
	q.Set("username", "default")
	if u.User != nil {
		q.Set("username", u.User.Username())
		if p, ok := u.User.Password(); ok {
			q.Set("password", p)
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		q.Set("database", db)
	}
	q.Set("timeout", "5")
	q.Set("read_timeout", "60")
	return (&url.URL{Scheme: "tcp", Host: host, RawQuery: q.Encode()}).String(), nil
}

// Open opens the database a clickhouse:// URL names.
func Open(rawURL string) (*sql.DB, error) {
	dsn, err := DSN(rawURL)
	if err != nil {
		return nil, err
	}
	return sql.Open("clickhouse", dsn)
}

// Exec runs one statement on the database a clickhouse:// URL names.
func Exec(ctx context.Context, rawURL, q string) error { return engine.Exec(ctx, rawURL, q) }
