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
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection.
package chtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/ClickHouse/clickhouse-go" // driver "clickhouse"
)

// EnvURL is the environment variable that names the test server.
const EnvURL = "EDDY_CLICKHOUSE_URL"

// LocalURL is tried when EnvURL is unset: the server .ci/run starts (native
// protocol on port 19000, clear of the default 9000 that other services
// often hold).
const LocalURL = "clickhouse://eddy:eddy@127.0.0.1:19000/default"

var (
	findOnce  sync.Once
	serverURL *url.URL // nil when no server was found
	findErr   error    // why no server was found
)

// URL returns the URL of a new, empty database on the test server, dropped
// when t ends (t.Cleanup). It skips or fails t as the package documentation
// describes. Safe for concurrent use by parallel tests.
func URL(t testing.TB) string {
	t.Helper()
	findOnce.Do(findServer)
	if serverURL == nil {
		msg := fmt.Sprintf("chtest: no ClickHouse server: %v. Set %s (e.g. %s='%s') or run `bash .ci/run --db-only` as root to install and start one",
			findErr, EnvURL, EnvURL, redact(LocalURL))
		if os.Getenv(EnvURL) != "" || isCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Exec(ctx, serverURL.String(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("chtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("EDDY_KEEP_TEST_DB") != "" {
			t.Logf("chtest: keeping database %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := Exec(ctx, serverURL.String(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("chtest: drop database %s: %v", name, err)
		}
	})
	u := *serverURL
	u.Path = "/" + name
	return u.String()
}

// DSN is the clickhouse-go v1 DSN (tcp://host:port?username=...) of a
// clickhouse:// URL, for sql.Open("clickhouse", DSN(u)). Port 9000 and
// user "default" unless given.
func DSN(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "clickhouse" || u.Host == "" {
		return "", fmt.Errorf("%s: not a clickhouse://HOST:PORT/DB URL", redact(rawURL))
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
func Exec(ctx context.Context, rawURL, q string) error {
	db, err := Open(rawURL)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q)
	return err
}

func isCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// findServer sets serverURL to the candidate if it answers a ping.
func findServer() {
	raw := LocalURL
	if v := os.Getenv(EnvURL); v != "" {
		raw = v
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "clickhouse" {
		findErr = fmt.Errorf("%s: not a clickhouse:// URL", redact(raw))
		return
	}
	db, err := Open(raw)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
	}
	if err != nil {
		findErr = fmt.Errorf("%s: %v", redact(raw), err)
		return
	}
	serverURL = u
}

// redact returns a URL without its password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// dbName makes a database name from a test name: lower case [a-z0-9_] and
// a random suffix.
func dbName(test string) string {
	var b strings.Builder
	b.WriteString("eddyt_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 48 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}
