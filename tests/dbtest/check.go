package dbtest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// FreshQueries are the engine's statements CheckFresh runs.
type FreshQueries struct {
	// Current returns the name of the database the connection uses.
	Current string
	// Tables counts the tables in that database.
	Tables string
	// CreateTable creates a table named t in it.
	CreateTable string
}

// CheckFresh checks against the real server what Engine.Database promises,
// through the engine package's public function database: two calls give two
// distinct databases, each one the DSN connects to (dbName reads its name
// out of the DSN), empty, and writable. open opens a DSN.
func CheckFresh(t *testing.T, database func(testing.TB) string, open func(string) (*sql.DB, error), dbName func(dsn string) string, q FreshQueries) {
	t.Helper()
	var names [2]string
	for i := range names {
		dsn := database(t)
		names[i] = dbName(dsn)
		db, err := open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		var cur string
		if err := db.QueryRowContext(ctx, q.Current).Scan(&cur); err != nil {
			t.Fatal(err)
		}
		if cur != names[i] {
			t.Fatalf("connected to database %q, DSN names %q", cur, names[i])
		}
		var tables int
		if err := db.QueryRowContext(ctx, q.Tables).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("fresh database %s has %d tables", cur, tables)
		}
		if _, err := db.ExecContext(ctx, q.CreateTable); err != nil {
			t.Fatal(err)
		}
	}
	if names[0] == names[1] {
		t.Fatalf("two calls gave the same database %q", names[0])
	}
}

// envChild marks the child process CheckNoServer starts.
const envChild = "DBTEST_CHILD"

// NoServerCase is one environment CheckNoServer runs the test in.
type NoServerCase struct {
	// Env is added to the test's environment ("EDDY_PG_DSN=...", "CI=true";
	// "NAME=" unsets NAME as far as Database is concerned).
	Env []string
	// Skip: the test must be skipped; otherwise it must fail.
	Skip bool
}

// CheckNoServer checks what Database does without a server. Called from a
// top-level test, it runs that test alone again in a child process of the
// test binary for each case, where database(t) is called; the child must
// skip or fail as the case says, with a message containing want, and its
// output must not contain hidden (a password in the cases' DSNs).
func CheckNoServer(t *testing.T, database func(testing.TB) string, want, hidden string, cases []NoServerCase) {
	t.Helper()
	if os.Getenv(envChild) == "1" {
		database(t)
		return
	}
	for _, c := range cases {
		cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v")
		cmd.Env = append(append(os.Environ(), envChild+"=1"), c.Env...)
		out, err := cmd.CombinedOutput()
		switch {
		case c.Skip && (err != nil || !strings.Contains(string(out), "--- SKIP")):
			t.Errorf("env %v: want the child skipped (err %v); output:\n%s", c.Env, err, out)
		case !c.Skip && (err == nil || !strings.Contains(string(out), "--- FAIL")):
			t.Errorf("env %v: want the child failed (err %v); output:\n%s", c.Env, err, out)
		case !strings.Contains(string(out), want):
			t.Errorf("env %v: want a message containing %q; output:\n%s", c.Env, want, out)
		case hidden != "" && strings.Contains(string(out), hidden):
			t.Errorf("env %v: output shows the password; output:\n%s", c.Env, out)
		}
	}
}
