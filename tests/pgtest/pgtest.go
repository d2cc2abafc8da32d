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
// Set EDDY_KEEP_TEST_DB=1 to keep the databases for inspection.
package pgtest

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

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

// EnvDSN is the environment variable that names the test server.
const EnvDSN = "EDDY_PG_DSN"

// LocalDSN is tried when EnvDSN is unset.
const LocalDSN = "postgres://eddy:eddy@127.0.0.1:5432/postgres?sslmode=disable"

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
		msg := fmt.Sprintf("pgtest: no PostgreSQL server: %v. Set %s (e.g. %s='%s') or run `bash .ci/run --db-only` as root to install and start one",
			findErr, EnvDSN, EnvDSN, redact(LocalDSN))
		if os.Getenv(EnvDSN) != "" || isCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("EDDY_KEEP_TEST_DB") != "" {
			t.Logf("pgtest: keeping database %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// A plain DROP waits up to 5 s for other sessions and ends
		// autovacuum workers on the database (which FORCE may not signal
		// without pg_signal_backend); FORCE then ends the sessions a test
		// left open (PostgreSQL 13+).
		var err error
		for range 3 {
			if err = admin(ctx, "DROP DATABASE IF EXISTS "+name); err == nil {
				return
			}
		}
		if ferr := admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); ferr != nil {
			t.Errorf("pgtest: drop database %s: %v; with FORCE: %v", name, err, ferr)
		}
	})
	u := *serverURL
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on the server's own database.
func admin(ctx context.Context, q string) error {
	db, err := sql.Open("pgx", serverURL.String())
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
	dsn := LocalDSN
	if v := os.Getenv(EnvDSN); v != "" {
		dsn = v
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		findErr = fmt.Errorf("%s: not a postgres:// URL", redact(dsn))
		return
	}
	ping := *u
	if q := ping.Query(); q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "3")
		ping.RawQuery = q.Encode()
	}
	db, err := sql.Open("pgx", ping.String())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
	}
	if err != nil {
		findErr = fmt.Errorf("%s: %v", redact(dsn), err)
		return
	}
	serverURL = u
}

// redact returns a URL without its password.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// dbName makes a database name from a test name: lower case [a-z0-9_],
// a random suffix, at most 63 bytes (PostgreSQL's identifier limit).
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
