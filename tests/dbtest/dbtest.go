// Package dbtest is the shared core of the per-engine test-database
// packages (tests/mariadbtest, tests/pgtest, tests/chtest): each describes
// its server with an Engine, and Engine.Database gives every test a fresh
// database of its own.
//
// The contract, the same for every engine:
//
//   - The server is found once per test binary: the DSN in the environment
//     variable Engine.Env if it is set (a server that does not answer then
//     fails the test), else the first of Engine.Local that answers a ping.
//   - Without a server the test is skipped with a message saying how to get
//     one — except when the environment variable CI is "true" (or "1"),
//     where it fails, so that CI never passes by skipping.
//   - Each call creates a database named from t.Name() plus a random suffix
//     (Name) and drops it in t.Cleanup, unless EDDY_KEEP_TEST_DB is set.
//   - Messages never show a password (Engine.Redact).
//
// Usage sketch (an engine package):
//
//	var engine = &dbtest.Engine{Pkg: "pgtest", Kind: "PostgreSQL", Env: EnvDSN,
//		Server: dbtest.URLServer("postgres", "postgresql"), ...}
//	func URL(t testing.TB) string { t.Helper(); return engine.Database(t) }
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvKeep is the environment variable that, when set to anything, keeps the
// test databases for inspection instead of dropping them.
const EnvKeep = "EDDY_KEEP_TEST_DB"

// Timeouts of the administrative statements Database runs.
const (
	pingTimeout   = 5 * time.Second
	createTimeout = 30 * time.Second
	dropTimeout   = 60 * time.Second
)

// Engine describes one kind of database server for tests. Fields marked
// required must be set; the zero value of the others picks the default
// given. An Engine is used through a pointer (it remembers the server it
// found) and is safe for concurrent use by parallel tests.
type Engine struct {
	// Pkg prefixes every message, e.g. "pgtest". Required.
	Pkg string
	// Kind names the server in messages, e.g. "PostgreSQL". Required.
	Kind string
	// Env is the environment variable that names the server. Required.
	Env string
	// Local are the DSNs tried in order when Env is unset; Local[0] is the
	// (redacted) example in the message of a skipped test. Required.
	Local []string
	// MaxName is the engine's limit on a database name in bytes; Name
	// keeps within it. Required, at least 20.
	MaxName int

	// Server checks a candidate DSN and returns the admin DSN that ping,
	// CREATE and DROP connect with. Its error says what is wrong with the
	// DSN and is shown after the redacted DSN. Required (URLServer serves
	// URL-shaped DSNs).
	Server func(dsn string) (string, error)
	// Open opens a *sql.DB on a DSN (an admin DSN or one Database
	// returned). Required.
	Open func(dsn string) (*sql.DB, error)
	// PingDSN returns the DSN to ping the admin DSN with (to add a connect
	// timeout, say). Default: the admin DSN itself.
	PingDSN func(server string) string
	// Create returns the statement that creates database name. Default:
	// "CREATE DATABASE name".
	Create func(name string) string
	// Drop drops database name, running statements on the admin DSN with
	// exec. Default: exec("DROP DATABASE IF EXISTS " + name).
	Drop func(exec func(q string) error, name string) error
	// WithDB returns the DSN of database name on the admin DSN's server.
	// Required (URLWithDB serves URL-shaped DSNs).
	WithDB func(server, name string) string
	// Redact returns a DSN without its password, for messages. Required
	// (RedactURL serves URL-shaped DSNs).
	Redact func(dsn string) string

	once    sync.Once
	server  string // admin DSN; "" when no server was found
	findErr error  // why no server was found
}

// Database returns the DSN (as WithDB builds it) of a new, empty database
// on the test server, dropped when t ends. It skips or fails t as the
// package documentation describes.
func (e *Engine) Database(t testing.TB) string {
	t.Helper()
	e.once.Do(e.find)
	if e.server == "" {
		msg := fmt.Sprintf("%s: no %s server: %v. Set %s (e.g. %s='%s') or run `bash .ci/run --db-only` as root to install and start one",
			e.Pkg, e.Kind, e.findErr, e.Env, e.Env, e.Redact(e.Local[0]))
		if os.Getenv(e.Env) != "" || IsCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	name := Name(t.Name(), e.MaxName)
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	create := "CREATE DATABASE " + name
	if e.Create != nil {
		create = e.Create(name)
	}
	if err := e.Exec(ctx, e.server, create); err != nil {
		t.Fatalf("%s: create database %s: %v", e.Pkg, name, err)
	}
	t.Cleanup(func() {
		if os.Getenv(EnvKeep) != "" {
			t.Logf("%s: keeping database %s", e.Pkg, name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		exec := func(q string) error { return e.Exec(ctx, e.server, q) }
		var err error
		if e.Drop != nil {
			err = e.Drop(exec, name)
		} else {
			err = exec("DROP DATABASE IF EXISTS " + name)
		}
		if err != nil {
			t.Errorf("%s: drop database %s: %v", e.Pkg, name, err)
		}
	})
	return e.WithDB(e.server, name)
}

// Exec runs one statement on the database dsn names, on a connection of its
// own that it closes.
func (e *Engine) Exec(ctx context.Context, dsn, q string) error {
	db, err := e.Open(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q)
	return err
}

// find sets e.server to the first candidate that answers a ping, or
// e.findErr to why none did.
func (e *Engine) find() {
	candidates := e.Local
	if v := os.Getenv(e.Env); v != "" {
		candidates = []string{v}
	}
	var errs []error
	for _, dsn := range candidates {
		server, err := e.Server(dsn)
		if err == nil {
			err = e.ping(server)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", e.Redact(dsn), err))
			continue
		}
		e.server = server
		return
	}
	e.findErr = joinErrors(errs)
}

func (e *Engine) ping(server string) error {
	if e.PingDSN != nil {
		server = e.PingDSN(server)
	}
	db, err := e.Open(server)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	return db.PingContext(ctx)
}

// joinErrors joins errs on one line with "; " (errors.Join uses newlines,
// which a skip message reads badly with).
func joinErrors(errs []error) error {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// IsCI reports whether the environment variable CI is "true" or "1" (any
// case): then a missing server fails a test instead of skipping it.
func IsCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// nameSuffixBytes random bytes, hex-encoded, end every Name.
const nameSuffixBytes = 6

// Name makes a database name from a test name: "eddyt_", the test name in
// lower case with every byte outside [a-z0-9] (every rune, for non-ASCII)
// replaced by '_', then '_' and 12 random hex digits, so that reruns and
// parallel tests never clash. The result matches ^[a-z0-9_]+$ — an
// identifier no engine needs to quote — and is at most max bytes; the test
// name is cut to fit (and to at most 40 bytes, for readability). It panics
// if max leaves no room for the prefix and suffix (max < 20).
func Name(test string, max int) string {
	const prefix = "eddyt_"
	room := min(max-len(prefix)-1-2*nameSuffixBytes, 40)
	if room < 1 {
		panic(fmt.Sprintf("dbtest: name limit %d leaves no room for the test name", max))
	}
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(test) {
		if b.Len() >= len(prefix)+room {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [nameSuffixBytes]byte
	rand.Read(rnd[:]) // never fails (crypto/rand, Go 1.24+)
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}

// RedactURL returns a URL-shaped DSN with its password replaced by "xxxxx"
// (url.URL.Redacted), or "(unparsable URL)".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// URLServer returns an Engine.Server for URL-shaped DSNs: it accepts a
// URL with one of schemes and returns it unchanged, and otherwise says
// "not a SCHEMES[0]:// URL".
func URLServer(schemes ...string) func(dsn string) (string, error) {
	return func(dsn string) (string, error) {
		u, err := url.Parse(dsn)
		if err != nil || !slices.Contains(schemes, u.Scheme) {
			return "", fmt.Errorf("not a %s:// URL", schemes[0])
		}
		return dsn, nil
	}
}

// URLDBName returns the database a URL-shaped DSN names (its path without
// the leading '/'), or "" if it does not parse.
func URLDBName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// URLWithDB returns the URL-shaped DSN server with its path set to
// "/"+name (the database, for postgres:// and clickhouse:// URLs), keeping
// its user, host and query. server must parse (Engine.Server checked it).
func URLWithDB(server, name string) string {
	u, err := url.Parse(server)
	if err != nil { // not err itself: url.Error quotes the URL, password and all
		panic("dbtest: admin URL no longer parses")
	}
	u.Path = "/" + name
	return u.String()
}
