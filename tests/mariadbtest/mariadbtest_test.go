package mariadbtest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestDSNGivesFreshDatabase(t *testing.T) {
	var names [2]string
	for i := range names {
		dsn := DSN(t)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		names[i] = cfg.DBName
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var cur string
		if err := db.QueryRowContext(context.Background(), "SELECT DATABASE()").Scan(&cur); err != nil {
			t.Fatal(err)
		}
		if cur != cfg.DBName {
			t.Fatalf("connected to database %q, DSN names %q", cur, cfg.DBName)
		}
		var tables int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").Scan(&tables); err != nil {
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
	valid := regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
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

// TestUnreachableServerFails runs this test binary again with EnvDSN pointing
// at a closed port: DSN must fail the test, not skip it.
func TestUnreachableServerFails(t *testing.T) {
	if os.Getenv("MARIADBTEST_CHILD") == "1" {
		DSN(t)
		return
	}
	for _, env := range [][]string{
		{EnvDSN + "=eddy:eddy@tcp(127.0.0.1:1)/", "CI="},
		{EnvDSN + "=eddy:eddy@tcp(127.0.0.1:1)/", "CI=true"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnreachableServerFails$", "-test.v")
		cmd.Env = append(append(os.Environ(), "MARIADBTEST_CHILD=1"), env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("env %v: child passed, want failure; output:\n%s", env, out)
		}
		if !strings.Contains(string(out), "--- FAIL") || !strings.Contains(string(out), "no MariaDB/MySQL server") {
			t.Fatalf("env %v: want a FAIL naming the missing server; output:\n%s", env, out)
		}
	}
}
