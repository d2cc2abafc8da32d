// Package mariadbtest gives tests a fresh MariaDB/MySQL database.
//
// DSN(t) returns a go-sql-driver DSN that names a database created for the
// calling test alone and dropped when the test ends. The server is found in
// this order:
//
//  1. the environment variable EDDY_MYSQL_DSN (a go-sql-driver DSN such as
//     "eddy:eddy@tcp(127.0.0.1:3306)/"; its database name, if any, is
//     ignored). If it is set and the server does not answer, the test fails.
//  2. a local server: "eddy:eddy@tcp(127.0.0.1:3306)/" (the user that
//     `bash .ci/run --db-only` creates), then root over the unix socket
//     /run/mysqld/mysqld.sock.
//
// If neither answers, the test is skipped with a message saying how to get a
// server — except when the environment variable CI is "true" (or "1"), where
// a missing database is a failure, so that CI never passes by skipping.
//
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection. The
// mechanics are tests/dbtest's, shared with tests/pgtest and tests/chtest.
package mariadbtest

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/eddy-iot/eddy/tests/dbtest"
)

// EnvDSN is the environment variable that names the test server.
const EnvDSN = "EDDY_MYSQL_DSN"

var engine = &dbtest.Engine{
	Pkg:  "mariadbtest",
	Kind: "MariaDB/MySQL",
	Env:  EnvDSN,
	Local: []string{
		"eddy:eddy@tcp(127.0.0.1:3306)/",
		"root@unix(/run/mysqld/mysqld.sock)/",
	},
	MaxName: 64, // MariaDB's limit on a database name
	Server: func(dsn string) (string, error) {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			return "", fmt.Errorf("bad DSN: %v", err)
		}
		cfg.DBName = ""
		if cfg.Timeout == 0 {
			cfg.Timeout = 3 * time.Second
		}
		return cfg.FormatDSN(), nil
	},
	Open:   func(dsn string) (*sql.DB, error) { return sql.Open("mysql", dsn) },
	Create: func(name string) string { return "CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4" },
	Drop: func(exec func(string) error, name string) error {
		return exec("DROP DATABASE IF EXISTS `" + name + "`")
	},
	WithDB: func(server, name string) string {
		cfg, err := mysql.ParseDSN(server)
		if err != nil {
			panic("mariadbtest: admin DSN no longer parses")
		}
		cfg.DBName = name
		return cfg.FormatDSN()
	},
	Redact: redact,
}

// DSN returns the DSN of a new, empty database on the test server, dropped
// when t ends (t.Cleanup). The DSN keeps the server's parameters and adds
// only timeout=3s when the server's DSN has no timeout; callers that need
// parseTime etc. add them. It skips or fails t as the package documentation
// describes. Safe for concurrent use by parallel tests.
func DSN(t testing.TB) string {
	t.Helper()
	return engine.Database(t)
}

// redact formats a DSN without its password.
func redact(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxx"
	}
	return cfg.FormatDSN()
}
