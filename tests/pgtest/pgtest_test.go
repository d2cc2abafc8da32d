package pgtest

import (
	"context"
	"database/sql"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestURLGivesFreshDatabase(t *testing.T) {
	var names [2]string
	for i := range names {
		dsn := URL(t)
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		names[i] = strings.TrimPrefix(u.Path, "/")
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var cur string
		if err := db.QueryRowContext(context.Background(), "SELECT current_database()").Scan(&cur); err != nil {
			t.Fatal(err)
		}
		if cur != names[i] {
			t.Fatalf("connected to database %q, URL names %q", cur, names[i])
		}
		var tables int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("fresh database %s has %d tables", cur, tables)
		}
		if _, err := db.Exec("CREATE TABLE t (x INT)"); err != nil {
			t.Fatal(err)
		}
	}
	if names[0] == names[1] {
		t.Fatalf("two calls gave the same database %q", names[0])
	}
}

func TestDBName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	for _, in := range []string{"", "TestX", "TestVeryLong/sub test/with-ÄÖÜ-and many many many words in it"} {
		got := dbName(in)
		if !valid.MatchString(got) {
			t.Errorf("dbName(%q) = %q: not a short safe name", in, got)
		}
		if dbName(in) == got {
			t.Errorf("dbName(%q) twice gave the same name", in)
		}
	}
}

func TestRedactHidesPassword(t *testing.T) {
	got := redact("postgres://eddy:s3cret@127.0.0.1:5432/postgres?sslmode=disable")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "eddy") {
		t.Errorf("redact: %q", got)
	}
}
