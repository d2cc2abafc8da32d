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
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection.
package mariadbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// EnvDSN is the environment variable that names the test server.
const EnvDSN = "EDDY_MYSQL_DSN"

// localDSNs are tried, in order, when EnvDSN is unset.
var localDSNs = []string{
	"eddy:eddy@tcp(127.0.0.1:3306)/",
	"root@unix(/run/mysqld/mysqld.sock)/",
}

var (
	findOnce  sync.Once
	serverDSN *mysql.Config // nil when no server was found
	findErr   error         // why no server was found
)

// DSN returns the DSN of a new, empty database on the test server, dropped
// when t ends (t.Cleanup). The DSN keeps the server's parameters and adds
// none; callers that need parseTime etc. add them. It skips or fails t as
// the package documentation describes. Safe for concurrent use by parallel
// tests.
func DSN(t testing.TB) string {
	t.Helper()
	findOnce.Do(findServer)
	if serverDSN == nil {
		msg := fmt.Sprintf("mariadbtest: no MariaDB/MySQL server: %v. Set %s (e.g. %s='eddy:eddy@tcp(127.0.0.1:3306)/') or run `bash .ci/run --db-only` as root to install and start one",
			findErr, EnvDSN, EnvDSN)
		if os.Getenv(EnvDSN) != "" || isCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	name := dbName(t.Name())
	admin, err := sql.Open("mysql", serverDSN.FormatDSN())
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("mariadbtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("EDDY_KEEP_TEST_DB") != "" {
			t.Logf("mariadbtest: keeping database %s", name)
			return
		}
		db, err := sql.Open("mysql", serverDSN.FormatDSN())
		if err != nil {
			t.Errorf("mariadbtest: %v", err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("mariadbtest: drop database %s: %v", name, err)
		}
	})

	cfg := serverDSN.Clone()
	cfg.DBName = name
	return cfg.FormatDSN()
}

func isCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// findServer sets serverDSN to the first candidate that answers a ping.
func findServer() {
	candidates := localDSNs
	if v := os.Getenv(EnvDSN); v != "" {
		candidates = []string{v}
	}
	var errs []string
	for _, dsn := range candidates {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: bad DSN: %v", dsn, err))
			continue
		}
		cfg.DBName = ""
		if cfg.Timeout == 0 {
			cfg.Timeout = 3 * time.Second
		}
		if err := ping(cfg); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", redact(cfg), err))
			continue
		}
		serverDSN = cfg
		return
	}
	findErr = fmt.Errorf("%s", strings.Join(errs, "; "))
}

func ping(cfg *mysql.Config) error {
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// redact formats cfg without its password.
func redact(cfg *mysql.Config) string {
	c := cfg.Clone()
	if c.Passwd != "" {
		c.Passwd = "xxx"
	}
	return c.FormatDSN()
}

// dbName makes a database name (at most 64 characters, [a-z0-9_]) from a
// test name plus a random suffix, so reruns and parallel tests never clash.
func dbName(test string) string {
	var b strings.Builder
	b.WriteString("eddyt_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 6+40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		panic(err)
	}
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}
